"""Variant wrappers for the V-IRL envs.

Each wrapper changes one thing about the episodes it resets, by passing a
reset option to the env underneath; they compose, and the env itself is
never subclassed or mutated. The same choices are available as ``gym.make``
keyword arguments (``action_space=...``, ``city_style=...``).

``ChatMessages`` (from :mod:`gengym_core.wrappers`) adds the chat
conversation to ``info``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from gengym_core.wrappers import ChatMessages
from gym_virl.render.styles import resolve_styles

__all__ = ["ActionSpaceVariant", "ChatMessages", "CityStyleVariant"]


class _ResetOption(gym.Wrapper):
    """Sets one reset option on every reset (an explicit option passed to reset wins)."""

    option: str = ""

    def __init__(self, env: gym.Env, value: Any) -> None:
        super().__init__(env)
        self.value = value

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        merged = {self.option: self.value}
        merged.update(options or {})
        return self.env.reset(seed=seed, options=merged)


class ActionSpaceVariant(_ResetOption):
    """Choose the action space: the rule variant of V-IRL.

    ``"relative"`` asks for ``turn_direction(left|right|slightly left|slightly
    right)`` instead of the eight compass words (``"absolute"``, the training
    rule). Takes effect at the next reset.

    Example:
        >>> import gymnasium as gym, gym_virl
        >>> env = ActionSpaceVariant(gym.make("VIRL-L-v0"), "relative")
        >>> obs, info = env.reset(seed=0)
        >>> info["action_space"], "slightly left" in obs["text"]
        ('relative', True)
    """

    option = "action_space"

    def __init__(self, env: gym.Env, action_space: str = "relative") -> None:
        if action_space not in ("absolute", "relative"):
            raise ValueError(f"action_space must be 'absolute' or 'relative', got {action_space!r}")
        super().__init__(env, action_space)


class CityStyleVariant(_ResetOption):
    """Choose the look of the city: a visual variant.

    ``style`` is a style name, a group (``"train"``, ``"held_out"``,
    ``"all"``) or a list of names; with several, each episode draws one with
    the env's random generator. Takes effect at the next reset.

    Example:
        >>> import gymnasium as gym, gym_virl
        >>> env = CityStyleVariant(gym.make("VIRL-L-v0"), "held_out")
        >>> obs, info = env.reset(seed=0)
        >>> info["city_style"] in resolve_styles("held_out")
        True
    """

    option = "city_style"

    def __init__(self, env: gym.Env, style: str | tuple[str, ...] | list[str] = "held_out") -> None:
        value = resolve_styles(style)
        super().__init__(env, value)
