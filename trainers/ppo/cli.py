"""``gengym ppo``: train a policy with multi-turn PPO on a gengym env.

Settings come from the PPOConfig defaults (the paper's), then ``--config
FILE.yaml``, then individual flags. Launch on several GPUs or nodes with
``deepspeed --num_gpus N $(which gengym) ppo ...`` or ``accelerate launch``;
every process gets its own envs and seeds.
"""

from __future__ import annotations

import argparse
import sys

HELP = "train with multi-turn PPO (value head, DeepSpeed ZeRO-3) on a gengym env"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import add_trainer_arguments
    from trainers.ppo.ppo_config import PPOConfig

    add_trainer_arguments(parser, PPOConfig, env_kwarg_help="extra gym.make keyword argument (repeatable)")


def run(args: argparse.Namespace) -> int:
    from trainers.common.cli_support import resolve_command_config
    from trainers.common.config import ConfigError
    from trainers.ppo.ppo_config import PPOConfig

    try:
        config = resolve_command_config(PPOConfig, args)
        from trainers.ppo.ppo_trainer import train_ppo

        final = train_ppo(config)
    except ConfigError as err:  # bad settings: checked before any weights load (a too long prompt: when met)
        print(f"gengym ppo: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"gengym ppo: stopped: {err}", file=sys.stderr)
        return 3
    from trainers.common.hf_trainer_support import is_main_process

    if is_main_process():  # once, not per launched process
        print(f"final policy: {final}")
    return 0
