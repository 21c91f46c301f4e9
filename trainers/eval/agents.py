"""Agents that answer gengym prompts: the oracle, a random answerer, a model.

An agent answers a batch of envs at once: ``act(envs, prompts)`` gets the
envs (so baselines can ask them for reference answers) and, for each, the
conversation and images a model would see; it returns one answer text each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

Prompt = tuple[list[dict[str, Any]], list[np.ndarray]]


class Agent(Protocol):
    """Answers a batch of prompts."""

    name: str

    def act(self, envs: Sequence[Any], prompts: Sequence[Prompt]) -> list[str]: ...

    def close(self) -> None: ...


class OracleAgent:
    """Answers with the env's own oracle: an upper bound that must score 100%."""

    name = "oracle"

    def act(self, envs: Sequence[Any], prompts: Sequence[Prompt]) -> list[str]:
        return [env.unwrapped.oracle_answer() for env in envs]

    def close(self) -> None:
        """Nothing to release."""


class RandomAgent:
    """Well-formed answers drawn at random (the env's ``sample_random_answer``).

    A floor: it knows the answer format but nothing about the task, so it
    scores near zero. Envs without ``sample_random_answer`` get random text
    from their action space.

    Each answer is drawn from a generator seeded with ``(seed, the episode's
    reset seed, the turn)``, so an episode gets the same answers however the
    envs are batched and whatever ran before it.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)  # for envs reset without a seed

    def _rng_for(self, env: Any) -> np.random.Generator:
        core = env.unwrapped
        episode_seed = getattr(core, "np_random_seed", None)
        transcript = getattr(core, "transcript", None)
        if not isinstance(episode_seed, int) or episode_seed < 0 or not callable(transcript):
            return self.rng
        return np.random.default_rng(np.random.SeedSequence([self.seed, episode_seed, len(transcript())]))

    def act(self, envs: Sequence[Any], prompts: Sequence[Prompt]) -> list[str]:
        out = []
        for env in envs:
            sampler = getattr(env.unwrapped, "sample_random_answer", None)
            rng = self._rng_for(env)
            if sampler is not None:
                out.append(sampler(rng))
            else:
                env.action_space.seed(int(rng.integers(2**31)))
                out.append(env.action_space.sample())
        return out

    def close(self) -> None:
        """Nothing to release."""


class ModelAgent:
    """A Hugging Face VLM or text LM answering through a generation backend.

    Args:
        model: Path or hub id of the checkpoint (anything
            :func:`~trainers.common.modeling.load_model_and_processor` loads).
        generation_backend: Generation backend name (see :mod:`trainers.generation`).
        temperature: 0 for greedy decoding (the default: evaluation should
            not depend on sampling luck); above 0 samples with ``seed``.
        max_new_tokens: Answer length limit (paper: 256 in evaluation).
        max_prompt_length: Longest prompt accepted (clear error beyond).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        dtype: ``"auto"`` (bfloat16 on capable GPUs, float32 on CPU) or a dtype name.
        seed: Seed of sampling.
    """

    def __init__(
        self,
        model: str,
        *,
        generation_backend: str = "hf",
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        max_prompt_length: int | None = 8192,
        device: str = "auto",
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        import torch

        from trainers.common.modeling import load_model_and_processor
        from trainers.generation import make_backend
        from trainers.generation.base import SamplingParams
        from trainers.models import resolve_model_spec

        device, dtype = resolve_device_and_dtype(device, dtype)
        loaded = load_model_and_processor(resolve_model_spec(model), dtype=dtype, device=device)
        self.name = str(model)
        self.model, self.processor, self.is_vision = loaded.model, loaded.processor, loaded.is_vision
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.max_prompt_length = max_prompt_length
        self.backend = make_backend(generation_backend, self.model, self.processor)
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.seed = seed
        self._calls = 0
        # One rollout phase for the agent's whole life: the weights never
        # change during an evaluation, so backends keep their caches and
        # captured graphs across batches instead of rebuilding them per call.
        self._phase = self.backend.rollout_phase()
        self._phase.__enter__()

    def close(self) -> None:
        """Release the backend's caches (and graphs); the agent is done."""
        if self._phase is not None:
            self._phase.__exit__(None, None, None)
            self._phase = None
            self.backend.close()

    def act(self, envs: Sequence[Any], prompts: Sequence[Prompt]) -> list[str]:
        import dataclasses

        inputs = encode_for_generation(self, [p[0] for p in prompts], [p[1] for p in prompts], self.max_prompt_length)
        self._calls += 1
        params = dataclasses.replace(self.params, seed=self.seed * 1_000_003 + self._calls)
        return self.backend.generate(inputs, params).texts


