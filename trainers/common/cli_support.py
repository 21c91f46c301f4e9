"""What the ``gengym`` training commands share: their common flags and how a config is resolved.

Every command built on a config dataclass (``sft``, ``dpo``, ``reward-model``,
``ppo``, ``pairs``) takes ``--config FILE.yaml``, ``--env ID``, repeatable
``--env-kwarg KEY=VALUE`` and one flag per config field, and resolves them
the same way: the dataclass defaults, then the file, then the flags, with
the ``--env-kwarg`` pairs merged over the file's ``env_kwargs``
(:func:`resolve_command_config`). The commands that write a folder whole
(``data``, ``pairs``, ``eval``) share the ``--overwrite`` rule
(:func:`check_output_folder`).

Command modules are imported by ``gengym --help``, so this module imports
only the standard library at module level.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

#: Config fields set through ``--env`` and ``--env-kwarg`` rather than flags of their own.
ENV_FIELDS = ("env_id", "env_kwargs")


def add_env_kwarg_argument(parser: argparse.ArgumentParser, help: str, *, dest: str = "env_kwarg_pairs") -> None:
    """The repeatable ``--env-kwarg KEY=VALUE`` flag (values parsed as JSON when they are JSON)."""
    parser.add_argument("--env-kwarg", dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def add_trainer_arguments(parser: argparse.ArgumentParser, config_cls: type, *, env_kwarg_help: str) -> None:
    """``--config``, ``--env``, ``--env-kwarg``, the launchers' ``--local_rank``, then a flag per setting."""
    from trainers.common.config import add_config_arguments

    parser.add_argument("--config", type=Path, default=None, help=f"YAML file of {config_cls.__name__} settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id (overrides the file)")
    add_env_kwarg_argument(parser, env_kwarg_help)
    # Set by `deepspeed` and older launchers; the rank is read from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    add_config_arguments(parser, config_cls, skip=ENV_FIELDS)


def resolve_command_config(config_cls: type[C], args: argparse.Namespace) -> C:
    """The config from defaults, the ``--config`` file and the flags.

    ``--env-kwarg`` pairs are merged over the file's ``env_kwargs`` rather
    than replacing them, so a flag changes one keyword and keeps the rest.

    Raises:
        ConfigError: An unreadable file, an unknown or mistyped setting, a
            malformed ``--env-kwarg``, or what the config's validation says.
    """
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        try:
            overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
        except ValueError as err:
            raise ConfigError(f"--env-kwarg: {err}") from None
    return resolve_config(config_cls, config_file=args.config, args=args, overrides=overrides)


def resolve_runnable_config(config_cls: type[C], args: argparse.Namespace) -> C:
    """:func:`resolve_command_config`, then the config's ``check_runnable()`` (a model, data...)."""
    config = resolve_command_config(config_cls, args)
    config.check_runnable()  # type: ignore[attr-defined]
    return config


def run_training(
    command: str, args: argparse.Namespace, config_cls: type[C], train: Callable[[C], Any]
) -> Any | None:
    """Resolve a runnable config and ``train`` it; return what ``train`` returns.

    A :class:`~trainers.common.config.ConfigError` from either step (bad
    settings, or data and model that do not fit together) is printed as
    ``gengym COMMAND: message`` and gives ``None``: the command exits with 2.
    """
    from trainers.common.config import ConfigError

    try:
        return train(resolve_runnable_config(config_cls, args))
    except ConfigError as err:
        print(f"gengym {command}: {err}", file=sys.stderr)
        return None


def check_output_folder(out: Path, *, overwrite: bool, kind: str, not_ours: Callable[[Path], str]) -> None:
    """The ``--out`` / ``--overwrite`` rule of the commands that write a folder whole (data, pairs, eval).

    An absent or empty folder is written; a non-empty one only with
    ``overwrite``, and then only when it holds what the command itself writes
    (``not_ours(out)`` says what else it holds, ``""`` for nothing): a folder
    of something else (a model, a user's files) is never deleted. The new
    folder is written beside the old one and renamed into place
    (:func:`gengym_core.run_safety.replace_folder`), so the old one stays
    whole until the new one is complete.

    Raises:
        CommandError: ``out`` is a file, is not empty (without ``overwrite``),
            or is not a ``kind`` folder.
    """
    from gengym_core.run_safety import CommandError, folder_is_empty

    if out.exists() and not out.is_dir():
        raise CommandError(f"{out} is a file, not a folder; give a folder for the output")
    if folder_is_empty(out):
        return
    if not overwrite:
        raise CommandError(f"{out} exists and is not empty; pass --overwrite to replace it")
    problem = not_ours(out)
    if problem:
        raise CommandError(
            f"--overwrite replaces only a {kind} and {out} is not one ({problem}); remove it yourself "
            "or choose another output folder"
        )


def saved_dataset_problem(folder: Path, columns: Sequence[str], *, extra_files: Sequence[str] = ()) -> str:
    """What makes ``folder`` other than a ``save_to_disk`` dataset with ``columns`` (``""`` when it is one).

    Read from ``dataset_info.json`` alone; besides the dataset's own files
    (and ``extra_files``) nothing may be in the folder.
    """
    import json
    import re

    try:
        features = json.loads((folder / "dataset_info.json").read_text()).get("features") or {}
    except (OSError, ValueError, AttributeError):
        return "no dataset_info.json of a saved dataset"
    missing = [c for c in columns if c not in features]
    if missing:
        return f"a dataset without the columns {', '.join(missing)}"
    own = {"dataset_info.json", "state.json", *extra_files}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in own and not re.fullmatch(r"data-\d+-of-\d+\.arrow", p.name))
    if foreign:
        return f"it also holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}"
    return ""
