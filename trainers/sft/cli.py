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

HELP = "supervised fine-tuning on verified oracle answers of a gengym env (TRL, DeepSpeed, LoRA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import add_trainer_arguments
    from trainers.sft.sft_config import GengymSFTConfig

    add_trainer_arguments(
        parser,
        GengymSFTConfig,
        env_kwarg_help="extra gym.make keyword argument for generated data (repeatable; JSON values)",
    )


def run(args: argparse.Namespace) -> int:
    from trainers.common.cli_support import run_training
    from trainers.sft import GengymSFTConfig, train_sft

    final = run_training("sft", args, GengymSFTConfig, train_sft)
    if final is None:
        return 2
    print(f"final model: {final}")
    return 0
