"""``reward-model:PATH``: score each PPO turn with a learned reward model (RLHF).

The reward model (trained by ``gengym reward-model``, see
:mod:`trainers.reward_model`) reads the conversation the policy answered
plus its answer, rendered exactly as in reward-model training
(:func:`~trainers.reward_model.modeling.encode_for_scoring`), and returns one
score per turn. Turns are scored in batches of ``batch_size`` without
gradients, on ``device``: the policy's GPU by default (``auto``), or another
(``cuda:1``, ``cpu``) to keep the policy's memory free.

Compute: each scored token costs ``2 N_RM`` FLOPs; the scores' tokens are
charged to the PPO run (see :class:`~trainers.rewards.ScoringCompute`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gengym_core.chat import assistant_message
from trainers.rewards import ScoringCompute, Turn, resolve_device, resolve_dtype


class RewardModelReward:
    """Scores turns with a reward model folder (or a one-label sequence classifier).

    Args:
        path: The reward model (``gengym reward-model``'s ``final/`` folder).
        device: ``auto`` (the policy's GPU if any, else CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 on capable GPUs, else float32),
            ``bfloat16`` or ``float32``.
        batch_size: Turns per forward pass.
        max_length: Longest conversation scored, in tokens (``None``: no
            limit); longer ones raise instead of being truncated.
        compute: The PPO run's ``ComputeTracker``, charged for every forward.
    """

    def __init__(
        self,
        path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_length: int | None = None,
        compute: Any = None,
    ) -> None:
        from trainers.reward_model.modeling import load_reward_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.loaded = load_reward_model(path, dtype=self.dtype, device=self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.compute = ScoringCompute(self.loaded.num_params, compute)

    def __call__(self, turns: Sequence[Turn]) -> list[float]:
        import torch

        from trainers.common.inputs import cast_floating_inputs
        from trainers.reward_model.modeling import encode_for_scoring

        scores: list[float] = []
        for start in range(0, len(turns), self.batch_size):
            chunk = turns[start : start + self.batch_size]
            conversations = [list(t.messages) + [assistant_message(t.answer)] for t in chunk]
            images = [list(t.images) for t in chunk]
            if any(images) and not self.loaded.is_vision:
                raise ValueError(
                    f"the reward model {self.loaded.path} is text-only but {chunk[0].env_id} shows images; train it "
                    "on a vision-language backbone"
                )
            inputs = encode_for_scoring(
                self.loaded.processor, conversations, images if any(images) else None, max_length=self.max_length
            ).to(self.device)
            cast_floating_inputs(inputs, self.dtype)
            with torch.no_grad():
                values = self.loaded.model(**inputs).logits.squeeze(-1).float()
            scores.extend(values.cpu().tolist())
            self.compute.add(int(inputs["attention_mask"].sum()))
        return scores
