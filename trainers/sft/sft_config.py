"""Settings of the SFT trainer, with the paper's defaults.

The paper fine-tunes every parameter on optimal single-turn answers from the
oracle, with a cosine schedule, 3% warmup, and a learning rate of 1e-6 for
text tasks and 5e-7 for image tasks (REFERENCE section 3). Those are the
defaults here; the learning rate is left unset and picked from the data
(images or not) unless given. The paper does not report a batch size or an
epoch count; the defaults below (an effective batch of 8 per process, one
epoch over 1000 examples) are ours.

Every field carries its help text (shown by ``gengym sft --help``). Settings
are checked twice before any weights are loaded: :meth:`GengymSFTConfig.validate`
(values and their combinations, on construction) and
:meth:`GengymSFTConfig.check_runnable` (what a run needs: a model, and an env
or a dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trainers.common.config import checkpoint_folder_problem, raise_config_errors
from trainers.common.train_settings import (
    CheckpointSettings,
    DeepSpeedSettings,
    LoraSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    generated_only_errors,
)

#: The paper's SFT learning rates: text tasks, image tasks.
PAPER_LEARNING_RATE_TEXT = 1e-6
PAPER_LEARNING_RATE_IMAGE = 5e-7


@dataclass
class _SFTSettings:
    """Run and data settings of SFT: the first fields of :class:`GengymSFTConfig`."""

    # ---------------------------------------------------------------- run
    env_id: str = field(
        default="",
        metadata={"help": "gengym env id whose oracle data to train on (with dataset: must match it, or leave empty)."},
    )
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra gym.make keyword arguments for generated data (rule/visual variants, image size)."},
    )
    variant: str = field(
        default="",
        metadata={"help": "Evaluation variant of the env id to generate data from (id, rule-ood, visual-ood)."},
    )
    model: str = field(default="", metadata={"help": "Checkpoint to fine-tune: a local path or a hub id, or a shipped model (tiny:gp-l)."})
    output_dir: str = field(
        default="runs/sft", metadata={"help": "Run folder: checkpoints, TensorBoard logs, and final/ (the model)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, dropout and new (LoRA) weights."})

    # --------------------------------------------------------------- data
    dataset: str = field(
        default="",
        metadata={"help": "Folder written by `gengym data` to train on; empty = generate num_examples from env_id."},
    )
    num_examples: int = field(default=1000, metadata={"help": "Oracle examples to generate (without dataset)."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the generated oracle data (without dataset)."})
    multi_turn: bool = field(
        default=False,
        metadata={"help": "Generate revision dialogues (wrong answer, feedback, correction) instead of single turns."},
    )
    train_on: Literal["last_turn", "all_turns"] = field(
        default="last_turn",
        metadata={
            "help": "Which assistant turns carry the loss: last_turn (the verified answer; earlier wrong attempts "
            "in revision dialogues are context only) or all_turns."
        },
    )
    max_length: int = field(
        default=4096,
        metadata={
            "help": "Longest training sequence in tokens, image tokens included. Longer ones stop the run with a "
            "message; they are never truncated (cutting image tokens corrupts the inputs)."
        },
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate; unset = the paper's: 1e-6 for text data, 5e-7 for image data."},
    )


# The groups in reverse reading order (see trainers.common.train_settings): --help
# shows run and data, optimisation, model, LoRA, engine, then operations.
@dataclass
class GengymSFTConfig(
    CheckpointSettings,
    DeepSpeedSettings,
    LoraSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    _SFTSettings,
):
    """Everything an SFT run needs (named apart from TRL's ``SFTConfig``, which it builds)."""

    # Where SFT's defaults and wording differ from the pair trainers'.
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warmup (paper: cosine)."}
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "Share of optimiser steps spent warming up (paper: 0.03)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the data (ignored when max_steps > 0)."})
    per_device_batch_size: int = field(default=4, metadata={"help": "Examples per forward/backward per process."})
    gradient_accumulation_steps: int = field(
        default=2, metadata={"help": "Micro-batches per optimiser step (effective batch = this x batch x processes)."}
    )
    progress_bar: bool = field(default=True, metadata={"help": "Show progress bars (data generation, training)."})

    def __post_init__(self) -> None:
        from trainers.models import resolve_model_spec

        # A shipped model (tiny:gp-l) is its folder inside the package from here on.
        self.model = resolve_model_spec(self.model)
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = []
        if self.num_examples < 1:
            errors.append("num_examples must be at least 1")
        if self.data_seed < 0 or self.seed < 0:
            errors.append("seed and data_seed must be >= 0")
        if self.max_length < 16:
            errors.append(f"max_length must be at least 16 tokens, got {self.max_length}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            errors.append("learning_rate must be positive (or unset for the paper's default)")
        errors += self.optimisation_errors()
        errors += self.lora_errors()
        errors += self.deepspeed_errors()
        errors += self.operations_errors(self.max_steps)
        shaping = {"env_kwargs": bool(self.env_kwargs), "variant": bool(self.variant), "multi_turn": self.multi_turn}
        errors += generated_only_errors(self.dataset, shaping, data="data")
        raise_config_errors("invalid SFT settings", errors)

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the checkpoint to fine-tune with --model PATH_OR_HUB_ID (or model: in the config)")
        elif problem := checkpoint_folder_problem(self.model):
            errors.append(f"model: {problem}")
        if not self.env_id and not self.dataset:
            errors.append("give --env ID to generate oracle data, or --dataset DIR written by `gengym data`")
        raise_config_errors("cannot start SFT", errors)

    def resolved_learning_rate(self, has_images: bool) -> float:
        """``learning_rate``, or the paper's for text or image data when unset."""
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_LEARNING_RATE_IMAGE if has_images else PAPER_LEARNING_RATE_TEXT

