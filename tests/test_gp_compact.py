"""The compact GeneralPoints-L format: grammar, judging with the verifier's table, feedback, episodes."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import gym_generalpoints  # noqa: F401  (registers the ids)
from gengym_core.chat import message_text
from gym_generalpoints import compact
from gym_generalpoints.cards import parse_hand
from gym_generalpoints.verifier import GeneralPointsRewards, Hand, verify

ENV_ID = "GeneralPoints-L-compact-v0"
HAND = Hand.from_cards(parse_hand("KS 7H 7D AC"))
OOD_HAND = Hand.from_cards(parse_hand("QS 2H 10D AC"), face_card_values=(11, 12, 13))


def test_task_and_answer_text():
    assert compact.task_text(HAND) == "J10 Q10 K10 T24|K 7 7 A"
    assert compact.task_text(OOD_HAND) == "J11 Q12 K13 T24|Q 2 10 A"
    assert compact.answer_text([10, 3, 7, 1], "(10-7)*(1+7)") == "10 3 7 1:(10-7)*(1+7)"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10 3 7 1:(10-7)*(1+7)", ((10, 3, 7, 1), "(10-7)*(1+7)")),
        ("  10,3, 7 1 : (10-7)*(1+7) = 24 ", ((10, 3, 7, 1), "(10-7)*(1+7) = 24")),
        ("1:", ((1,), "")),
    ],
)
def test_parse_answer_accepts_the_grammar(text, parsed):
    assert compact.parse_answer(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["", "(10-7)*(1+7)", "ten 3 7 1:(10-7)*(1+7)", "-10 3 7 1:1", "10 3 7 1 (10-7)", "10.5 3:1", "1" * 5 + ":1", "x" * 400, None, 7],
)
def test_parse_answer_rejects_anything_else(text):
    with pytest.raises(compact.CompactAnswerError):
        compact.parse_answer(text)


@pytest.mark.parametrize(
    ("text", "verdict", "fb"),
    [
        ("10 7 7 1:(10-7)*(1+7)", "correct", "#OK"),
        ("10 7 7 1:(10-7)*(1+7) = 24", "correct", "#OK"),
        ("10 7 7 1:10+7+7+1", "wrong_value", "#=25"),
        ("10 7 7 1:10/7+7-1", "wrong_value", "#=52/7"),
        ("10 7 7 1:(10-7)*(1+7) = 25", "correct", "#OK"),  # "= N" ignored, as for JSON answers
        ("11 7 7 1:(11-7)*(1+7)", "wrong_numbers", "#N-11+10"),
        ("10 7 7 1:(10-7)*(7+7)", "wrong_numbers", "#N-7+1"),
        ("10 7 7:(10-7)*(1+7)", "correct", "#OK"),  # the list is not judged in text mode by default
        ("10 7 7 1:(K-7)*(1+7)", "illegal", "#X"),
        ("10 7 7 1:-(10-7)*(1+7)", "illegal", "#X"),
        ("no answer", "illegal", "#X"),
        ("\u00e9\x00" * 200, "illegal", "#X"),
    ],
)
def test_judge_uses_the_verifiers_stages_and_rewards(text, verdict, fb):
    judged = compact.judge(HAND, text)
    assert judged.verdict == verdict
    assert compact.feedback(HAND, judged) == fb
    assert judged.reward == GeneralPointsRewards().for_verdict(verdict)
    try:
        numbers, formula = compact.parse_answer(text)
    except compact.CompactAnswerError:
        return
    # The same number list and formula as a JSON answer get the same verdict.
    assert verify(HAND, json.dumps({"number": list(numbers), "formula": formula})).verdict == verdict


@pytest.mark.parametrize(
    ("text", "checks", "verdict", "fb"),
    [
        ("10 7 7 1:(10-7)*(1+7) = 25", {"check_stated_result": True}, "wrong_value", "#=24"),
        ("10 7 7:(10-7)*(1+7)", {"check_numbers": True}, "wrong_numbers", "#N+1"),
        ("11 7 7 1:(10-7)*(1+7)", {"check_numbers": True}, "wrong_numbers", "#N-11+10"),
    ],
)
def test_judge_takes_the_verifiers_checks(text, checks, verdict, fb):
    judged = compact.judge(HAND, text, **checks)
    assert (judged.verdict, compact.feedback(HAND, judged)) == (verdict, fb)
    env = gym.make(ENV_ID, **checks)
    env.reset(options={"cards": ["KS", "7H", "7D", "AC"]})
    assert env.step(text)[4]["feedback"] == fb


def test_judge_passes_custom_rewards():
    rewards = GeneralPointsRewards(correct=1.0, wrong_value=-0.5, prefix=0.25)
    assert compact.judge(HAND, "10 7 7 1:(10-7)*(1+7)", rewards=rewards).reward == 1.0
    assert compact.judge(HAND, "10 7 7 1:10+7+7+1", rewards=rewards).reward == -0.5


def test_echo_is_one_printable_line_and_cut():
    assert compact.echo("10 3\n7 1:1") == "10 3 7 1:1"
    long = compact.echo("1" * 100)
    assert len(long) == compact.ECHO_CHARS and long.endswith("~")
    assert compact.echo("\u00e9\u2660") == "e?"


def test_episode_observations_hold_the_whole_episode_and_feedback():
    env = gym.make(ENV_ID)
    core = env.unwrapped
    obs, info = env.reset(options={"cards": ["KS", "7H", "7D", "AC"]})
    assert obs["text"] == "J10 Q10 K10 T24|K 7 7 A"
    obs, reward, terminated, truncated, info = env.step("10 7 7 1:10+7+7+1")
    assert (reward, terminated, info["verdict"], info["feedback"]) == (-1.0, False, "wrong_value", "#=25")
    assert obs["text"] == "J10 Q10 K10 T24|K 7 7 A>10 7 7 1:10+7+7+1#=25"
    obs, reward, *_ = env.step("garbage\nanswer")
    assert obs["text"].endswith(">10 7 7 1:10+7+7+1#=25>garbage answer#X") and reward == -3.0
    messages = core.chat_messages()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [message_text(m) for m in messages[2::2]] == ["#=25", "#X"]
    obs, reward, terminated, truncated, _ = env.step(core.oracle_answer())
    assert reward == 5.0 and terminated and obs["text"].endswith("#OK")


def test_budget_ends_the_episode_with_its_own_feedback():
    env = gym.make(ENV_ID, verify_iter=2)
    env.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step("1:1")
        assert not (terminated or truncated)
    obs, reward, terminated, truncated, info = env.step("1:1")
    assert truncated and not terminated and reward == -1.0 and info["feedback"] == "#B"
    assert obs["text"].count(">") == 3 and obs["text"].endswith("#B")


@pytest.mark.parametrize("variant", ["id", "rule-ood"])
def test_oracle_solves_every_episode_of_both_variants(variant):
    env = gym.make(ENV_ID, **gym_generalpoints.variant_kwargs(ENV_ID, variant))
    for seed in range(40):
        env.reset(seed=seed)
        answer = env.unwrapped.oracle_answer()
        numbers, _ = compact.parse_answer(answer)
        _, reward, terminated, _, info = env.step(answer)
        assert reward == 5.0 and terminated, (seed, answer, info["feedback"])
        assert sorted(numbers) == sorted(info["values"])


def test_sampled_wrong_and_random_answers_are_compact_and_judged():
    env = gym.make(ENV_ID)
    core = env.unwrapped
    for seed in range(5):
        for verdict in ("wrong_value", "wrong_numbers", "illegal"):
            env.reset(seed=seed)
            answer = core.sample_wrong_answer(np.random.default_rng(seed), verdict)
            assert answer == core.sample_wrong_answer(np.random.default_rng(seed), verdict)
            assert ":" in answer and "{" not in answer
            _, reward, terminated, _, info = env.step(answer)
            assert info["verdict"] == verdict and reward < 0 and not terminated
    env.reset(seed=0)
    with pytest.raises(ValueError):
        core.sample_wrong_answer(np.random.default_rng(0), "wrong_cards")
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(60):
        env.reset()
        answer = core.sample_random_answer(rng)
        compact.parse_answer(answer)
        rewards.append(env.step(answer)[1])
    assert np.mean(np.array(rewards) == 5.0) < 0.1 and min(rewards) < 0


def test_compact_is_validated():
    with pytest.raises(ValueError, match="compact is a text format"):
        gym.make("GeneralPoints-VL-v0", compact=True, image_size=64)
    with pytest.raises(ValueError, match="compact answers name no cards"):
        gym.make(ENV_ID, check_cards=True)
    with pytest.raises(ValueError, match="compact must be true or false"):
        gym.make("GeneralPoints-L-v0", compact="yes")
