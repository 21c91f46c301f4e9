"""Groups of settings shared by the TRL-based trainers (SFT, DPO, reward models).

Each group is a dataclass of fields with ``help`` metadata and a method that
lists what is wrong with its values. A trainer's config
(``GengymSFTConfig``, ``GengymDPOConfig``, ``GengymRewardModelConfig``)
inherits the groups it has, so a setting such as ``warmup_ratio`` or
``offload_params`` is declared, documented and checked once, and reads the
same in every YAML file and on every command line. Nothing here imports
anything heavy.

Field order is the order of ``gengym <method> --help`` and of the saved run
settings. A dataclass puts the fields of its bases first, taking the bases
from the *last* listed to the first, then its own; a field that a subclass
declares again keeps its place and takes the new default and help. So a
config lists its groups in reverse reading order, with its own run and data
settings as the last base, and restates only the fields whose default or
help differ for its method::

    @dataclass
    class GengymDPOConfig(
        CheckpointSettings, DeepSpeedSettings, LoraSettings, ModelLoadingSettings,
        OptimisationSettings, _DPOSettings,
    ):
        ...  # --help: run and data, DPO, optimisation, model, LoRA, engine, operations

The wording and defaults of :class:`OptimisationSettings` and
:class:`ReportingSettings` are those of the preference-pair trainers; SFT
restates the few that differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from trainers.common.prompting import DEFAULT_PROMPT_FORMAT

if TYPE_CHECKING:
    from trainers.pairs.config import PairsConfig


def offload_errors(deepspeed: str, *, offload_params: bool, offload_optimizer: bool) -> list[str]:
    """What is wrong with the offload settings for the ``deepspeed`` stage (also PPO's)."""
    errors = []
    if offload_params and deepspeed != "zero3":
        errors.append("offload_params needs deepspeed=zero3")
    if offload_optimizer and deepspeed == "none":
        errors.append("offload_optimizer needs deepspeed=zero2 or zero3")
    return errors


def generated_only_errors(dataset: str, shaping: dict[str, bool], *, data: str) -> list[str]:
    """Settings that only shape generated ``data`` but were given with a ``dataset`` folder.

    Args:
        dataset: The configured data folder (``""``: data are generated).
        shaping: Setting name -> whether it is set away from its default.
        data: What the folder holds, as the message names it (``"data"`` or ``"pairs"``).
    """
    given = [name for name, is_set in shaping.items() if is_set]
    if not dataset or not given:
        return []
    return [
        f"{', '.join(given)} only shape generated {data}; with dataset= the {data} folder already "
        "fixes them (drop them, or drop dataset to generate)"
    ]


# ------------------------------------------------------------ run and data
@dataclass
class PairDataSettings:
    """Run and data settings of a trainer on preference pairs (DPO, reward models).

    ``model``, ``output_dir`` and the wording of a few fields are restated by
    each trainer; :meth:`pairs_config` says what to generate when no pairs
    folder is given.
    """

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
    model: str = field(default="", metadata={"help": "Checkpoint to start from: a path or hub id."})
    output_dir: str = field(default="runs", metadata={"help": "Run folder: logs, and final/ (the trained model)."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, dropout and new (LoRA) weights."})
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
        default=DEFAULT_PROMPT_FORMAT,
        metadata={"help": "Prompt form of generated pairs: chat (as PPO and evaluation show it) or observation."},
    )
    max_length: int = field(
        default=4096,
        metadata={
            "help": "Longest prompt + answer in tokens, image tokens included. Longer pairs stop the run with a "
            "message; they are never truncated (cutting image tokens corrupts the inputs)."
        },
    )

    def pair_data_errors(self) -> list[str]:
        """What is wrong with the pair counts, seeds and lengths."""
        errors = []
        if self.num_pairs < 1:
            errors.append("num_pairs must be at least 1")
        if self.data_seed < 0 or self.seed < 0:
            errors.append("seed and data_seed must be >= 0")
        if not 0 <= self.revision_share <= 1:
            errors.append("revision_share must be in [0, 1]")
        if self.max_length < 16:
            errors.append(f"max_length must be at least 16 tokens, got {self.max_length}")
        return errors

    def generated_pairs_errors(self) -> list[str]:
        """Settings of generated pairs given together with a pairs folder."""
        shaping = {
            "env_kwargs": bool(self.env_kwargs),
            "variant": bool(self.variant),
            "revision_share": bool(self.revision_share),
            "prompt_format": self.prompt_format != DEFAULT_PROMPT_FORMAT,
        }
        return generated_only_errors(self.dataset, shaping, data="pairs")

    def missing_pairs_errors(self) -> list[str]:
        """What a run still needs to get pairs (an env to generate them, or a folder)."""
        if not self.env_id and not self.dataset:
            return ["give --env ID to generate oracle pairs, or --dataset DIR written by `gengym pairs`"]
        return []

    def pairs_config(self, *, progress_bar: bool) -> PairsConfig | None:
        """The oracle pairs to generate; ``None`` when a folder is given (or no env)."""
        from trainers.pairs.config import PairsConfig

        if self.dataset or not self.env_id:
            return None
        return PairsConfig(
            env_id=self.env_id,
            num_pairs=self.num_pairs,
            seed=self.data_seed,
            env_kwargs=dict(self.env_kwargs),
            variant=self.variant,
            prompt_format=self.prompt_format,
            revision_share=self.revision_share,
            progress_bar=progress_bar,
        )


# ------------------------------------------------------------ optimisation
@dataclass
class OptimisationSettings:
    """The schedule and AdamW settings (the learning rate is each trainer's own)."""

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

    def optimisation_errors(self) -> list[str]:
        """What is wrong with the schedule, batch and AdamW settings."""
        errors = []
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
        return errors


# ------------------------------------------------------------------- model
@dataclass
class ModelLoadingSettings:
    """How the checkpoint is loaded and trained: precision, checkpointing, template, remote code."""

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


@dataclass
class LoraSettings:
    """LoRA adapters (peft) instead of full fine-tuning."""

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

    def lora_errors(self) -> list[str]:
        """What is wrong with the LoRA settings (nothing when LoRA is off)."""
        errors = []
        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1):
            errors.append("LoRA needs lora_r >= 1, lora_alpha >= 1 and lora_dropout in [0, 1)")
        if self.lora and not self.lora_target_modules.strip():
            errors.append("lora_target_modules must name modules (e.g. all-linear)")
        return errors


# ------------------------------------------------------------------ engine
@dataclass
class DeepSpeedSettings:
    """Where parameters, gradients and optimiser states live, and on which device."""

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

    def deepspeed_errors(self) -> list[str]:
        """What is wrong with the offload settings for the chosen stage."""
        return offload_errors(
            self.deepspeed, offload_params=self.offload_params, offload_optimizer=self.offload_optimizer
        )


# -------------------------------------------------------------- operations
@dataclass
class ReportingSettings:
    """Logging, progress bars and data-loading workers."""

    logging_steps: int = field(default=10, metadata={"help": "Log loss and metrics every N optimiser steps."})
    tensorboard: bool = field(default=True, metadata={"help": "Write TensorBoard logs to output_dir/tensorboard."})
    progress_bar: bool = field(default=True, metadata={"help": "Show progress bars (pair generation, training)."})
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Worker processes that encode batches (0 = in the training process)."}
    )

    def operations_errors(self, max_steps: int = -1) -> list[str]:
        """What is wrong with the logging and worker settings (``max_steps``: see subclasses)."""
        if self.logging_steps < 1 or self.dataloader_num_workers < 0:
            return ["logging_steps must be at least 1 and dataloader_num_workers >= 0"]
        return []


@dataclass
class CheckpointSettings(ReportingSettings):
    """Reporting plus resumable checkpoints and model snapshots along the run."""

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

    def operations_errors(self, max_steps: int = -1) -> list[str]:
        """What is wrong with logging, checkpoints, snapshots (past ``max_steps``) and workers."""
        errors = []
        if self.logging_steps < 1 or self.save_steps < 0 or self.save_total_limit < 1:
            errors.append("logging_steps and save_total_limit must be at least 1, save_steps >= 0")
        if any(step < 1 for step in self.snapshot_steps):
            errors.append("snapshot_steps must be optimiser steps >= 1")
        elif max_steps > 0 and any(step > max_steps for step in self.snapshot_steps):
            errors.append(f"snapshot_steps past max_steps ({max_steps}) would never be written")
        if self.dataloader_num_workers < 0:
            errors.append("dataloader_num_workers must be >= 0")
        return errors
