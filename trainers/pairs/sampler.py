"""Sampling several answers per prompt from a model, with a record of the compute spent.

Used for model-sampled preference pairs: the same prompt is repeated
``k`` times in one generation batch, so the ``k`` answers are independent
draws at the configured temperature. Every prompt token and every generated
token passes the model forward once (prefill, then one cached decode step
per token), so the sampling compute is ``2 N (prompt + generated tokens)``,
the ``D_buffer`` term of the paper's RL formula.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from trainers.pairs.config import PairsConfig


class AnswerSampler:
    """A model that answers gengym prompts ``k`` times each.

    Args:
        config: ``model``, ``temperature``, ``top_p``, ``max_new_tokens``,
            ``max_prompt_length``, ``device`` and ``dtype`` are read.
    """

    def __init__(self, config: PairsConfig) -> None:
        import torch

        from trainers.common.compute import count_parameters
        from trainers.common.modeling import load_model_and_processor
        from trainers.eval.agents import resolve_device_and_dtype
        from trainers.generation import make_backend
        from trainers.generation.base import SamplingParams

        device, dtype = resolve_device_and_dtype(config.device, config.dtype)
        loaded = load_model_and_processor(config.model, dtype=dtype, device=device)
        self.name = config.model
        self.model, self.processor, self.is_vision = loaded.model, loaded.processor, loaded.is_vision
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.config = config
        self.backend = make_backend("hf", self.model, self.processor)
        self.params = SamplingParams(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
        )
        self.num_params = count_parameters(self.model)
        self.prompt_tokens = 0
        self.generated_tokens = 0

    def sample(
        self, prompts: Sequence[tuple[list[dict[str, Any]], list[Any]]], k: int, *, seed: int
    ) -> list[list[str]]:
        """``k`` sampled answers for each ``(messages, images)`` prompt, in prompt order.

        Raises:
            ValueError: Images for a text-only model, or a prompt longer than
                ``max_prompt_length``.
        """
        from trainers.eval.agents import encode_for_generation

        conversations = [messages for messages, _ in prompts for _ in range(k)]
        images = [list(pictures) for _, pictures in prompts for _ in range(k)]
        inputs = encode_for_generation(self, conversations, images, self.config.max_prompt_length)
        params = dataclasses.replace(self.params, seed=seed)
        with self.backend.rollout_phase():
            generation = self.backend.generate(inputs, params)
        self.prompt_tokens += int(inputs["attention_mask"].sum())
        self.generated_tokens += generation.num_tokens
        texts = generation.texts
        return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]

    @property
    def info(self) -> dict[str, Any]:
        """What sampling cost so far: ``N``, tokens, and ``2 N D`` in GFLOPs."""
        tokens = self.prompt_tokens + self.generated_tokens
        return {
            "model": self.config.model,
            "num_params": self.num_params,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "gflops": 2 * self.num_params * tokens / 1e9,
        }
