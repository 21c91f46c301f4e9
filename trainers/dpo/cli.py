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

HELP = "DPO on env preference pairs (verifier-accepted vs refused answers; TRL, DeepSpeed, LoRA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import add_trainer_arguments
    from trainers.dpo.dpo_config import GengymDPOConfig

    add_trainer_arguments(
        parser,
        GengymDPOConfig,
        env_kwarg_help="extra gym.make keyword argument for generated pairs (repeatable; JSON values)",
    )


def run(args: argparse.Namespace) -> int:
    from trainers.common.cli_support import run_training
    from trainers.dpo import GengymDPOConfig, train_dpo

    final = run_training("dpo", args, GengymDPOConfig, train_dpo)
    if final is None:
        return 2
    print(f"final model: {final}")
    return 0
