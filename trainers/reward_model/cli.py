"""``gengym reward-model``: train a reward model on preference pairs of a gengym env (RLHF, step 1).

Settings come from the GengymRewardModelConfig defaults, then ``--config
FILE.yaml``, then individual flags. The pairs are built from ``--env``
(``--num-pairs`` oracle pairs) or read from a ``gengym pairs`` folder
(``--dataset DIR``; any pairs in that format work). The result,
``OUTPUT_DIR/final``, is what PPO takes as ``--reward reward-model:PATH``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train a reward model on env preference pairs (TRL RewardTrainer; any VLM or LM backbone)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.reward_model.reward_config import GengymRewardModelConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of GengymRewardModelConfig settings")
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
    add_config_arguments(parser, GengymRewardModelConfig, skip=("env_id", "env_kwargs"))


def resolve(args: argparse.Namespace):
    """The config from defaults, the YAML file and the flags (raises ConfigError)."""
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config
    from trainers.reward_model.reward_config import GengymRewardModelConfig

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        try:
            overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
        except ValueError as err:
            raise ConfigError(f"--env-kwarg: {err}") from None
    config = resolve_config(GengymRewardModelConfig, config_file=args.config, args=args, overrides=overrides)
    config.check_runnable()
    return config


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError

    try:
        config = resolve(args)
    except ConfigError as err:
        print(f"gengym reward-model: {err}", file=sys.stderr)
        return 2
    from trainers.reward_model.reward_trainer import train_reward_model

    try:
        final = train_reward_model(config)
    except ConfigError as err:
        print(f"gengym reward-model: {err}", file=sys.stderr)
        return 2
    print(f"reward model: {final}  (use it with: gengym ppo --reward reward-model:{final} ...)")
    return 0
