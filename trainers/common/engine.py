"""One training engine interface over DeepSpeed (ZeRO-2/3) and plain PyTorch.

The PPO loop is written once against :class:`TrainEngine`; whether the
parameters are sharded by DeepSpeed ZeRO-3, partitioned optimizer states of
ZeRO-2, or held whole on one device (``"none"``) is a setting, not a code path
of the loop. The engine owns the optimiser, the LR schedule, gradient
accumulation and clipping, and the gather of sharded weights for generation.

DeepSpeed runs on CPU as well (gloo backend, single process), which is how the
test suite exercises the real ZeRO-3 path without a GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from trainers.common.engine_config import (
    DEEPSPEED_CONFIG_DIR,
    EngineConfig,
    ZeroStage,
    deepspeed_config,
)

__all__ = ["DEEPSPEED_CONFIG_DIR", "EngineConfig", "TrainEngine", "ZeroStage", "deepspeed_config", "init_distributed"]


#: Launcher variables :func:`init_distributed` set itself for a plain
#: single-process start. They describe that process group only: once it is
#: closed they must go, or the next trainer in the same process (accelerate
#: reads them) would start a "multi-CPU" group on its default port 29500,
#: which any other run on the machine may hold.
_INVENTED_LAUNCH_ENV: list[str] = []


def forget_invented_launch_env() -> None:
    """Drop the launcher variables :func:`init_distributed` invented (after the group is closed)."""
    for key in _INVENTED_LAUNCH_ENV:
        os.environ.pop(key, None)
    _INVENTED_LAUNCH_ENV.clear()


def init_distributed(backend: str | None = None) -> tuple[int, int, int]:
    """Initialise torch.distributed the way `deepspeed` and `accelerate launch`
    expect, or as a single process when started plainly.

    Returns ``(rank, local_rank, world_size)``. Uses NCCL on CUDA and gloo on
    CPU unless ``backend`` says otherwise.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
            if key not in os.environ:
                os.environ[key] = value
                _INVENTED_LAUNCH_ENV.append(key)
        chose_port = "MASTER_PORT" not in os.environ
        if chose_port:
            os.environ["MASTER_PORT"] = str(_free_port())
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        import deepspeed

        try:
            deepspeed.init_distributed(dist_backend=backend, verbose=False)
        finally:
            if chose_port:
                # Our single-process group now owns that port; a child process
                # (a subcommand started from here) must pick its own.
                del os.environ["MASTER_PORT"]
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrainEngine:
    """Wraps a module for training: backward, optimiser step, gather, checkpoints.

    Args:
        module: The trainable module (policy with value head).
        cfg: Placement and optimiser settings.
        total_steps: Optimiser steps over the whole run, for the LR schedule.
        lr_lambda: Multiplier of the peak LR as a function of the optimiser
            step (see :func:`trainers.ppo.core.cosine_schedule_with_warmup`).
        device: Device for ``backend="none"`` (DeepSpeed picks its own).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        cfg: EngineConfig,
        lr_lambda: Callable[[int], float],
        device: torch.device | str | None = None,
    ) -> None:
        self.cfg = cfg
        self._micro_steps = 0
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the module has no trainable parameters")
        if cfg.backend == "none":
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.module = module.to(self.device)
            self.optimizer = _adamw(params, cfg)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
            self.ds_engine = None
        else:
            import deepspeed

            init_distributed()
            config = deepspeed_config(cfg)
            optimizer = None if cfg.offload_optimizer else _adamw(params, cfg)
            scheduler_factory = (
                (lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda))
                if optimizer is None
                else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
            )
            engine, opt, _, sched = deepspeed.initialize(
                model=module,
                model_parameters=params,
                optimizer=optimizer,
                lr_scheduler=scheduler_factory,
                config=config,
            )
            self.ds_engine = engine
            self.module = engine.module
            self.optimizer = opt
            self.scheduler = sched
            self.device = engine.device

    # ------------------------------------------------------------------ training
    @property
    def is_zero3(self) -> bool:
        return self.cfg.backend == "zero3"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        target = self.ds_engine if self.ds_engine is not None else self.module
        return target(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward one micro-batch loss (already averaged within the micro-batch).

        Raises:
            FloatingPointError: The loss is NaN or infinite; nothing is
                applied, so the weights and the last checkpoint stay good.
        """
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(
                f"the loss is {loss.detach().float().item()}; stopping before it reaches the weights. "
                "Lower the learning rate or check the rewards and inputs of this update."
            )
        if self.ds_engine is not None:
            self.ds_engine.backward(loss)
        else:
            (loss / self.cfg.gradient_accumulation_steps).backward()

    def step(self) -> float | None:
        """Finish a micro-batch; on an accumulation boundary clip, step the
        optimiser and the LR schedule and return the gradient norm."""
        self._micro_steps += 1
        boundary = self._micro_steps % self.cfg.gradient_accumulation_steps == 0
        if self.ds_engine is not None:
            self.ds_engine.step()
            if not boundary:
                return None
            norm = self.ds_engine.get_global_grad_norm()
            return None if norm is None else float(norm)
        if not boundary:
            return None
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def optimizer_steps(self) -> int:
        return self._micro_steps // self.cfg.gradient_accumulation_steps

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    # ---------------------------------------------------------------- generation
    @contextlib.contextmanager
    def gathered(self, enabled: bool = True) -> Iterator[torch.nn.Module]:
        """Full weights for a whole rollout phase.

        Under ZeRO-3 every parameter is gathered once on entry and the
        partitioning hooks are paused, so generation runs at the speed of an
        unsharded model; on exit the parameters are partitioned again. Needs
        room for one full copy of the weights per process: when that does not
        fit, pass ``enabled=False`` and each forward gathers layer by layer
        (slow, but bounded memory). Other backends just yield the module.
        """
        if not (self.is_zero3 and enabled):
            yield self.module
            return
        import deepspeed

        params = list(self.module.parameters())
        with deepspeed.zero.GatheredParameters(params):
            offload = getattr(self.optimizer, "parameter_offload", None)
            hooks_paused = offload is not None and _pause_zero3_hooks(offload)
            try:
                yield self.module
            finally:
                if hooks_paused:
                    _resume_zero3_hooks(offload)

    # --------------------------------------------------------------- checkpoints
    def save_state(self, directory: Path, client_state: dict[str, Any]) -> None:
        """Save weights, optimiser and scheduler state, plus ``client_state``
        (JSON-serialisable loop state) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "client_state.json").write_text(json.dumps(client_state))
        if self.ds_engine is not None:
            self.ds_engine.save_checkpoint(str(directory), tag="engine", save_latest=False)
        else:
            from safetensors.torch import save_file

            state = {k: v.detach().contiguous().cpu() for k, v in self.module.state_dict().items()}
            save_file(_dedupe_shared(state), str(directory / "module.safetensors"))
            torch.save(
                {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                directory / "optimizer.pt",
            )

    def load_state(self, directory: Path) -> dict[str, Any]:
        """Restore what :meth:`save_state` wrote; return the client state."""
        client_state = json.loads((directory / "client_state.json").read_text())
        if self.ds_engine is not None:
            with _weights_only_checkpoint_loads():
                path, _ = self.ds_engine.load_checkpoint(str(directory), tag="engine")
            if path is None:
                raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}")
        else:
            from safetensors.torch import load_file

            state = load_file(str(directory / "module.safetensors"), device=str(self.device))
            self.module.load_state_dict(state, strict=False)
            opt = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(opt["optimizer"])
            self.scheduler.load_state_dict(opt["scheduler"])
        self._micro_steps = int(client_state.get("optimizer_steps", 0)) * self.cfg.gradient_accumulation_steps
        return client_state

    @contextlib.contextmanager
    def full_state_dict(self) -> Iterator[dict[str, torch.Tensor]]:
        """The module's whole state dict on CPU (gathered under ZeRO-3)."""
        if self.is_zero3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters())):
                yield {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        else:
            yield {k: v.detach().cpu() for k, v in self.module.state_dict().items()}


def _adamw(params: list[torch.nn.Parameter], cfg: EngineConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        eps=cfg.adam_eps,
        betas=tuple(cfg.adam_betas),
        weight_decay=cfg.weight_decay,
    )


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage (tied embeddings): keep one."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen and v.numel() > 0:
            continue
        seen[key] = k
        out[k] = v
    return out


def _pause_zero3_hooks(offload: Any) -> bool:
    """Remove ZeRO-3's per-module fetch/release hooks while weights are gathered.

    With every parameter already gathered the hooks only cost time (they run
    around every submodule on every decode step). Returns whether hooks were
    removed; :func:`_resume_zero3_hooks` puts them back.
    """
    forward_hooks = getattr(offload, "forward_hooks", None)
    backward_hooks = getattr(offload, "backward_hooks", None)
    if forward_hooks is None or backward_hooks is None:
        return False
    for p in offload.module.parameters():
        if hasattr(p, "ds_active_sub_modules"):
            p.ds_active_sub_modules.clear()
    for hook in [*forward_hooks, *backward_hooks]:
        hook.remove()
    offload.forward_hooks, offload.backward_hooks = [], []
    return True


def _resume_zero3_hooks(offload: Any) -> None:
    coordinator = getattr(offload, "param_coordinator", None)
    if coordinator is not None and not coordinator.is_invalid_trace():
        coordinator._invalidate_trace()
    offload._register_deepspeed_module(offload.module)


@contextlib.contextmanager
def _weights_only_checkpoint_loads() -> Iterator[None]:
    """Make DeepSpeed read its checkpoint files with ``torch.load(weights_only=True)``.

    DeepSpeed's checkpoint engine unpickles with ``weights_only=False``, which
    runs arbitrary code from a tampered file. gengym's checkpoints hold only
    tensors, numbers, strings and containers (plus a few DeepSpeed enums that
    are allow-listed here), so the safe loader reads them.
    """
    from deepspeed.runtime.checkpoint_engine import torch_checkpoint_engine

    original = torch_checkpoint_engine.torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    safe_globals = _deepspeed_safe_globals()
    torch_checkpoint_engine.torch.load = safe_load  # type: ignore[attr-defined]
    try:
        with torch.serialization.safe_globals(safe_globals):
            yield
    finally:
        torch_checkpoint_engine.torch.load = original  # type: ignore[attr-defined]


def _deepspeed_safe_globals() -> list[Any]:
    """Plain-data classes that appear inside DeepSpeed checkpoints."""
    out: list[Any] = []
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum

        out.append(ZeroStageEnum)
    except ImportError:  # pragma: no cover - older DeepSpeed
        pass
    try:
        from deepspeed.runtime.fp16.loss_scaler import LossScaler

        out.append(LossScaler)
    except ImportError:  # pragma: no cover
        pass
    try:
        from deepspeed.utils.tensor_fragment import fragment_address

        out.append(fragment_address)
    except ImportError:  # pragma: no cover
        pass
    return out
