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

from trainers.common.config import ConfigError

#: The paper's SFT learning rates: text tasks, image tasks.
PAPER_LEARNING_RATE_TEXT = 1e-6
PAPER_LEARNING_RATE_IMAGE = 5e-7


@dataclass
class GengymSFTConfig:
    """Everything an SFT run needs (named apart from TRL's ``SFTConfig``, which it builds)."""

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
    model: str = field(default="", metadata={"help": "Checkpoint to fine-tune: a local path or a hub id."})
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

    # ------------------------------------------------------- optimisation
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate; unset = the paper's: 1e-6 for text data, 5e-7 for image data."},
    )
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warmup (paper: cosine)."}
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "Share of optimiser steps spent warming up (paper: 0.03)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the data (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimiser steps to run; -1 = num_train_epochs passes."})
    per_device_batch_size: int = field(default=4, metadata={"help": "Examples per forward/backward per process."})
    gradient_accumulation_steps: int = field(
        default=2, metadata={"help": "Micro-batches per optimiser step (effective batch = this x batch x processes)."}
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
        metadata={"help": "Train LoRA adapters (peft) instead of all weights; final/ holds the merged model."},
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
            "help": "zero3 (shard parameters, gradients, optimizer states), zero2 (shard gradients and optimizer "
            "states) or none (plain PyTorch / DDP). Uses the files in trainers/configs/deepspeed/."
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
    progress_bar: bool = field(default=True, metadata={"help": "Show progress bars (data generation, training)."})
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Worker processes that encode batches (0 = in the training process)."}
    )

    def __post_init__(self) -> None:
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
                "multi_turn": self.multi_turn,
            }
            given = [name for name, is_set in generated_only.items() if is_set]
            if given:
                errors.append(
                    f"{', '.join(given)} only shape generated data; with dataset= the data folder already "
                    "fixes them (drop them, or drop dataset to generate)"
                )
        if errors:
            raise ConfigError("invalid SFT settings:\n  - " + "\n  - ".join(errors))

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the checkpoint to fine-tune with --model PATH_OR_HUB_ID (or model: in the config)")
        if not self.env_id and not self.dataset:
            errors.append("give --env ID to generate oracle data, or --dataset DIR written by `gengym data`")
        if errors:
            raise ConfigError("cannot start SFT:\n  - " + "\n  - ".join(errors))

    def resolved_learning_rate(self, has_images: bool) -> float:
        """``learning_rate``, or the paper's for text or image data when unset."""
        if self.learning_rate is not None:
            return self.learning_rate
        return PAPER_LEARNING_RATE_IMAGE if has_images else PAPER_LEARNING_RATE_TEXT
