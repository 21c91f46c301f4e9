"""The locked dependency set: write it, compare a virtualenv with it.

``make test`` and ``make demo`` install exactly the versions in
``requirements/lock.txt`` (plus torch from ``TORCH_SPEC`` and the project
itself), so that a fresh clone installs today what it installed the day the
lock was written, whatever the registries serve by then. ``make lock``
writes the files from a fresh virtualenv holding the newest versions that
pyproject.toml's ranges allow; ``make test-latest`` runs the suite in such a
virtualenv to find out whether the ranges still hold.

Standard library only: it runs before anything is installed.

Usage::

    python tools/lock.py write --python .venv-latest/bin/python
    python tools/lock.py check --python .venv/bin/python
    python tools/lock.py diff --python .venv-latest/bin/python
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
BOOTSTRAP = ROOT / "requirements" / "bootstrap.txt"

#: The project's own distribution (installed editable, never locked).
PROJECT = "generalization-gym"
#: Installed by ``TORCH_SPEC`` (a CPU build by default, a CUDA build for GPU users).
TORCH = "torch"
#: The installer and the build backend: pinned in bootstrap.txt, installed first.
BOOTSTRAP_PACKAGES = ("pip", "setuptools", "wheel")


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(python: str) -> dict[str, dict]:
    """Every distribution in the environment of ``python``: name -> {version, requires}."""
    script = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: {'version': d.version, 'requires': d.requires or []}"
        " for d in m.distributions()}))"
    )
    out = subprocess.run([python, "-c", script], check=True, capture_output=True, text=True).stdout
    return {canonical(name): info for name, info in json.loads(out).items()}


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file (comments and blanks skipped)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match is None:
            raise SystemExit(f"{path}:{number}: expected name==version, got {raw!r}")
        pins[canonical(match[1])] = match[2]
    return pins


def requirement_names(requires: list[str]) -> set[str]:
    """Names of the unconditional requirements among ``Requires-Dist`` entries."""
    names = set()
    for entry in requires:
        if ";" in entry and "extra ==" in entry.split(";", 1)[1]:
            continue  # needed only by an extra of that package
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", entry)
        if match:
            names.add(canonical(match[1]))
    return names


def torch_closure(dists: dict[str, dict]) -> set[str]:
    """torch and what it pulls in: a CUDA build brings packages the CPU lock never saw."""
    seen, todo = set(), [TORCH]
    while todo:
        name = todo.pop()
        if name in seen or name not in dists:
            continue
        seen.add(name)
        todo.extend(requirement_names(dists[name]["requires"]))
    return seen


def write(python: str) -> None:
    dists = installed(python)
    if TORCH not in dists or PROJECT not in dists:
        raise SystemExit(f"{python}: install torch and the project (with [all]) before locking")
    header = (
        f"# Written by `make lock` on {date.today().isoformat()} from the newest versions that\n"
        f"# pyproject.toml allows, on Python {platform.python_version()} ({sys.platform}, "
        f"{platform.machine()}), with torch {dists[TORCH]['version']} from TORCH_SPEC.\n"
        "# `make test` and `make demo` install exactly these; do not edit by hand.\n"
    )
    skip = {PROJECT, TORCH, *BOOTSTRAP_PACKAGES}
    LOCK.parent.mkdir(exist_ok=True)
    lines = [f"{name}=={dists[name]['version']}" for name in sorted(dists) if name not in skip]
    LOCK.write_text(header + "\n".join(lines) + "\n")
    boot = [f"{name}=={dists[name]['version']}" for name in BOOTSTRAP_PACKAGES if name in dists]
    BOOTSTRAP.write_text(
        "# The installer and build tools `make` installs first; also the constraints of\n"
        "# every package built from source (pip --build-constraint). Written by `make lock`.\n"
        + "\n".join(boot)
        + "\n"
    )
    print(f"wrote {LOCK.relative_to(ROOT)} ({len(lines)} packages) and {BOOTSTRAP.relative_to(ROOT)}")


def differences(python: str) -> list[str]:
    """How the environment differs from the lock, one line each (empty: it is the lock)."""
    dists = installed(python)
    pins = {**read_pins(BOOTSTRAP), **read_pins(LOCK)}
    problems = []
    for name, version in sorted(pins.items()):
        if name not in dists:
            problems.append(f"{name}: locked {version}, not installed")
        elif dists[name]["version"] != version:
            problems.append(f"{name}: locked {version}, installed {dists[name]['version']}")
    allowed = pins.keys() | {PROJECT} | torch_closure(dists)
    for name in sorted(dists.keys() - allowed):
        problems.append(f"{name}: installed {dists[name]['version']}, not in the lock")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["write", "check", "diff"])
    parser.add_argument("--python", required=True, help="the virtualenv's python")
    args = parser.parse_args(argv)
    if args.action == "write":
        write(args.python)
        return 0
    problems = differences(args.python)
    if args.action == "diff":
        print("\n".join(problems) if problems else "the environment is exactly the lock")
        return 0
    if problems:
        print("the virtualenv is not the locked set (run `make clean` and retry):", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
