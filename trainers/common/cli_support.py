"""What the ``gengym`` training commands share: their common flags and how a config is resolved.

Every command built on a config dataclass (``sft``, ``dpo``, ``reward-model``,
``ppo``, ``pairs``) takes ``--config FILE.yaml``, ``--env ID``, repeatable
``--env-kwarg KEY=VALUE`` and one flag per config field, and resolves them
the same way: the dataclass defaults, then the file, then the flags, with
the ``--env-kwarg`` pairs merged over the file's ``env_kwargs``
(:func:`resolve_command_config`). The commands that write a folder
(``data``, ``pairs``) share the ``--overwrite`` rule.

Command modules are imported by ``gengym --help``, so this module imports
only the standard library at module level.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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


def output_folder_taken(command: str, out: Path, *, overwrite: bool) -> bool:
    """Whether ``out`` holds something only ``--overwrite`` may replace (then said on stderr)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        print(f"gengym {command}: {out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return True
    return False


def clear_output_folder(out: Path) -> None:
    """Remove ``out`` (a folder or a file) before new data are written there with ``--overwrite``."""
    import shutil

    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
