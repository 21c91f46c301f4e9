"""One update's rollout as tensors with explicit fields.

Laid out like cleanrl's buffers: ``[num_steps, num_envs]`` per turn and
``[num_steps, num_envs, max_new_tokens]`` per answer token, so the flat turn
index ``k = step * num_envs + env`` is the order the turns were taken in.
:func:`trainers.ppo.core.gae` wants time last and takes the transpose.

The prompts (chat messages and images) stay Python objects: every forward
pass re-encodes them with the model's own processor, since image inputs
differ per model family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gengym_core.chat import Message

#: What the policy is shown for one turn: chat messages and the images they refer to.
Prompt = tuple[list[Message], list[np.ndarray]]


@dataclass
class TurnBatch:
    """Turns picked from a buffer (a minibatch, or a chunk to score), flat."""

    prompts: list[Prompt]
    completions: list[list[int]]
    logprobs: Tensor  # [b, max_new_tokens]
    weights: Tensor  # [b, max_new_tokens]
    ref_logprobs: Tensor | None  # [b, max_new_tokens]
    values: Tensor  # [b]
    advantages: Tensor  # [b]
    returns: Tensor  # [b]


@dataclass
class RolloutBuffer:
    """Everything PPO learns from in one update; ``S`` steps, ``E`` envs, ``L`` = max_new_tokens."""

    # Flat lists, turn k = step * num_envs + env.
    prompts: list[Prompt | None]
    texts: list[str]
    infos: list[dict[str, Any]]  # the env's step info (JSON-friendly part), as reward functions see it
    # [S, E, L], per answer token; padding is 0 in every field.
    tokens: Tensor  # int64 answer token ids
    masks: Tensor  # 1.0 on the answer's tokens
    logprobs: Tensor  # log-probs at rollout time, under softmax(logits / temperature)
    weights: Tensor  # thought_weight before the answer key, 1 after it
    ref_logprobs: Tensor | None  # the frozen reference's, when kl_coef > 0
    # [S, E], per turn.
    values: Tensor  # the critic's V(prompt) at rollout time
    env_rewards: Tensor  # the env verifier's reward (float64: exactly as the env gave it)
    rewards: Tensor  # what PPO maximises (the reward function's score)
    terminated: Tensor  # bool: the episode ended here by success
    truncated: Tensor  # bool: the episode was cut here (verification budget), not finished
    bootstrap_values: Tensor  # V(state it was cut in) where truncated, else 0
    advantages: Tensor
    returns: Tensor
    # [E]: V(state each env continues from in the next rollout).
    last_values: Tensor

    @classmethod
    def empty(cls, num_steps: int, num_envs: int, max_new_tokens: int, reference: bool = False) -> RolloutBuffer:
        turns, tokens = (num_steps, num_envs), (num_steps, num_envs, max_new_tokens)
        size = num_steps * num_envs
        return cls(
            prompts=[None] * size,
            texts=[""] * size,
            infos=[{} for _ in range(size)],
            tokens=torch.zeros(tokens, dtype=torch.long),
            masks=torch.zeros(tokens),
            logprobs=torch.zeros(tokens),
            weights=torch.zeros(tokens),
            ref_logprobs=torch.zeros(tokens) if reference else None,
            values=torch.zeros(turns),
            env_rewards=torch.zeros(turns, dtype=torch.float64),
            rewards=torch.zeros(turns),
            terminated=torch.zeros(turns, dtype=torch.bool),
            truncated=torch.zeros(turns, dtype=torch.bool),
            bootstrap_values=torch.zeros(turns),
            advantages=torch.zeros(turns),
            returns=torch.zeros(turns),
            last_values=torch.zeros(num_envs),
        )

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_envs(self) -> int:
        return self.values.shape[1]

    @property
    def size(self) -> int:
        """Turns in the buffer, ``num_steps * num_envs``."""
        return self.values.numel()

    def add(
        self,
        step: int,
        env: int,
        prompt: Prompt,
        token_ids: Sequence[int],
        text: str,
        env_reward: float,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        """Record env ``env``'s answer at ``step`` and what the env said to it."""
        if len(token_ids) > self.tokens.shape[-1]:
            raise ValueError(f"an answer of {len(token_ids)} tokens does not fit max_new_tokens={self.tokens.shape[-1]}")
        k = step * self.num_envs + env
        self.prompts[k], self.texts[k], self.infos[k] = prompt, text, info
        n = len(token_ids)
        self.tokens[step, env, :n] = torch.as_tensor(list(token_ids), dtype=torch.long)
        self.masks[step, env, :n] = 1.0
        self.env_rewards[step, env] = float(env_reward)
        self.terminated[step, env] = terminated
        self.truncated[step, env] = truncated and not terminated

    def completion(self, k: int) -> list[int]:
        """Token ids of turn ``k``'s answer."""
        row = self.tokens.view(self.size, -1)[k]
        return row[: int(self.masks.view(self.size, -1)[k].sum())].tolist()

    def select(self, indices: Sequence[int]) -> TurnBatch:
        """Turns ``indices`` (flat), in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        prompts = [self.prompts[k] for k in index.tolist()]
        if any(p is None for p in prompts):
            raise ValueError("a selected turn was never added to the buffer")
        return TurnBatch(
            prompts=prompts,  # type: ignore[arg-type]
            completions=[self.completion(k) for k in index.tolist()],
            logprobs=_flat(self.logprobs)[index],
            weights=_flat(self.weights)[index],
            ref_logprobs=None if self.ref_logprobs is None else _flat(self.ref_logprobs)[index],
            values=_flat(self.values)[index],
            advantages=_flat(self.advantages)[index],
            returns=_flat(self.returns)[index],
        )

    def store_scores(
        self,
        indices: Sequence[int],
        logprobs: Tensor,
        weights: Tensor,
        values: Tensor,
        ref_logprobs: Tensor | None = None,
    ) -> None:
        """Write the scoring pass of turns ``indices``: per-token rows cut to each answer's length."""
        masks = _flat(self.masks)
        logprobs, weights = logprobs.float().cpu(), weights.float().cpu()
        ref_logprobs = None if ref_logprobs is None else ref_logprobs.float().cpu()
        for j, k in enumerate(indices):
            n = int(masks[k].sum())
            _flat(self.logprobs)[k, :n] = logprobs[j, :n]
            _flat(self.weights)[k, :n] = weights[j, :n]
            if self.ref_logprobs is not None and ref_logprobs is not None:
                _flat(self.ref_logprobs)[k, :n] = ref_logprobs[j, :n]
        _flat(self.values)[torch.as_tensor(list(indices), dtype=torch.long)] = values.float().cpu()


def _flat(x: Tensor) -> Tensor:
    """A ``[S, E, ...]`` field as ``[S * E, ...]``, sharing its storage (writes go through)."""
    return x.view(-1, *x.shape[2:])
