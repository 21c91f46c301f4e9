"""The locked dependency set: it covers pyproject.toml, and `make test` runs in it."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")
requirements = pytest.importorskip("packaging.requirements")


def _lock_module():
    spec = importlib.util.spec_from_file_location("gengym_lock_tool", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project_requirements() -> list:
    """Every requirement `pip install .[all]` resolves, extras expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found, todo, seen = [], ["all"], set()
    found += [requirements.Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for entry in extras[extra]:
            req = requirements.Requirement(entry)
            if req.name == project["name"]:
                todo.extend(req.extras)
            else:
                found.append(req)
    return found


def test_every_requirement_is_locked_at_a_version_its_range_allows():
    lock = _lock_module()
    pins = {**lock.read_pins(lock.BOOTSTRAP), **lock.read_pins(lock.LOCK)}
    torch_spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert torch_spec, "the Makefile pins torch through TORCH_SPEC"
    pins["torch"] = torch_spec[1]
    for req in _project_requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue  # not for this Python (the lock is written on the one CI runs)
        name = lock.canonical(req.name)
        assert name in pins, f"{req.name} is required but not locked: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name} is locked at {pins[name]}, outside pyproject.toml's {req.specifier}"
        )


def test_read_pins_refuses_what_is_not_an_exact_pin(tmp_path):
    lock = _lock_module()
    good = tmp_path / "good.txt"
    good.write_text("# comment\nFoo_Bar==1.2.3  # why\n\nbaz==0.1\n")
    assert lock.read_pins(good) == {"foo-bar": "1.2.3", "baz": "0.1"}
    bad = tmp_path / "bad.txt"
    bad.write_text("foo>=1\n")
    with pytest.raises(SystemExit, match="bad.txt:1: expected name==version"):
        lock.read_pins(bad)


@pytest.mark.skipif(
    os.environ.get("GENGYM_UNLOCKED") == "1" or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="only the project virtualenv of `make test` holds the locked set",
)
def test_the_suite_runs_in_exactly_the_locked_set():
    assert _lock_module().differences(sys.executable) == []


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    commands = [line for line in ci if line and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert commands == ["make test"]
    assert "make test   #" in (ROOT / "README.md").read_text()