def resolve_device_and_dtype(device: str, dtype: str) -> tuple[str, str]:
    """``"auto"`` made concrete: cuda when torch sees a GPU, bfloat16 on GPUs that have it, else float32.

    Raises:
        ValueError: A cuda device asked for where torch sees none.
    """
    import torch

    from trainers.common.modeling import auto_dtype_name

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use cpu or auto")
    if dtype == "auto":
        dtype = auto_dtype_name(device.startswith("cuda"))
    return device, dtype


def encode_for_generation(
    owner: Any, conversations: Sequence[Any], images: Sequence[Any], max_length: int | None
) -> Any:
    """A batch of prompts encoded for ``owner``'s model, on its device, floats in its dtype.

    ``owner`` is anything holding a loaded model's ``processor``,
    ``is_vision``, ``device`` and ``dtype``, and a ``name`` for errors.

    Raises:
        ValueError: Images for a text-only model, or a prompt over ``max_length``.
    """
    from trainers.common.inputs import cast_floating_inputs, encode_prompts

    if any(images) and not owner.is_vision:
        raise ValueError(f"{owner.name} is a text-only model but the env shows images; use the -L- env")
    inputs = encode_prompts(
        owner.processor, conversations, images if any(images) else None, max_length=max_length
    ).to(owner.device)
    return cast_floating_inputs(inputs, owner.dtype)


def check_model_for_env(spec: str, *, shows_images: bool, trust_remote_code: bool = False) -> bool:
    """Check from the checkpoint's config alone (no weights) that it can answer an env.

    Args:
        spec: Checkpoint folder or hub id.
        shows_images: Whether the env's observations hold images.
        trust_remote_code: Whether the checkpoint's own code may run.

    Returns:
        Whether the checkpoint is a vision-language model.

    Raises:
        ValueError: Saying what to change: no checkpoint there, a model that
            is neither a VLM nor a causal LM, or a text-only model for an env
            that shows images.
    """
    from trainers.common.config import checkpoint_folder_problem
    from trainers.common.modeling import is_vision_config, read_model_config
    from trainers.models import resolve_model_spec

    spec = resolve_model_spec(spec)
    if not spec:
        raise ValueError("give a checkpoint folder or hub id (or 'oracle' / 'random')")
    if problem := checkpoint_folder_problem(spec):
        raise ValueError(problem)
    config = read_model_config(spec, trust_remote_code=trust_remote_code)
    is_vision = is_vision_config(config)
    if is_vision is None:
        raise ValueError(
            f"{spec!r} ({type(config).__name__}) is neither an image-text-to-text nor a causal LM model; "
            "gengym evaluates generative models only"
        )
    if shows_images and not is_vision:
        raise ValueError(
            f"{spec!r} is a text-only model but the env shows images; evaluate it on the env's text mode "
            "(an -L- id) or use a vision-language model"
        )
    return is_vision


def make_agent(spec: str, **kwargs: Any) -> Agent:
    """``"oracle"``, ``"random"``, a model path/hub id or a shipped model (``tiny:gp-l``)."""
    if spec == "oracle":
        return OracleAgent()
    if spec == "random":
        return RandomAgent(seed=kwargs.get("seed", 0))
    return ModelAgent(spec, **kwargs)
