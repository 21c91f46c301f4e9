"""GeneralPoints: make 24 from playing cards, as Gymnasium envs for LLMs and VLMs.

The arithmetic card game of "SFT Memorizes, RL Generalizes" (Chu et al.,
2025) as env ids: ``GeneralPoints-L-v0`` lists the cards in the prompt,
``GeneralPoints-VL-v0`` shows them only in a rendered table image, and
``GeneralPoints-L-compact-v0`` is the text game in the one-line format of
:mod:`~gym_generalpoints.compact` (for small models trained from scratch).

Importing the package registers both ids. Without importing it first, use Gymnasium's ``module:id`` syntax,
``gym.make("gym_generalpoints:GeneralPoints-L-v0")``, which imports the
package and then makes the env. (Gymnasium 1.x has no plugin entry-point
group that would register third-party ids on ``import gymnasium``.)

The rules live in small pure modules -- :mod:`~gym_generalpoints.cards`,
:mod:`~gym_generalpoints.solver`, :mod:`~gym_generalpoints.dealing`,
:mod:`~gym_generalpoints.verifier`, :mod:`~gym_generalpoints.rendering`,
:mod:`~gym_generalpoints.prompts` -- and :class:`GeneralPointsEnv` is a thin
shell around them. Nothing here imports torch or any training library.

Example:
    >>> import gymnasium as gym
    >>> import gym_generalpoints
    >>> env = gym.make("GeneralPoints-L-v0")
    >>> obs, info = env.reset(options={"cards": ["AS", "7H", "KD", "2C"]})
    >>> info["values"], info["num_solutions"]
    ((1, 7, 10, 2), 6)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    >>> reward, terminated, info["verdict"]
    (5.0, True, 'correct')
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

# A chat session of GeneralPoints (gengym_core.session) is the env's own chat_messages():
# the task, then each answer and the verifier's feedback on it, already a growing
# conversation; so the family's session rule is the protocol's.
from gengym_core.session import protocol_conversation as session_conversation
from gym_generalpoints.config import GeneralPointsConfig
from gym_generalpoints.env import GeneralPointsEnv
from gym_generalpoints.verifier import VERDICTS, GeneralPointsRewards

__all__ = [
    "ENV_IDS",
    "VARIANTS",
    "VERDICTS",
    "GeneralPointsConfig",
    "GeneralPointsEnv",
    "GeneralPointsRewards",
    "session_conversation",
    "variant_kwargs",
]

#: The registered ids and the ``gym.make`` kwargs they stand for.
ENV_IDS: dict[str, dict[str, object]] = {
    "GeneralPoints-L-v0": {"mode": "L"},
    "GeneralPoints-VL-v0": {"mode": "VL"},
    "GeneralPoints-L-compact-v0": {"mode": "L", "compact": True},
}

_RULE_OOD = {"face_card_values": (11, 12, 13), "require_face_card": True}

#: The paper's evaluation variants, per env id: variant name -> ``gym.make`` kwargs.
#:
#: * ``id``: the training distribution. Text (both formats): all suits, J/Q/K count 10.
#:   Image: black suits only (the paper trains GP-VL on spades and clubs).
#: * ``rule-ood``: J, Q, K count 11, 12, 13 and every hand holds a face
#:   card, so the changed rule matters; looks as in ``id``.
#: * ``visual-ood`` (image only): red suits (hearts, diamonds), training rule.
#:   Text observations have no visual variant, so the text id has none.
VARIANTS: dict[str, dict[str, dict[str, object]]] = {
    "GeneralPoints-L-v0": {"id": {}, "rule-ood": dict(_RULE_OOD)},
    "GeneralPoints-L-compact-v0": {"id": {}, "rule-ood": dict(_RULE_OOD)},
    "GeneralPoints-VL-v0": {
        "id": {"suit_colors": "black"},
        "rule-ood": {**_RULE_OOD, "suit_colors": "black"},
        "visual-ood": {"suit_colors": "red"},
    },
}


def variant_kwargs(env_id: str, variant: str) -> dict[str, object]:
    """The ``gym.make`` kwargs of an evaluation variant of an env id.

    Raises:
        KeyError: Unknown id, or a variant the id does not have; the message
            lists what exists.

    Example:
        >>> variant_kwargs("GeneralPoints-VL-v0", "visual-ood")
        {'suit_colors': 'red'}
    """
    if env_id not in VARIANTS:
        raise KeyError(f"unknown GeneralPoints id {env_id!r}; known: {', '.join(VARIANTS)}")
    if variant not in VARIANTS[env_id]:
        raise KeyError(
            f"{env_id} has no variant {variant!r}; it has: {', '.join(VARIANTS[env_id])}"
        )
    return dict(VARIANTS[env_id][variant])


for _env_id, _kwargs in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="gym_generalpoints.env:GeneralPointsEnv", kwargs=_kwargs)
