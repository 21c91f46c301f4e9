"""One reward interface, many sources.

The PPO loop scores every turn through a :class:`RewardFunction`: a callable
that takes a batch of :class:`Turn` records (the prompt the policy saw, its
answer, and what the env's verifier said) and returns one float per turn.
The env's verifier is the default source; reward models and AI judges plug in
through the same interface, chosen by a *reward spec* string:

``env``
    The env's own reward (the verifier's score), unchanged.

More kinds register themselves in :data:`REWARD_KINDS`. A spec is checked by
:func:`validate_reward_spec` before any model is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Reward spec kind -> ("module:factory", whether the spec needs ":PATH").
REWARD_KINDS: dict[str, tuple[str, bool]] = {
    "env": ("trainers.rewards:EnvReward", False),
}


@dataclass
class Turn:
    """One answered turn, as a reward function sees it.

    Attributes:
        env_id: The env the turn came from.
        messages: The chat conversation the policy answered (ends with a user turn).
        images: The images its placeholders refer to.
        answer: The policy's raw answer text.
        env_reward: The env verifier's reward for it.
        info: The env's step info (verdict, feedback, ...).
    """

    env_id: str
    messages: list[dict[str, Any]]
    images: list[Any]
    answer: str
    env_reward: float
    info: dict[str, Any] = field(default_factory=dict)


class RewardFunction(Protocol):
    """Scores a batch of turns; one float per turn, in order."""

    def __call__(self, turns: Sequence[Turn]) -> list[float]: ...


class EnvReward:
    """The env verifier's own reward."""

    def __call__(self, turns: Sequence[Turn]) -> list[float]:
        return [float(t.env_reward) for t in turns]


def parse_reward_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"kind"`` or ``"kind:PATH"`` and check the kind exists.

    Raises:
        ValueError: Unknown kind, or a path missing/extra for that kind.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("reward spec is empty; use one of: " + _kinds_help())
    kind, sep, arg = spec.strip().partition(":")
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward {spec!r}; use one of: {_kinds_help()}")
    needs_arg = REWARD_KINDS[kind][1]
    if needs_arg and not arg:
        raise ValueError(f"reward {kind!r} needs a model path: {kind}:PATH")
    if not needs_arg and sep:
        raise ValueError(f"reward {kind!r} takes no argument, got {spec!r}")
    return kind, (arg or None)


def validate_reward_spec(spec: str) -> None:
    """Raise ``ValueError`` when ``spec`` cannot name a reward source."""
    parse_reward_spec(spec)


def make_reward_function(spec: str, **kwargs: Any) -> RewardFunction:
    """Build the reward function a spec names (models load here, not earlier)."""
    kind, arg = parse_reward_spec(spec)
    module_name, name = REWARD_KINDS[kind][0].split(":")
    factory = getattr(importlib.import_module(module_name), name)
    return factory(arg, **kwargs) if REWARD_KINDS[kind][1] else factory(**kwargs)


def _kinds_help() -> str:
    return ", ".join(f"{k}:PATH" if needs else k for k, (_, needs) in REWARD_KINDS.items())
