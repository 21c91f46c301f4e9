"""Settings of the DPO trainer (``gengym dpo``).

DPO (Rafailov et al., 2023) trains the policy directly on preference pairs:
it raises the log-probability of the chosen answer relative to a frozen
reference copy of the starting model and lowers that of the rejected one,
with ``beta`` setting how far the policy may move from the reference. The
pairs come from the env (:mod:`trainers.pairs`): a chosen answer the verifier
accepts and a rejected one it refuses.

The paper has no DPO run; the defaults follow gengym's SFT (full fine-tuning,
cosine schedule, 3% warmup, learning rate 1e-6 for text and 5e-7 for image
data unless given) and DPO's usual ``beta = 0.1`` with the sigmoid loss.
Settings are checked twice before any weights load:
:meth:`GengymDPOConfig.validate` (values and combinations) and
:meth:`GengymDPOConfig.check_runnable` (a model, and an env or a pairs folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainers.common.config import raise_config_errors
from trainers.common.train_settings import (
    CheckpointSettings,
    DeepSpeedSettings,
    LoraSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    PairDataSettings,
)
from trainers.sft.sft_config import PAPER_LEARNING_RATE_IMAGE, PAPER_LEARNING_RATE_TEXT

#: DPO losses offered (TRL's names): the logistic loss of the DPO paper, its
#: hinge and IPO variants, the label-noise robust loss, and the
#: length-normalised logistic loss.
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sigmoid_norm")


@dataclass
class _DPOSettings(PairDataSettings):
    """Run, data and DPO settings: the first fields of :class:`GengymDPOConfig`."""

    model: str = field(default="", metadata={"help": "Checkpoint to train (also the frozen reference): a path or hub id, or a shipped model (tiny:gp-l)."})
    output_dir: str = field(
        default="runs/dpo", metadata={"help": "Run folder: checkpoints, logs, and final/ (the model)."}
    )

    # ---------------------------------------------------------------- DPO
    beta: float = field(
        default=0.1, metadata={"help": "How far the policy may move from the reference (higher = closer to it)."}
    )
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "sigmoid_norm"] = field(
        default="sigmoid", metadata={"help": "DPO loss: sigmoid (the DPO paper), hinge, ipo, robust, sigmoid_norm."}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "Assumed share of flipped labels (robust loss); 0 = trust every pair."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate; unset = 1e-6 for text data, 5e-7 for image data (gengym's SFT rates)."},
    )


# The groups in reverse reading order (see trainers.common.train_settings): --help
# shows run and data, DPO, optimisation, model, LoRA, engine, then operations.
@dataclass
class GengymDPOConfig(
    CheckpointSettings,
    DeepSpeedSettings,
    LoraSettings,
    ModelLoadingSettings,
    OptimisationSettings,
    _DPOSettings,
):
    """Everything a DPO run needs (named apart from TRL's ``DPOConfig``, which it builds)."""

    lora: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) instead of all weights; the reference is the model with adapters "
            "off (no second copy); final/ holds the merged model."
        },
    )
    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="zero3",
        metadata={
            "help": "zero3 (shard parameters, gradients, optimizer states; the reference is sharded too), zero2, or "
            "none (plain PyTorch / DDP). Uses the files in trainers/configs/deepspeed/."
        },
    )

    def __post_init__(self) -> None:
        from trainers.models import resolve_model_spec

        # A shipped model (tiny:gp-l) is its folder inside the package from here on.
        self.model = resolve_model_spec(self.model)
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = self.pair_data_errors()
        if not self.beta > 0:
            errors.append(f"beta must be positive, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            errors.append(f"loss_type must be one of {', '.join(LOSS_TYPES)}")
        if not 0 <= self.label_smoothing < 0.5:
            errors.append("label_smoothing must be in [0, 0.5)")
        elif self.label_smoothing and self.loss_type != "robust":
            errors.append("label_smoothing only applies to loss_type=robust")
        if self.learning_rate is not None and not self.learning_rate > 0:
            errors.append("learning_rate must be positive (or unset for the default)")
        errors += self.optimisation_errors()
        errors += self.lora_errors()
        errors += self.deepspeed_errors()
        errors += self.operations_errors(self.max_steps)
        errors += self.generated_pairs_errors()
        raise_config_errors("invalid DPO settings", errors)

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the checkpoint to train with --model PATH_OR_HUB_ID (or model: in the config)")
        raise_config_errors("cannot start DPO", errors + self.missing_pairs_errors())

    def resolved_learning_rate(self, has_images: bool) -> float:
        """``learning_rate``, or gengym's SFT rate for text or image data when unset."""
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_LEARNING_RATE_IMAGE if has_images else PAPER_LEARNING_RATE_TEXT
