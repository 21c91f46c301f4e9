"""Answers that are wrong on purpose, and random answers.

:func:`wrong_answer` builds a well-formed JSON answer that the verifier
rejects with a chosen verdict -- the first turn of an SFT revision dialogue
or the rejected side of a preference pair -- and checks it with
:func:`~gym_virl.verifier.judge_answer` before returning it.
:func:`random_answer` is the random baseline agent: it knows the answer
format and the action space, nothing else.

All randomness comes from the generator passed in, never from an env's
``np_random``, so sampling answers does not change the episodes an env deals.

Example:
    >>> import numpy as np
    >>> from gym_virl.routes import route_for
    >>> from gym_virl.verifier import judge_answer
    >>> route = route_for(0, "train", 0)
    >>> point = route.rail[0]
    >>> text = wrong_answer(route, point, "absolute", np.random.default_rng(0), "wrong_action")
    >>> judge_answer(text, point.gold_action(), point.observed.at_intersection).verdict
    'wrong_action'
"""

from __future__ import annotations

import json

import numpy as np

from gym_virl.geometry import RELATIVE_SIDES
from gym_virl.prompts import intersection_text, observation_text
from gym_virl.routes import Observed, RailPoint, Route
from gym_virl.verifier import TURN_WORDS, judge_answer

#: Verdicts an answer can earn apart from ``correct`` (``budget`` is the env's).
WRONG_VERDICTS: tuple[str, ...] = ("wrong_action", "wrong_intersection", "illegal")

_ILLEGAL_ACTIONS = ("jump()", "turn_direction(up)", "go_back()", "turn_direction()", "forward(10)")


def all_actions(action_space: str) -> list[str]:
    """Every action of ``action_space`` in canonical form.

    Example:
        >>> all_actions("relative")[:3]
        ['forward()', 'stop()', 'turn_direction(left)']
    """
    return ["forward()", "stop()"] + [f"turn_direction({w})" for w in TURN_WORDS[action_space]]


def _answer(observation: str, instruction: str, action: str) -> str:
    return json.dumps(
        {"current observation": observation, "current instruction": instruction, "action": action}
    )


def _instruction(route: Route, point: RailPoint) -> str:
    return f"{point.instruction + 1}. {route.instructions[point.instruction]}"


def wrong_answer(route: Route, point: RailPoint, action_space: str, rng: np.random.Generator,
                 verdict: str | None = None) -> str:
    """A well-formed answer the verifier rejects at ``point`` with ``verdict``.

    ``verdict`` is ``"wrong_action"`` (true observation, another legal
    action), ``"wrong_intersection"`` (another legal action with the
    opposite intersection claim: with the right action the claim is not
    judged) or ``"illegal"`` (true observation, an action outside the action
    space); ``None`` picks one at random.

    Raises:
        ValueError: ``verdict`` is not one of :data:`WRONG_VERDICTS`.
    """
    if verdict is None:
        verdict = WRONG_VERDICTS[int(rng.integers(len(WRONG_VERDICTS)))]
    if verdict not in WRONG_VERDICTS:
        raise ValueError(f"cannot sample a {verdict!r} answer; choose from {WRONG_VERDICTS}")
    gold = point.gold_action(action_space)
    truth = observation_text(point.observed)
    instruction = _instruction(route, point)
    others = [a for a in all_actions(action_space) if a != gold]
    if verdict == "wrong_action":
        text = _answer(truth, instruction, others[int(rng.integers(len(others)))])
    elif verdict == "wrong_intersection":
        flipped = Observed(point.observed.landmarks, not point.observed.at_intersection,
                           point.observed.ways or 4)
        text = _answer(observation_text(flipped), instruction, others[int(rng.integers(len(others)))])
    else:
        options = list(_ILLEGAL_ACTIONS)
        if action_space == "relative":
            options.append("turn_direction(north)")  # right word, wrong rule
        else:
            options.append("turn_direction(left)")
        text = _answer(truth, instruction, options[int(rng.integers(len(options)))])
    judged = judge_answer(text, gold, point.observed.at_intersection, action_space)
    if judged.verdict != verdict:  # pragma: no cover - a bug in the construction above
        raise AssertionError(f"sampled a {judged.verdict!r} answer while asked for {verdict!r}")
    return text


def random_answer(route: Route, action_space: str, rng: np.random.Generator) -> str:
    """A well-formed answer drawn at random (the random baseline agent).

    A random landmark claim (or none), a random intersection claim, a random
    instruction sentence of the route and a random action of the space.
    """
    names = [n for n in route.landmarks if n]
    if names and rng.random() < 0.5:
        side = RELATIVE_SIDES[int(rng.integers(len(RELATIVE_SIDES)))]
        landmarks: tuple[tuple[str, str], ...] = ((names[int(rng.integers(len(names)))], side),)
    else:
        landmarks = ()
    at = bool(rng.random() < 0.5)
    obs = Observed(landmarks, at, 4 if at else 0)
    k = int(rng.integers(len(route.instructions)))
    actions = all_actions(action_space)
    observation = f"{observation_text(obs)}" if landmarks else f"No landmark nearby. {intersection_text(obs)}"
    return _answer(observation, f"{k + 1}. {route.instructions[k]}", actions[int(rng.integers(len(actions)))])
