"""``gengym reward-model``: train a reward model on preference pairs of a gengym env (RLHF, step 1).

Settings come from the GengymRewardModelConfig defaults, then ``--config
FILE.yaml``, then individual flags. The pairs are built from ``--env``
(``--num-pairs`` oracle pairs) or read from a ``gengym pairs`` folder
(``--dataset DIR``; any pairs in that format work). The result,
``OUTPUT_DIR/final``, is what PPO takes as ``--reward reward-model:PATH``.
"""

from __future__ import annotations

import argparse

HELP = "train a reward model on env preference pairs (TRL RewardTrainer; any VLM or LM backbone)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import add_trainer_arguments
    from trainers.reward_model.reward_config import GengymRewardModelConfig

    add_trainer_arguments(
        parser,
        GengymRewardModelConfig,
        env_kwarg_help="extra gym.make keyword argument for generated pairs (repeatable; JSON values)",
    )


def run(args: argparse.Namespace) -> int:
    from trainers.common.cli_support import run_training
    from trainers.reward_model import GengymRewardModelConfig, train_reward_model

    final = run_training("reward-model", args, GengymRewardModelConfig, train_reward_model)
    if final is None:
        return 2
    print(f"reward model: {final}  (use it with: gengym ppo --reward reward-model:{final} ...)")
    return 0
