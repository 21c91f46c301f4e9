"""Helpers shared by the trainer tests: tiny run settings and running the ``gengym`` command.

Imported by test modules as ``helpers`` (pytest puts this folder on the
path). Cheap to import: config classes are passed in or imported inside the
functions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

import pytest

C = TypeVar("C")

REPO = Path(__file__).resolve().parent.parent
#: GeneralPoints-VL with small images, so tiny VLMs read few image tokens.
SMALL_GP_VL = {"image_size": [64, 64]}

#: A few-step run on CPU of SFT, DPO or a reward model: no warmup, plain
#: PyTorch, a log record every step, nothing written but the model and metrics.
TINY_RUN = dict(
    env_id="GeneralPoints-L-v0",
    gradient_accumulation_steps=1,
    warmup_ratio=0.0,
    deepspeed="none",
    logging_steps=1,
    tensorboard=False,
    progress_bar=False,
)

#: One PPO update on CPU: 2 envs x 2 steps, one epoch of single-turn micro-batches.
TINY_PPO = dict(
    env_id="GeneralPoints-L-v0",
    num_envs=2,
    num_steps=2,
    total_updates=1,
    minibatch_size=2,
    micro_batch_size=1,
    ppo_epochs=1,
    max_new_tokens=12,
    deepspeed="none",
    tensorboard=False,
    learning_rate=1e-3,
    max_grad_norm=1.0,
)

#: The parts of a tiny experiment recipe that do not depend on the env or the methods.
TINY_EXPERIMENT = {
    "device": "cpu",
    "eval_episodes": 2,
    "eval_batch_size": 2,
    "eval_max_new_tokens": 8,
    "init_sft": {"num_examples": 8, "max_steps": 2, "per_device_batch_size": 4, "progress_bar": False},
    "sft": {"num_examples": 8, "max_steps": 2, "per_device_batch_size": 4, "progress_bar": False},
    "ppo": {
        "total_updates": 1,
        "num_envs": 2,
        "num_steps": 1,
        "minibatch_size": 2,
        "micro_batch_size": 2,
        "ppo_epochs": 1,
        "max_new_tokens": 8,
    },
}


def tiny_run_config(cls: type[C], model: Path, out: Path, **settings: Any) -> C:
    """``cls`` (an SFT, DPO or reward-model config) for a tiny run of ``model`` into ``out``."""
    return cls(**{**TINY_RUN, "model": str(model), "output_dir": str(out), **settings})


def tiny_ppo_config(model: Path, out: Path, **overrides: Any):
    """A ``PPOConfig`` for one tiny update of ``model`` into ``out``."""
    from trainers.ppo.ppo_config import PPOConfig

    return PPOConfig(**{**TINY_PPO, "model": str(model), "output_dir": str(out), **overrides})


def command_env() -> dict[str, str]:
    """The environment of a command started by a test: offline, CPU, and no launcher settings.

    Launcher variables (rank, world size, master port) that an in-process
    run left in this process would otherwise make the child join or bind
    what is not its own.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def run_command(cmd: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run a training command offline on CPU; on timeout kill it with every process it started."""
    proc = subprocess.Popen(cmd, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(cmd)}\n{stderr[-3000:]}")
    return proc.returncode, stderr


def gengym_command(*args: str) -> list[str]:
    """The ``gengym`` command line with ``args``, run by this interpreter."""
    return [sys.executable, "-m", "gengym_core.cli", *args]


def run_gengym(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``gengym ARGS`` in a clean environment (see :func:`command_env`), capturing its output."""
    return subprocess.run(gengym_command(*args), env=command_env(), capture_output=True, text=True, timeout=timeout)
