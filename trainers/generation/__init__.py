"""Generation backends: how the PPO loop and the evaluator sample answers.

Rollouts dominate RL time, so generation is a swappable part behind one small
interface, :class:`~trainers.generation.base.GenerationBackend`. Pick one by
name with :func:`make_backend`:

* ``"hf"`` -- Hugging Face ``generate``; the reference for correctness.
* ``"static"`` -- our own decode loop on a static KV cache, with each decode
  step captured as a CUDA graph on GPU (see :mod:`trainers.generation.static`).
* ``"vllm"`` -- generation through vLLM when it is installed (optional extra;
  see :mod:`trainers.generation.vllm_backend`).

Backends import torch lazily; importing this package is cheap.
"""

from __future__ import annotations

from typing import Any, Literal

#: The names a backend is chosen by: ``generation_backend`` in configs,
#: ``--generation-backend`` on the command line.
BackendName = Literal["hf", "static", "vllm"]

#: Backend name -> "module:class".
BACKENDS: dict[str, str] = {
    "hf": "trainers.generation.hf:HFGenerationBackend",
    "static": "trainers.generation.static:StaticGenerationBackend",
    "vllm": "trainers.generation.vllm_backend:VLLMGenerationBackend",
}


def available_backends() -> list[str]:
    """Names accepted by :func:`make_backend`."""
    return sorted(BACKENDS)


def make_backend(name: str, model: Any, processor: Any, **kwargs: Any):
    """Build the generation backend ``name`` around ``model`` and ``processor``.

    Raises:
        ValueError: ``name`` is not a known backend.
    """
    import importlib

    if name not in BACKENDS:
        raise ValueError(
            f"unknown generation backend {name!r}; choose one of {', '.join(available_backends())}"
        )
    module_name, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, processor, **kwargs)
