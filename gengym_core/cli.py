"""The ``gengym`` command.

Each subcommand lives in its own module, listed in :data:`COMMANDS`. A
command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import only the standard library and
the env packages at module level; anything heavy (torch, transformers) is
imported inside ``run``, so that ``gengym --help`` and ``gengym play`` work on
the base install.

Errors the user must act on end a command with one line on stderr and exit
status 2, never a traceback: a command raises
:class:`~gengym_core.run_safety.CommandError` (the trainers' ``ConfigError``
is one), and a write the file system refuses (read-only folder, full disk, a
file where a folder belongs) is reported here, for every command alike
(:func:`~gengym_core.run_safety.storage_error_message`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Subcommand name -> module that implements it.
COMMANDS: dict[str, str] = {
    "play": "gengym_core.play",
    "data": "trainers.data.cli",
    "pretrain": "trainers.pretrain.cli",
    "sft": "trainers.sft.cli",
    "ppo": "trainers.ppo.cli",
    "pairs": "trainers.pairs.cli",
    "dpo": "trainers.dpo.cli",
    "reward-model": "trainers.reward_model.cli",
    "eval": "trainers.eval.cli",
    "experiment": "trainers.experiment.cli",
    "demo": "trainers.experiment.demo",
}

_TRAIN_EXTRA_HINT = (
    "this command needs the training extras: pip install 'generalization-gym[train]'"
)


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless its help already does or there is none.

    Config-dataclass flags default to ``None`` (so only flags given on the
    command line override the ``--config`` file) and carry the field's real
    default in their help text; argparse's own ``(default: None)`` would
    contradict it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "(default:" in help_text or action.default in (None, argparse.SUPPRESS):
            return help_text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from gengym_core import __version__

    parser = argparse.ArgumentParser(
        prog="gengym",
        description="gengym: does a post-training method teach rules or make a model memorise?",
    )
    parser.add_argument("--version", action="version", version=f"gengym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip().split("\n\n")[0],
            formatter_class=_DefaultsHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def close_process_group() -> None:
    """After a command that every process of a launch finished, wait for all of them and
    close the torch process group.

    A process that leaves with the group open can abort in its communication
    threads while another is still saving (``terminate called without an
    active exception``, SIGABRT), and the launcher then reports the whole run
    as failed. Nothing happens without torch or outside a launch. Launcher
    variables the trainers invented for a single-process group go with it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    engine = sys.modules.get("trainers.common.engine")
    if engine is not None:
        engine.forget_invented_launch_env()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gengym`` console script."""
    from gengym_core.run_safety import CommandError, storage_error_message

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args._module.run(args) or 0)
        if code == 0:
            close_process_group()
        return code
    except CommandError as err:
        print(f"gengym {args.command}: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in {
            "torch",
            "transformers",
            "trl",
            "accelerate",
            "deepspeed",
            "peft",
            "datasets",
            "tensorboard",
            "matplotlib",
        }:
            print(f"gengym {args.command}: {_TRAIN_EXTRA_HINT} ({err})", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"gengym {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # A write the file system refused (read-only, disk full, a file where a
        # folder belongs), whichever command and library met it: one line.
        message = storage_error_message(err)
        if message is None:
            raise
        print(f"gengym {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
