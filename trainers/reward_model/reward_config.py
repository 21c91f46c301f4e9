"""Settings of the reward-model trainer (``gengym reward-model``), the first half of RLHF.

A reward model learns to score an answer in context so that, for each
preference pair, the chosen answer scores higher than the rejected one (the
Bradley-Terry loss ``-log sigmoid(r_chosen - r_rejected)``). PPO then
optimises the policy against those scores (``--reward reward-model:PATH``)
instead of, or mixed with, the env's verifier.

The paper has no reward model; the defaults are ours. The head starts from
scratch, so the default learning rate (1e-5) is higher than gengym's SFT
rates. Settings are checked before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainers.common.config import raise_config_errors
from trainers.common.prompting import DEFAULT_PROMPT_FORMAT
from trainers.common.train_settings import (
    DeepSpeedSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    PairDataSettings,
    ReportingSettings,
)

#: The head's weights inside a reward-model folder.
REWARD_HEAD_FILE = "reward_head.safetensors"
#: Marks a folder as a gengym reward model and says how it scores.
REWARD_MODEL_FILE = "gengym_reward_model.json"


@dataclass
class _RewardModelSettings(PairDataSettings):
    """Run, data and head settings: the first fields of :class:`GengymRewardModelConfig`."""

    model: str = field(
        default="",
        metadata={"help": "Backbone checkpoint (any generative VLM or LM, e.g. the SFT init): a path, hub id or shipped model (tiny:gp-l)."},
    )
    output_dir: str = field(
        default="runs/reward_model", metadata={"help": "Run folder: logs, and final/ (the reward model)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, dropout and the new head."})
    revision_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of generated pairs at a revision state (after one wrong answer and its feedback), so "
            "the model also learns to score the later turns of multi-turn RL."
        },
    )
    prompt_format: Literal["observation", "chat"] = field(
        default=DEFAULT_PROMPT_FORMAT,
        metadata={"help": "Prompt form of generated pairs; use the PPO run's prompt_format."},
    )
    max_length: int = field(
        default=4096,
        metadata={"help": "Longest conversation in tokens, image tokens included; longer ones stop with a message."},
    )

    # -------------------------------------------------------------- head
    head_hidden: int = field(
        default=0, metadata={"help": "Hidden width of the scalar head's MLP; 0 = LayerNorm then linear."}
    )
    center_rewards_coefficient: float = field(
        default=0.0,
        metadata={"help": "Weight of a penalty on (r_chosen + r_rejected)^2 that keeps scores centred on 0."},
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (backbone and head)."})


# The groups in reverse reading order (see trainers.common.train_settings): --help
# shows run and data, head, optimisation, model, engine, then operations.
@dataclass
class GengymRewardModelConfig(
    ReportingSettings,
    DeepSpeedSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    _RewardModelSettings,
):
    """Everything a reward-model run needs (named apart from TRL's ``RewardConfig``, which it builds)."""

    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="zero3",
        metadata={"help": "zero3, zero2 or none (plain PyTorch / DDP). Uses the files in trainers/configs/deepspeed/."},
    )
    logging_steps: int = field(default=10, metadata={"help": "Log loss, accuracy and margins every N optimiser steps."})

    def __post_init__(self) -> None:
        from trainers.models import resolve_model_spec

        # A shipped model (tiny:gp-l) is its folder inside the package from here on.
        self.model = resolve_model_spec(self.model)
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = self.pair_data_errors()
        if self.head_hidden < 0:
            errors.append("head_hidden must be >= 0 (0 = a linear head)")
        if self.center_rewards_coefficient < 0:
            errors.append("center_rewards_coefficient must be >= 0")
        if not self.learning_rate > 0:
            errors.append("learning_rate must be positive")
        errors += self.optimisation_errors()
        errors += self.deepspeed_errors()
        errors += self.operations_errors()
        errors += self.generated_pairs_errors()
        raise_config_errors("invalid reward-model settings", errors)

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the backbone checkpoint with --model PATH_OR_HUB_ID (or model: in the config)")
        raise_config_errors("cannot start reward-model training", errors + self.missing_pairs_errors())
