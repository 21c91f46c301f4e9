"""Engine settings and DeepSpeed config files, importable without torch.

:class:`EngineConfig` says where parameters, gradients and optimiser states
live; :func:`deepspeed_config` turns it into the dict DeepSpeed reads. Kept
apart from :mod:`trainers.common.engine` so that configs (and ``gengym
--help``) load without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ZeroStage = Literal["zero3", "zero2", "none"]

#: DeepSpeed config files shipped with gengym (usable with `deepspeed` or
#: `accelerate launch --deepspeed_config_file`).
DEEPSPEED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "deepspeed"


@dataclass
class EngineConfig:
    """How parameters, gradients and optimiser states are placed."""

    backend: ZeroStage = field(
        default="zero3",
        metadata={"help": "zero3 (shard everything), zero2 (shard optimizer+grads) or none (one device)."},
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate."})
    adam_eps: float = field(default=1e-7, metadata={"help": "Adam epsilon (paper: 1e-7)."})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam betas."})
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay."})
    max_grad_norm: float = field(default=0.01, metadata={"help": "Gradient clipping norm (paper: 0.01)."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    micro_batch_size: int = field(default=1, metadata={"help": "Sequences per forward/backward."})
    bf16: bool = field(default=False, metadata={"help": "Train in bfloat16 (DeepSpeed bf16 mode)."})
    offload_optimizer: bool = field(
        default=False, metadata={"help": "Keep optimizer states in CPU memory (ZeRO-2/3)."}
    )
    offload_params: bool = field(default=False, metadata={"help": "Keep parameters in CPU memory (ZeRO-3)."})


def deepspeed_config(cfg: EngineConfig) -> dict[str, Any]:
    """The DeepSpeed config dict for ``cfg`` (backend ``zero2`` or ``zero3``)."""
    stage = {"zero3": 3, "zero2": 2}[cfg.backend]
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": 5e7,
    }
    if stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=5e7,
            stage3_param_persistence_threshold=1e5,
            stage3_gather_16bit_weights_on_model_save=True,
        )
        if cfg.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": _cuda_available()}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": _cuda_available()}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.offload_optimizer:
        # DeepSpeed's CPU Adam (built on first use) is the optimizer that
        # works with offloaded states; a client torch optimizer does not.
        config["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": cfg.learning_rate,
                "eps": cfg.adam_eps,
                "betas": list(cfg.adam_betas),
                "weight_decay": cfg.weight_decay,
            },
        }
    return config


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
