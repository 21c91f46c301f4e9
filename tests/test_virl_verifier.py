"""gym_virl.verifier: tolerant reading, strict judging, never a crash."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from gym_virl.routes import route_for
from gym_virl.sampling import WRONG_VERDICTS, all_actions, random_answer, wrong_answer
from gym_virl.verifier import (
    VERDICTS,
    ActionFormatError,
    VirlRewards,
    claims_intersection,
    judge_answer,
    parse_action,
    recognition_correct,
)


def _answer(action="forward()", observation="No landmark nearby. You are not at an intersection.",
            instruction="2. Move forward."):
    return json.dumps(
        {"current observation": observation, "current instruction": instruction, "action": action}
    )


@pytest.mark.parametrize(
    "text, space, expected",
    [
        ("forward()", "absolute", "forward()"),
        ("  STOP( ) ", "absolute", "stop()"),
        ("turn_direction( North )", "absolute", "turn_direction(north)"),
        ("Turn_Direction('south west')", "absolute", "turn_direction(southwest)"),
        ("turn_direction(slightlyright)", "relative", "turn_direction(slightly right)"),
        ("turn_direction(southwest).", "absolute", "turn_direction(southwest)"),
        ('turn_direction("slightly  right")', "relative", "turn_direction(slightly right)"),
        ("turn_direction(slightly_left)", "relative", "turn_direction(slightly left)"),
        ("turn_direction(left)", "absolute", None),
        ("turn_direction(north)", "relative", None),
        ("forward(3)", "absolute", None),
        ("go forward", "absolute", None),
        ("", "absolute", None),
        ("turn_direction(" + "x" * 500 + ")", "absolute", None),
    ],
)
def test_parse_action(text, space, expected):
    if expected is None:
        with pytest.raises(ActionFormatError):
            parse_action(text, space)
    else:
        assert parse_action(text, space) == expected


@pytest.mark.parametrize(
    "text, claim",
    [
        ("You are at a 4-way intersection.", True),
        ("Harbor Bank is on your left. There are 3-way intersections.", True),
        ("You are not at an intersection.", False),
        ("No intersection here.", False),
        ("I am away from any junction", False),
        ("No landmark nearby.", False),
        ("No landmark nearby; I am at an intersection", True),
        ("Not sure about the bank, but this is a crossroad", True),
        ("", False),
    ],
)
def test_claims_intersection(text, claim):
    assert claims_intersection(text) is claim


def test_judging_order_and_verdicts():
    assert judge_answer(_answer(), "forward()", False).verdict == "correct"
    # The paper rewards the right action (+1, the agent moves on) whatever the
    # observation says, as the reference does.
    assert judge_answer(_answer(), "forward()", True).verdict == "correct"
    at = _answer("turn_direction(east)", "Teal Cafe is on your left. You are at a 4-way intersection.")
    assert judge_answer(at, "turn_direction(east)", True).verdict == "correct"
    assert judge_answer(at, "turn_direction(east)", False).verdict == "correct"
    # With a wrong action, a false claim costs -1.5: it is judged against the
    # intersection flag (reference defect 7 checked the landmark text instead).
    assert judge_answer(at, "turn_direction(west)", True).verdict == "wrong_action"
    assert judge_answer(at, "turn_direction(west)", False).verdict == "wrong_intersection"
    assert judge_answer(_answer("stop()"), "forward()", True).verdict == "wrong_intersection"
    j = judge_answer(_answer("stop()"), "forward()", False)
    assert j.verdict == "wrong_action" and "stop()" in j.feedback
    # Tolerant parsing: fences, single quotes, trailing commas, prose around it.
    messy = ("Let me think.\n```json\n{'current observation': 'No landmark nearby, not at an "
             "intersection', 'current instruction': '3.', 'action': 'Forward()',}\n```")
    assert judge_answer(messy, "forward()", False).verdict == "correct"
    # Only the action is required, as in the reference; a missing observation
    # claims nothing, so it is wrong at an intersection.
    assert judge_answer('{"action": "forward()"}', "forward()", True).verdict == "correct"
    assert judge_answer('{"action": "stop()"}', "forward()", False).verdict == "wrong_action"
    assert judge_answer('{"action": "stop()"}', "forward()", True).verdict == "wrong_intersection"
    assert judge_answer('{"current observation": "x"}', "forward()", False).verdict == "illegal"
    no_obs = json.dumps({"current instruction": "x", "action": "forward()", "current observation": 3})
    assert judge_answer(no_obs, "forward()", False).verdict == "illegal"
    bad = judge_answer(_answer("turn_direction(up)"), "forward()", False)
    assert bad.verdict == "illegal" and "north" in bad.feedback
    # An action outside the space with a false claim: the claim's -1.5, as for any wrong action.
    assert judge_answer(_answer("jump()"), "forward()", True).verdict == "wrong_intersection"
    assert judge_answer(_answer("turn_direction(left)"), "turn_direction(left)", False,
                        "relative").verdict == "correct"
    assert set(VERDICTS) == {"correct", "wrong_action", "wrong_intersection", "illegal", "budget"}


ADVERSARIAL = [
    "",
    "{",
    "}" * 10_000,
    "{" * 10_000,
    "[" * 5000 + "]" * 5000,
    '{"action": ' * 3000,
    "\x00\x01\x02 {\"action\": \"forward()\"}",
    "x" * 2_000_000,
    '{"current observation": "\\ud800", "current instruction": "", "action": "forward()"}',
    '{"current observation": NaN, "current instruction": "", "action": "forward()"}',
    '{"current observation": "a", "current instruction": "b", "action": ["forward()"]}',
    '{"current observation": "a", "current instruction": "b", "action": {"x": 1}}',
    '{"current observation": "a", "current instruction": "b", "action": null}',
    '{"current observation": "a", "current instruction": "b", "action": "' + "(" * 300 + '"}',
    "\u202e{\u0000}\ufeff",
    '{"a": 1e999999}',
    "{'action': 'turn_direction(" + "north" * 10000 + ")'}",
]


@pytest.mark.parametrize("space", ["absolute", "relative"])
def test_adversarial_answers_never_crash(space):
    rng = np.random.default_rng(7)
    texts = list(ADVERSARIAL)
    for _ in range(300):
        n = int(rng.integers(0, 400))
        texts.append("".join(chr(int(c)) for c in rng.integers(0, 0x3000, size=n)))
        texts.append("".join(rng.choice(list('{}[]":,\' actionforwd()_turn'), size=n)))
    for text in texts:
        j = judge_answer(text, "forward()", bool(rng.integers(2)), space)
        assert j.verdict in VERDICTS and isinstance(j.feedback, str)
    for obj in (None, 3, b"forward()", {"action": "forward()"}, ["x"]):
        assert judge_answer(obj, "forward()", False).verdict == "illegal"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "observation, at_intersection",
    [
        ("not at an intersection. " * 2700, False),
        ("no intersection." * 4000, False),
        ("intersection, but " * 3600, True),
        ("x" * 60_000 + " not near an intersection", False),
    ],
    ids=["negated", "short-clauses", "breaks", "long-prefix"],
)
def test_long_observations_are_judged_in_linear_time(observation, at_intersection):
    # Thousands of mentions in a 64 KB answer: each looks only at its own clause.
    text = _answer(observation=observation)
    start = time.perf_counter()
    for _ in range(3):
        assert judge_answer(text, "forward()", at_intersection).verdict == "correct"
    assert time.perf_counter() - start < 0.5


def test_sampled_wrong_and_random_answers():
    rng = np.random.default_rng(0)
    for index in range(20):
        route = route_for(0, "train", index)
        for point in route.rail:
            for space in ("absolute", "relative"):
                gold = point.gold_action(space)
                for verdict in WRONG_VERDICTS:
                    text = wrong_answer(route, point, space, rng, verdict)
                    assert judge_answer(text, gold, point.observed.at_intersection, space).verdict == verdict
                text = random_answer(route, space, rng)
                assert judge_answer(text, gold, point.observed.at_intersection, space).verdict != "illegal"
    with pytest.raises(ValueError):
        wrong_answer(route, route.rail[0], "absolute", rng, "budget")
    assert len(all_actions("absolute")) == 10 and len(all_actions("relative")) == 6


def test_recognition():
    names = ("Teal Cafe", "Harbor Bank", "Olive Gems")
    assert recognition_correct("teal cafe is on your left front", ("Teal Cafe",), names) is True
    assert recognition_correct("Teal Cafe and Harbor Bank", ("Teal Cafe",), names) is False
    assert recognition_correct("No landmark nearby.", (), names) is True
    assert recognition_correct(None, (), names) is None


def test_rewards_refuse_an_unknown_verdict():
    rewards = VirlRewards()
    assert [rewards.for_verdict(v) for v in VERDICTS] == [float(getattr(rewards, v)) for v in VERDICTS]
    with pytest.raises(ValueError, match="unknown verdict 'for_verdict'"):
        rewards.for_verdict("for_verdict")
