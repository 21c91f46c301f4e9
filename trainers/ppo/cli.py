"""``gengym ppo``: train a policy with multi-turn PPO on a gengym env.

Settings come from the PPOConfig defaults (the paper's), then ``--config
FILE.yaml``, then individual flags. Launch on several GPUs or nodes with
``deepspeed --num_gpus N $(which gengym) ppo ...`` or ``accelerate launch``;
every process gets its own envs and seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train with multi-turn PPO (value head, DeepSpeed ZeRO-3) on a gengym env"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.ppo.ppo_config import PPOConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of PPOConfig settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id (overrides the file)")
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwarg_pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument (repeatable)",
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    add_config_arguments(parser, PPOConfig, skip=("env_id", "env_kwargs"))


def run(args: argparse.Namespace) -> int:
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config
    from trainers.ppo.ppo_config import PPOConfig

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
    try:
        config = resolve_config(PPOConfig, config_file=args.config, args=args, overrides=overrides)
    except ConfigError as err:
        print(f"gengym ppo: {err}", file=sys.stderr)
        return 2
    if not config.model:
        print("gengym ppo: give the policy checkpoint with --model PATH (or model: in the config)", file=sys.stderr)
        return 2
    from trainers.ppo.ppo_trainer import train_ppo

    try:
        final = train_ppo(config)
    except FloatingPointError as err:
        print(f"gengym ppo: stopped: {err}", file=sys.stderr)
        return 3
    print(f"final policy: {final}")
    return 0
