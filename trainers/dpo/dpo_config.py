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
from typing import Any, Literal

from trainers.common.config import ConfigError
from trainers.sft.sft_config import PAPER_LEARNING_RATE_IMAGE, PAPER_LEARNING_RATE_TEXT

#: DPO losses offered (TRL's names): the logistic loss of the DPO paper, its
#: hinge and IPO variants, the label-noise robust loss, and the
#: length-normalised logistic loss.
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sigmoid_norm")


@dataclass
class GengymDPOConfig:
    """Everything a DPO run needs (named apart from TRL's ``DPOConfig``, which it builds)."""

    # ---------------------------------------------------------------- run
    env_id: str = field(
        default="",
        metadata={"help": "gengym env id whose pairs to train on (with dataset: must match it, or leave empty)."},
    )
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra gym.make keyword arguments for generated pairs (rule/visual variants, image size)."},
    )
    variant: str = field(
        default="", metadata={"help": "Evaluation variant of the env id to generate pairs from (id, rule-ood, visual-ood)."}
    )
    model: str = field(default="", metadata={"help": "Checkpoint to train (also the frozen reference): a path or hub id."})
    output_dir: str = field(
        default="runs/dpo", metadata={"help": "Run folder: checkpoints, logs, and final/ (the model)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, dropout and new (LoRA) weights."})

    # --------------------------------------------------------------- data
    dataset: str = field(
        default="",
        metadata={"help": "Folder written by `gengym pairs` (or any pairs in that format); empty = generate num_pairs."},
    )
    num_pairs: int = field(default=1000, metadata={"help": "Oracle pairs to generate (without dataset)."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the generated pairs (without dataset)."})
    revision_share: float = field(
        default=0.0,
        metadata={"help": "Share of generated pairs at a revision state (after one wrong answer and its feedback)."},
    )
    prompt_format: Literal["observation", "chat"] = field(
        default="observation",
        metadata={"help": "Prompt form of generated pairs: observation (as PPO and evaluation show it) or chat."},
    )
    max_length: int = field(
        default=4096,
        metadata={
            "help": "Longest prompt + answer in tokens, image tokens included. Longer pairs stop the run with a "
            "message; they are never truncated (cutting image tokens corrupts the inputs)."
        },
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

    # ------------------------------------------------------- optimisation
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate; unset = 1e-6 for text data, 5e-7 for image data (gengym's SFT rates)."},
    )
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warmup."}
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "Share of optimiser steps spent warming up."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimiser steps to run; -1 = num_train_epochs passes."})
    per_device_batch_size: int = field(
        default=2, metadata={"help": "Pairs per forward/backward per process (each pair is two sequences)."}
    )
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "Micro-batches per optimiser step (effective batch = this x batch x processes)."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay."})
    adam_eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})

    # -------------------------------------------------------------- model
    dtype: Literal["auto", "bfloat16", "float32"] = field(
        default="auto",
        metadata={"help": "Training precision: auto = bfloat16 on GPUs that support it, else float32."},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass (less memory, ~30% slower)."}
    )
    chat_template_file: str = field(
        default="",
        metadata={"help": "Jinja chat template file to use instead of the checkpoint's (for base models without one)."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow the checkpoint's own Python code (only for checkpoints you trust)."}
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) instead of all weights; the reference is the model with adapters "
            "off (no second copy); final/ holds the merged model."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "Modules to adapt, peft syntax: all-linear, or names like q_proj,v_proj."},
    )

    # ------------------------------------------------------------- engine
    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="zero3",
        metadata={
            "help": "zero3 (shard parameters, gradients, optimizer states; the reference is sharded too), zero2, or "
            "none (plain PyTorch / DDP). Uses the files in trainers/configs/deepspeed/."
        },
    )
    offload_optimizer: bool = field(default=False, metadata={"help": "ZeRO: keep optimizer states in CPU memory."})
    offload_params: bool = field(default=False, metadata={"help": "ZeRO-3: keep parameters in CPU memory."})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto = CUDA when available, else CPU (DeepSpeed runs on CPU too)."}
    )

    # --------------------------------------------------------- operations
    logging_steps: int = field(default=10, metadata={"help": "Log loss and metrics every N optimiser steps."})
    save_steps: int = field(
        default=0, metadata={"help": "Write a resumable checkpoint every N optimiser steps; 0 = only the final model."}
    )
    save_total_limit: int = field(default=2, metadata={"help": "Resumable checkpoints kept on disk."})
    snapshot_steps: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Optimiser steps at which to also write a loadable model with its compute record to "
            "output_dir/snapshots/step-NNNNNN (for curves over training), e.g. 100,200."
        },
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})
    tensorboard: bool = field(default=True, metadata={"help": "Write TensorBoard logs to output_dir/tensorboard."})
    progress_bar: bool = field(default=True, metadata={"help": "Show progress bars (pair generation, training)."})
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Worker processes that encode batches (0 = in the training process)."}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = []
        if self.num_pairs < 1:
            errors.append("num_pairs must be at least 1")
        if self.data_seed < 0 or self.seed < 0:
            errors.append("seed and data_seed must be >= 0")
        if not 0 <= self.revision_share <= 1:
            errors.append("revision_share must be in [0, 1]")
        if self.max_length < 16:
            errors.append(f"max_length must be at least 16 tokens, got {self.max_length}")
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
        if not 0 <= self.warmup_ratio < 1:
            errors.append("warmup_ratio must be in [0, 1)")
        if self.max_steps == 0 or self.max_steps < -1:
            errors.append("max_steps must be a positive number of steps, or -1 to use num_train_epochs")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            errors.append("num_train_epochs must be positive (or set max_steps)")
        if self.per_device_batch_size < 1 or self.gradient_accumulation_steps < 1:
            errors.append("per_device_batch_size and gradient_accumulation_steps must be at least 1")
        if self.weight_decay < 0 or not self.adam_eps > 0 or not self.max_grad_norm > 0:
            errors.append("weight_decay must be >= 0, adam_eps and max_grad_norm positive")
        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1):
            errors.append("LoRA needs lora_r >= 1, lora_alpha >= 1 and lora_dropout in [0, 1)")
        if self.lora and not self.lora_target_modules.strip():
            errors.append("lora_target_modules must name modules (e.g. all-linear)")
        if self.offload_params and self.deepspeed != "zero3":
            errors.append("offload_params needs deepspeed=zero3")
        if self.offload_optimizer and self.deepspeed == "none":
            errors.append("offload_optimizer needs deepspeed=zero2 or zero3")
        if self.logging_steps < 1 or self.save_steps < 0 or self.save_total_limit < 1:
            errors.append("logging_steps and save_total_limit must be at least 1, save_steps >= 0")
        if any(step < 1 for step in self.snapshot_steps):
            errors.append("snapshot_steps must be optimiser steps >= 1")
        elif self.max_steps > 0 and any(step > self.max_steps for step in self.snapshot_steps):
            errors.append(f"snapshot_steps past max_steps ({self.max_steps}) would never be written")
        if self.dataloader_num_workers < 0:
            errors.append("dataloader_num_workers must be >= 0")
        if self.dataset:
            generated_only = {
                "env_kwargs": bool(self.env_kwargs),
                "variant": bool(self.variant),
                "revision_share": bool(self.revision_share),
                "prompt_format": self.prompt_format != "observation",
            }
            given = [name for name, is_set in generated_only.items() if is_set]
            if given:
                errors.append(
                    f"{', '.join(given)} only shape generated pairs; with dataset= the pairs folder already "
                    "fixes them (drop them, or drop dataset to generate)"
                )
        if errors:
            raise ConfigError("invalid DPO settings:\n  - " + "\n  - ".join(errors))

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the checkpoint to train with --model PATH_OR_HUB_ID (or model: in the config)")
        if not self.env_id and not self.dataset:
            errors.append("give --env ID to generate oracle pairs, or --dataset DIR written by `gengym pairs`")
        if errors:
            raise ConfigError("cannot start DPO:\n  - " + "\n  - ".join(errors))

    def resolved_learning_rate(self, has_images: bool) -> float:
        """``learning_rate``, or gengym's SFT rate for text or image data when unset."""
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_LEARNING_RATE_IMAGE if has_images else PAPER_LEARNING_RATE_TEXT
