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

__all__ = [
    "DEEPSPEED_CONFIG_DIR",
    "EngineConfig",
    "OpBuildGuard",
    "TrainEngine",
    "ZeroStage",
    "deepspeed_config",
    "init_distributed",
]

#: torch's build lock (a ``FileBaton``) inside each extension's build folder. It names no owner:
#: a build killed while holding it leaves it behind, and every later build of that op waits forever.
OP_BUILD_LOCK = "lock"
#: gengym's own marker beside the build folders: processes inside DeepSpeed's setup hold it shared.
OP_BUILD_MARKER = "gengym-op-build.lock"


def extension_build_root() -> Path:
    """The folder holding one build folder per torch extension (DeepSpeed's JIT-built ops among them).

    ``TORCH_EXTENSIONS_DIR`` when set, else torch's default (a per-user
    cache folder, one subfolder per Python version and accelerator).
    """
    import sys

    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured)
    from torch.utils.cpp_extension import get_default_build_root

    if torch.version.hip is not None:
        accelerator = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        accelerator = "cu" + torch.version.cuda.replace(".", "")
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path(get_default_build_root()) / f"{python}_{accelerator}"


def _build_running(folder: Path) -> bool:
    """Whether a process on this machine works in ``folder`` (torch runs ninja and the compilers there)."""
    target = os.path.realpath(folder)
    try:
        entries = list(os.scandir("/proc"))
    except OSError:  # no /proc: assume the build is alive
        return True
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == target or cwd.startswith(target + os.sep):
            return True
    return False


class OpBuildGuard:
    """Keeps DeepSpeed's op builds from hanging on a build lock that a killed run left behind.

    DeepSpeed compiles some ops on first use (through torch's
    ``cpp_extension``), guarded by a lock file with no owner in it. Around
    DeepSpeed's setup, :meth:`start`:

    1. takes gengym's marker exclusively, when no other gengym process is in
       its setup (on any machine sharing the build folder): then a build lock
       in whose folder no process of this machine works is stale, and is
       removed with a message;
    2. holds the marker shared until :meth:`stop`, so other gengym runs leave
       this run's locks alone;
    3. watches: a build lock older than ``warn_after`` seconds is reported
       once, naming the file and how to clear it (a build that runs takes a
       few minutes; one that waits on a dead lock would otherwise wait
       silently forever).

    Args:
        root: The extensions' build root (default :func:`extension_build_root`).
        warn_after: Age in seconds of a lock worth a message.
        poll: Seconds between looks at the locks.
        log: Where messages go (default: stderr).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        warn_after: float = 60.0,
        poll: float = 5.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        import sys

        self.root = Path(root) if root is not None else extension_build_root()
        self.warn_after = warn_after
        self.poll = poll
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._fd: int | None = None
        self._stop = None
        self._thread = None

    def start(self) -> OpBuildGuard:
        import fcntl
        import threading

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.root / OP_BUILD_MARKER, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a build root we cannot write: DeepSpeed will say so itself
            self._fd = None
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.remove_stale_locks()
                fcntl.flock(self._fd, fcntl.LOCK_SH)
            except BlockingIOError:  # another gengym process is setting up: its builds may be running
                fcntl.flock(self._fd, fcntl.LOCK_SH)
            except OSError:  # no locks on this file system: only watch
                pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gengym-op-build-guard", daemon=True)
        self._thread.start()
        return self

    def remove_stale_locks(self) -> list[Path]:
        """Remove the build locks under the root that no build on this machine holds; return them."""
        removed = []
        for lock in sorted(self.root.glob(f"*/{OP_BUILD_LOCK}")):
            if _build_running(lock.parent):
                continue
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                removed.append(lock)
                self.log(f"gengym: removed a stale DeepSpeed op-build lock {lock} (no build runs there)")
        return removed

    def _watch(self) -> None:
        import time

        warned: set[Path] = set()
        while not self._stop.wait(self.poll):
            for lock in self.root.glob(f"*/{OP_BUILD_LOCK}"):
                try:
                    age = time.time() - lock.stat().st_mtime
                except OSError:
                    continue
                if age >= self.warn_after and lock not in warned:
                    warned.add(lock)
                    self.log(
                        f"gengym: DeepSpeed waits for the op-build lock {lock} ({age:.0f} s old). If no build "
                        f"of that op is running (a run killed while building leaves the lock), delete it: rm {lock}"
                    )

    def stop(self) -> None:
        """Stop watching and drop the marker (nothing when not started)."""
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OpBuildGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
            with OpBuildGuard():  # DeepSpeed may compile ops here
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
