"""What every gengym environment offers beyond the Gymnasium API.

gengym envs are ordinary Gymnasium envs: the action is the model's raw text
(:class:`~gengym_core.spaces.FreeText`), the observation a ``Dict`` with a
``"text"`` prompt and, in the vision-language ("VL") envs, an ``"image"``
(``uint8`` array of shape ``(H, W, 3)``). On top of that, the unwrapped env of
every family implements :class:`GengymEnv`, which is what trainers, the
evaluator and the CLI rely on. Reach it through ``env.unwrapped`` or, on a
vector env, ``vec_env.call("oracle_answer")``.

Info keys that every family sets on every ``step``:

``verdict``
    The verifier's category for the answer, a short string from the family's
    ``VERDICTS`` (``"correct"`` always means the answer was accepted).
``feedback``
    What the verifier tells the model, in words.
``success``
    ``True`` once the whole episode is solved.
``attempt``
    1-based number of the verified answer within the current task step.

Vision-language envs also set ``recognition_correct`` (bool, or ``None`` when
the answer could not be read) on every step: whether the answer reported
what the image shows (the cards in GeneralPoints, the landmark in V-IRL).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gengym_core.chat import Message


@runtime_checkable
class GengymEnv(Protocol):
    """Methods the unwrapped env of every gengym family implements."""

    def oracle_answer(self) -> str:
        """An answer the verifier accepts in the current state, as raw text in
        the task's JSON format. Raises ``RuntimeError`` before ``reset`` or
        after the episode ended."""
        ...

    def chat_messages(self) -> list[Message]:
        """The conversation that the model should answer next (ending with a
        user turn), or, after the episode ended, the whole final conversation.
        Image placeholders refer, in order, to :meth:`chat_images`. A copy."""
        ...

    def chat_images(self) -> list[np.ndarray]:
        """The images the placeholders of :meth:`chat_messages` refer to."""
        ...

    def sample_wrong_answer(self, rng: np.random.Generator, verdict: str | None = None) -> str:
        """A well-formed answer that the verifier rejects now, with the given
        verdict category (a random applicable one when ``None``). Used for
        revision dialogues in SFT data and rejected answers of preference
        pairs. Raises ``ValueError`` for a category that cannot occur here."""
        ...

    def sample_random_answer(self, rng: np.random.Generator) -> str:
        """A well-formed answer drawn at random (the random baseline agent)."""
        ...

    def transcript(self) -> list[dict[str, Any]]:
        """Every verified turn of the episode so far, oldest first: dicts with
        at least ``prompt`` (str), ``answer`` (str, the raw model text),
        ``reward`` (float), ``verdict`` (str) and ``feedback`` (str).
        JSON-serialisable; images are not included."""
        ...


#: Largest reward magnitude a table may hold. Trainers keep rewards, returns
#: and squared value errors in float32 (largest about 3.4e38): a reward near
#: that range turns into inf and NaN there instead of an error here.
MAX_REWARD_MAGNITUDE = 1e6


def is_reward_value(value: Any) -> bool:
    """Whether ``value`` can be a reward: a number (not a bool), finite, within +-:data:`MAX_REWARD_MAGNITUDE`."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and abs(value) <= MAX_REWARD_MAGNITUDE
    )


def check_reward_values(rewards: Any, names: Iterable[str], optional: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` unless every field ``names`` of a family's reward table
    is a finite number within +-:data:`MAX_REWARD_MAGNITUDE` (``optional`` ones
    may also be ``None``).

    Reward tables come from users' configs; a string, a bool, a NaN or a
    value that overflows a trainer's float32 would otherwise surface only at
    the first answer that earns it.
    """
    optional = set(optional)
    for name in names:
        value = getattr(rewards, name)
        if name in optional and value is None:
            continue
        if not is_reward_value(value):
            raise ValueError(
                f"{type(rewards).__name__}.{name} must be a finite number"
                f"{' or None' if name in optional else ''}, at most {MAX_REWARD_MAGNITUDE:g} in size; got {value!r}"
            )
