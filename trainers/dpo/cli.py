"""``gengym dpo``: train a checkpoint with DPO on preference pairs of a gengym env.

Settings come from the GengymDPOConfig defaults, then ``--config FILE.yaml``,
then individual flags. The pairs are built from ``--env`` (``--num-pairs``
oracle pairs: a verified answer against a refused one of each error category)
or read from a ``gengym pairs`` folder (``--dataset DIR``, e.g. pairs sampled
from the model itself). Launch on several GPUs with ``accelerate launch
--num_processes N $(which gengym) dpo ...`` or ``deepspeed --num_gpus N
$(which gengym) dpo ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "DPO on env preference pairs (verifier-accepted vs refused answers; TRL, DeepSpeed, LoRA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.dpo.dpo_config import GengymDPOConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of GengymDPOConfig settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id (overrides the file)")
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwarg_pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument for generated pairs (repeatable; JSON values)",
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    add_config_arguments(parser, GengymDPOConfig, skip=("env_id", "env_kwargs"))


def resolve(args: argparse.Namespace):
    """The config from defaults, the YAML file and the flags (raises ConfigError)."""
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config
    from trainers.dpo.dpo_config import GengymDPOConfig

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        try:
            overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
        except ValueError as err:
            raise ConfigError(f"--env-kwarg: {err}") from None
    config = resolve_config(GengymDPOConfig, config_file=args.config, args=args, overrides=overrides)
    config.check_runnable()
    return config


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError

    try:
        config = resolve(args)
    except ConfigError as err:
        print(f"gengym dpo: {err}", file=sys.stderr)
        return 2
    from trainers.dpo.dpo_trainer import train_dpo

    try:
        final = train_dpo(config)
    except ConfigError as err:
        print(f"gengym dpo: {err}", file=sys.stderr)
        return 2
    print(f"final model: {final}")
    return 0
