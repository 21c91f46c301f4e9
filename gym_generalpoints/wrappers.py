"""Composable wrappers that change a GeneralPoints env's rules, looks or outputs.

:class:`RuleVariant` and :class:`VisualVariant` change the env's frozen
configuration through ``env.unwrapped.reconfigure``: the change takes effect
at the next ``reset`` (an episode in progress keeps its rules), persists in
the env, and composes -- stacking wrappers applies each change in turn, so
the outermost wins when two set the same field. The same changes are
``gym.make`` keyword arguments; wrappers exist so that an evaluator can vary
one env without remaking it.

:class:`ChatMessages` (from :mod:`gengym_core.wrappers`) puts the episode's
chat conversation in ``info["messages"]``:

    >>> import gymnasium as gym
    >>> import gym_generalpoints
    >>> env = ChatMessages(gym.make("GeneralPoints-VL-v0", image_size=64))
    >>> obs, info = env.reset(seed=1)
    >>> [m["role"] for m in info["messages"]], info["messages"][0]["content"][0]
    (['user'], {'type': 'image'})
    >>> obs, reward, terminated, truncated, info = env.step("not an answer")
    >>> [m["role"] for m in info["messages"]], reward
    (['user', 'assistant', 'user'], -3.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from gengym_core.wrappers import ChatMessages

__all__ = ["ChatMessages", "RuleVariant", "VisualVariant"]


def _reconfigure(env: gym.Env, changes: dict[str, Any]) -> None:
    from gym_generalpoints.env import GeneralPointsEnv

    core = env.unwrapped
    if not isinstance(core, GeneralPointsEnv):
        raise TypeError(f"this wrapper needs a GeneralPoints env, got {type(core).__name__}")
    core.reconfigure(**changes)


class RuleVariant(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Change the game's rules: face-card values, target, dealing, hand size.

    Arguments left as ``None`` keep the env's current setting. The prompt
    states the new rule and the verifier judges by it.

    Args:
        env: A GeneralPoints env (possibly wrapped).
        face_card_values: What J, Q and K count, e.g. ``(11, 12, 13)``.
        target: The number to make.
        require_face_card: Deal only hands with a face card.
        hand_size: Cards per hand.

    Example:
        >>> import gymnasium as gym
        >>> import gym_generalpoints
        >>> env = RuleVariant(gym.make("GeneralPoints-L-v0"), face_card_values=(11, 12, 13),
        ...                   require_face_card=True)
        >>> obs, info = env.reset(seed=0)
        >>> "J counts 11, Q counts 12 and K counts 13" in obs["text"]
        True
        >>> any(rank in "JQK" for rank in info["cards"])
        True
        >>> env = RuleVariant(env, target=10, hand_size=3)  # composes with the first
        >>> obs, info = env.reset(seed=0)
        >>> info["target"], len(info["cards"]), env.unwrapped.config.face_card_values
        (10, 3, (11, 12, 13))
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        face_card_values: Sequence[int] | None = None,
        target: int | None = None,
        require_face_card: bool | None = None,
        hand_size: int | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            face_card_values=face_card_values,
            target=target,
            require_face_card=require_face_card,
            hand_size=hand_size,
        )
        gym.Wrapper.__init__(self, env)
        self.changes: dict[str, Any] = {
            name: value
            for name, value in {
                "face_card_values": face_card_values,  # the config turns lists into tuples
                "target": target,
                "require_face_card": require_face_card,
                "hand_size": hand_size,
            }.items()
            if value is not None
        }
        _reconfigure(env, self.changes)


class VisualVariant(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Change how the table looks: suit colours dealt, card style, felt colour, jitter.

    Arguments left as ``None`` keep the env's current setting. ``suit_colors``
    also restricts which suits are dealt in text mode, where it only changes
    how often a rank can repeat.

    Args:
        env: A GeneralPoints env (possibly wrapped).
        suit_colors: ``"all"``, ``"black"`` or ``"red"``.
        card_style: ``"classic"`` or ``"minimal"``.
        table_color: A name (``green``, ``blue``, ``burgundy``, ``slate``) or
            ``#rrggbb``.
        position_jitter: 0 (fixed grid) to 1 (largest random shifts).

    Example:
        >>> import gymnasium as gym
        >>> import gym_generalpoints
        >>> env = VisualVariant(gym.make("GeneralPoints-VL-v0", image_size=96), suit_colors="red",
        ...                     table_color="#24496e")
        >>> obs, info = env.reset(seed=0)
        >>> set(info["suits"]) <= {"H", "D"}, tuple(int(c) for c in obs["image"][0, 0])
        (True, (36, 73, 110))
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        suit_colors: str | None = None,
        card_style: str | None = None,
        table_color: str | None = None,
        position_jitter: float | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            suit_colors=suit_colors,
            card_style=card_style,
            table_color=table_color,
            position_jitter=position_jitter,
        )
        gym.Wrapper.__init__(self, env)
        self.changes: dict[str, Any] = {
            name: value
            for name, value in {
                "suit_colors": suit_colors,
                "card_style": card_style,
                "table_color": table_color,
                "position_jitter": position_jitter,
            }.items()
            if value is not None
        }
        _reconfigure(env, self.changes)
