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
from typing import Any, Literal

from trainers.common.config import ConfigError


@dataclass
class GengymRewardModelConfig:
    """Everything a reward-model run needs (named apart from TRL's ``RewardConfig``, which it builds)."""

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
    model: str = field(
        default="",
        metadata={"help": "Backbone checkpoint (any generative VLM or LM, e.g. the SFT init): a path or hub id."},
    )
    output_dir: str = field(
        default="runs/reward_model", metadata={"help": "Run folder: logs, and final/ (the reward model)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, dropout and the new head."})

    # --------------------------------------------------------------- data
    dataset: str = field(
        default="",
        metadata={"help": "Folder written by `gengym pairs` (or any pairs in that format); empty = generate num_pairs."},
    )
    num_pairs: int = field(default=1000, metadata={"help": "Oracle pairs to generate (without dataset)."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the generated pairs (without dataset)."})
    revision_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of generated pairs at a revision state (after one wrong answer and its feedback), so "
            "the model also learns to score the later turns of multi-turn RL."
        },
    )
    prompt_format: Literal["observation", "chat"] = field(
        default="observation",
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

    # ------------------------------------------------------- optimisation
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (backbone and head)."})
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

    # ------------------------------------------------------------- engine
    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="zero3",
        metadata={"help": "zero3, zero2 or none (plain PyTorch / DDP). Uses the files in trainers/configs/deepspeed/."},
    )
    offload_optimizer: bool = field(default=False, metadata={"help": "ZeRO: keep optimizer states in CPU memory."})
    offload_params: bool = field(default=False, metadata={"help": "ZeRO-3: keep parameters in CPU memory."})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto = CUDA when available, else CPU (DeepSpeed runs on CPU too)."}
    )

    # --------------------------------------------------------- operations
    logging_steps: int = field(default=10, metadata={"help": "Log loss, accuracy and margins every N optimiser steps."})
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
        if self.head_hidden < 0:
            errors.append("head_hidden must be >= 0 (0 = a linear head)")
        if self.center_rewards_coefficient < 0:
            errors.append("center_rewards_coefficient must be >= 0")
        if not self.learning_rate > 0:
            errors.append("learning_rate must be positive")
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
        if self.offload_params and self.deepspeed != "zero3":
            errors.append("offload_params needs deepspeed=zero3")
        if self.offload_optimizer and self.deepspeed == "none":
            errors.append("offload_optimizer needs deepspeed=zero2 or zero3")
        if self.logging_steps < 1 or self.dataloader_num_workers < 0:
            errors.append("logging_steps must be at least 1 and dataloader_num_workers >= 0")
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
            raise ConfigError("invalid reward-model settings:\n  - " + "\n  - ".join(errors))

    def check_runnable(self) -> None:
        """Check that a run has what it needs; raise :class:`ConfigError` saying what is missing."""
        errors = []
        if not self.model:
            errors.append("give the backbone checkpoint with --model PATH_OR_HUB_ID (or model: in the config)")
        if not self.env_id and not self.dataset:
            errors.append("give --env ID to generate oracle pairs, or --dataset DIR written by `gengym pairs`")
        if errors:
            raise ConfigError("cannot start reward-model training:\n  - " + "\n  - ".join(errors))
