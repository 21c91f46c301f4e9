"""``gengym sft``: fine-tune a checkpoint on a gengym env's oracle answers.

Settings come from the GengymSFTConfig defaults (the paper's), then ``--config
FILE.yaml``, then individual flags. The data are generated from ``--env``
(``--num-examples`` verified oracle answers) or read from a ``gengym data``
folder (``--dataset DIR``). Launch on several GPUs or nodes with
``accelerate launch --num_processes N $(which gengym) sft ...`` or
``deepspeed --num_gpus N $(which gengym) sft ...`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "supervised fine-tuning on verified oracle answers of a gengym env (TRL, DeepSpeed, LoRA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.sft.sft_config import GengymSFTConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of GengymSFTConfig settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id (overrides the file)")
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwarg_pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument for generated data (repeatable; JSON values)",
    )
    # Set by `deepspeed` and older launchers; the rank is read from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    add_config_arguments(parser, GengymSFTConfig, skip=("env_id", "env_kwargs"))


def resolve(args: argparse.Namespace):
    """The config from defaults, the YAML file and the flags (raises ConfigError)."""
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config
    from trainers.sft.sft_config import GengymSFTConfig

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        try:
            overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
        except ValueError as err:
            raise ConfigError(f"--env-kwarg: {err}") from None
    config = resolve_config(GengymSFTConfig, config_file=args.config, args=args, overrides=overrides)
    config.check_runnable()
    return config


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError

    try:
        config = resolve(args)
    except ConfigError as err:
        print(f"gengym sft: {err}", file=sys.stderr)
        return 2
    from trainers.sft.sft_trainer import train_sft

    try:
        final = train_sft(config)
    except ConfigError as err:
        print(f"gengym sft: {err}", file=sys.stderr)
        return 2
    print(f"final model: {final}")
    return 0
