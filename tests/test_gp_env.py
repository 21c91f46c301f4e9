"""GeneralPoints envs by contract: checker, determinism, pickling, rendering, vector envs, episodes."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gym_generalpoints
from gengym_core.chat import count_images, message_text, to_text_only
from gengym_core.protocol import GengymEnv
from gengym_core.registry import gengym_env_ids
from gym_generalpoints import VARIANTS, GeneralPointsConfig, GeneralPointsEnv, variant_kwargs
from gym_generalpoints.solver import solve
from gym_generalpoints.wrappers import ChatMessages, RuleVariant, VisualVariant

GP_IDS = sorted(env_id for env_id in gengym_env_ids() if env_id.startswith("GeneralPoints"))
#: The ids whose answers are JSON objects (the compact format has tests of its own).
JSON_IDS = [env_id for env_id in GP_IDS if "compact" not in env_id]
SMALL = {"GeneralPoints-L-v0": {}, "GeneralPoints-VL-v0": {"image_size": 160}, "GeneralPoints-L-compact-v0": {}}
WRONG = '{"cards": ["A"], "number": [1], "formula": "1+1"}'


def test_both_ids_are_registered_as_gengym_envs():
    assert GP_IDS == ["GeneralPoints-L-compact-v0", "GeneralPoints-L-v0", "GeneralPoints-VL-v0"]


@pytest.mark.parametrize("env_id", GP_IDS)
def test_env_checker_passes_with_warnings_as_errors(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        check_env(env.unwrapped)
        env.close()


@pytest.mark.parametrize("env_id", GP_IDS)
def test_spaces_are_exact(env_id):
    env = gym.make(env_id)
    space = env.observation_space
    assert set(space.spaces) == ({"text", "image"} if "VL" in env_id else {"text"})
    if "VL" in env_id:
        assert space["image"].shape == (1200, 1200, 3) and space["image"].dtype == np.uint8
    assert env.action_space.contains("any text at all \u2603") and not env.action_space.contains(3)
    obs, _ = env.reset(seed=0)
    assert obs in space


def rollout(env: gym.Env, seed: int, rng: random.Random, episodes: int = 4) -> list:
    """Episodes mixing wrong answers and the oracle; everything observable, in order."""
    record = []
    obs, info = env.reset(seed=seed)
    record.append((obs, info))
    for _ in range(episodes):
        while True:
            action = (
                env.unwrapped.oracle_answer()
                if rng.random() < 0.3
                else rng.choice([WRONG, "junk", ""])
            )
            obs, reward, terminated, truncated, info = env.step(action)
            record.append((obs, reward, terminated, truncated, info))
            if terminated or truncated:
                break
        record.append(env.reset())
    return record


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and np.array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("env_id", GP_IDS)
def test_same_seed_same_rollout_and_different_seed_different_hands(env_id):
    kwargs = {**SMALL[env_id], "position_jitter": 1.0}
    first = rollout(gym.make(env_id, **kwargs), 123, random.Random(0))
    second = rollout(gym.make(env_id, **kwargs), 123, random.Random(0))
    assert_same(first, second)
    other = gym.make(env_id, **kwargs)
    hands = {other.reset(seed=s)[1]["hand"] for s in range(20)}
    assert len(hands) == 20


def test_global_random_state_is_never_touched():
    py_state, np_state = random.getstate(), np.random.get_state()
    env = gym.make("GeneralPoints-VL-v0", image_size=96, position_jitter=0.5)
    rollout(env, 5, random.Random(1))
    assert random.getstate() == py_state
    assert_same(np.random.get_state(), np_state)


@pytest.mark.parametrize("env_id", GP_IDS)
def test_pickle_round_trip_mid_episode(env_id):
    env = gym.make(env_id, **SMALL[env_id])
    env.reset(seed=9)
    env.step(WRONG)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.transcript() == env.unwrapped.transcript()
    tail_a = rollout_after(env)
    tail_b = rollout_after(clone)
    assert_same(tail_a, tail_b)


def rollout_after(env):
    out = [env.step("still wrong"), env.step(env.unwrapped.oracle_answer())]
    out.append(env.reset())  # the np_random state travelled too
    return out


@pytest.mark.parametrize("env_id", GP_IDS)
def test_every_render_mode(env_id):
    for mode in GeneralPointsEnv.metadata["render_modes"]:
        env = gym.make(env_id, render_mode=mode, image_size=(320, 200))
        before = env.unwrapped.render()  # gym.make enforces reset first; the env itself allows it
        env.reset(options={"cards": "AS 7H KD 2C"})
        frame = env.render()
        if mode == "rgb_array":
            assert before.shape == frame.shape == (200, 320, 3) and frame.dtype == np.uint8
            assert not np.array_equal(before, frame)  # cards were drawn
            frame[:] = 0  # a copy: the env's own image is untouched
            assert env.render().any()
        else:
            assert "AS 7H KD 2C" in frame and "6 distinct solutions" in frame
            verdict = env.step(WRONG)[4]["verdict"]
            assert f"Last verdict: {verdict} (" in env.render()
    env = gym.make(env_id, **SMALL[env_id])
    env.reset(seed=0)
    assert env.render() is None


@pytest.mark.parametrize("env_id", GP_IDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(env_id, mode):
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, **SMALL[env_id])
    obs, info = vec.reset(seed=[1, 2])
    assert obs in vec.observation_space
    if "VL" in env_id:
        assert obs["image"].shape == (2, 160, 160, 3)
    answers = vec.call("oracle_answer")
    obs, reward, terminated, truncated, info = vec.step(list(answers))
    assert reward.tolist() == [5.0, 5.0] and terminated.all() and not truncated.any()
    assert list(info["verdict"]) == ["correct", "correct"]
    # Default NEXT_STEP autoreset: the next call resets (its actions are ignored).
    obs, reward, terminated, *_ = vec.step(["ignored", "ignored"])
    assert reward.tolist() == [0.0, 0.0] and not terminated.any()
    assert vec.step(list(vec.call("oracle_answer")))[1].tolist() == [5.0, 5.0]
    vec.close()
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    vec = gym.make_vec(env_id, 2, vectorization_mode=mode, vector_kwargs=same_step, **SMALL[env_id])
    vec.reset(seed=[1, 2])
    for _ in range(3):
        assert vec.step(list(vec.call("oracle_answer")))[1].tolist() == [5.0, 5.0]
    vec.close()


def test_fixed_hands_from_options():
    env = gym.make("GeneralPoints-L-v0")
    obs, info = env.reset(seed=0, options={"cards": ["AS", "7H", "KD", "2C"]})
    assert info["hand"] == ("AS", "7H", "KD", "2C") and info["values"] == (1, 7, 10, 2)
    assert "Cards: A, 7, K, 2" in obs["text"]
    assert info["num_solutions"] == len(solve((1, 7, 10, 2))) == 6
    for cards, message in [
        (["AS", "7H", "KD", "ZZ"], "not a card code"),
        (["AS", "7H", "KD", "AS"], "appears twice"),
        (["AS", "7H", "KD"], "expected 4 cards"),
        (["AS", "AH", "AD", "AC"], "cannot make 24"),
        (None, "a hand must be a list of card codes"),
        (42, "a hand must be a list of card codes"),
        ({"AS": 1, "7H": 1, "KD": 1, "2C": 1}, "a hand must be a list of card codes"),
        ([1, 7, 10, 2], "a card code must be a string"),
    ]:
        with pytest.raises(ValueError, match=message):
            env.reset(options={"cards": cards})
    with pytest.raises(ValueError, match="only option"):
        env.reset(options={"hand": ["AS"]})
    with pytest.raises(ValueError, match="reset options must be a dict"):
        env.reset(options=["cards"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(WRONG)  # the failed reset closed the previous episode
    # The rule decides solvability: 1, 6, 11, 13 only works when J, Q, K count 11, 12, 13.
    with pytest.raises(ValueError, match="cannot make 24"):
        env.reset(options={"cards": "AS 6H JD KC"})
    env = gym.make("GeneralPoints-L-v0", face_card_values=[11, 12, 13])
    _, info = env.reset(options={"cards": "AS 6H JD KC"})
    assert info["values"] == (1, 6, 11, 13)


def test_sequential_revision_and_budget():
    env = gym.make("GeneralPoints-L-v0", verify_iter=3)
    obs, info = env.reset(seed=4)
    task = obs["text"]
    assert info["attempt"] == 0 and not info["success"]
    rewards = []
    for attempt in (1, 2, 3):
        obs, reward, terminated, truncated, info = env.step(f"attempt {attempt} {WRONG}")
        rewards.append(reward)
        assert not terminated and not truncated and info["attempt"] == attempt
        assert obs["text"].startswith(task)
        assert f"attempt {attempt} {WRONG}" in obs["text"] and info["feedback"] in obs["text"]
    assert "No verified attempts are left" in obs["text"]
    oracle = env.unwrapped.oracle_answer()
    obs, reward, terminated, truncated, info = env.step(oracle)  # past the budget: not judged
    assert (reward, terminated, truncated, info["verdict"], info["attempt"]) == (
        -1.0,
        False,
        True,
        "budget",
        4,
    )
    assert rewards == [-2.0, -2.0, -2.0]
    with pytest.raises(RuntimeError, match="over"):
        env.step(oracle)
    with pytest.raises(RuntimeError):
        env.unwrapped.oracle_answer()


def test_success_terminates_after_revisions():
    env = gym.make("GeneralPoints-VL-v0", image_size=96)
    obs, info = env.reset(seed=8)
    env.step("junk")
    env.step(WRONG)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    assert (reward, terminated, truncated, info["success"], info["attempt"]) == (
        5.0,
        True,
        False,
        True,
        3,
    )
    assert info["verdict"] == "correct" and info["recognition_correct"] is True
    assert [t["verdict"] for t in env.unwrapped.transcript()] == [
        "illegal",
        "wrong_cards",
        "correct",
    ]


def test_judging_follows_the_reference_unless_told_otherwise():
    hand = {"cards": ["AS", "7H", "KD", "2C"]}

    def reward(env_id, answer, **kwargs):
        env = gym.make(env_id, image_size=96, **kwargs)
        env.reset(seed=0, options=hand)
        return env.step(json.dumps(answer))[1]

    right = {"cards": ["A", "7", "K", "2"], "number": [1, 7, 10, 2], "formula": "7*2+10*1"}
    # Text mode: the number field is not judged (the reference never reads it there) ...
    assert reward("GeneralPoints-L-v0", right | {"number": [1, 7, 13, 2]}) == 5.0
    assert reward("GeneralPoints-L-v0", right | {"number": [1, 7, 13, 2]}, check_numbers=True) == -2.0
    # ... image mode judges it (the reference meant to: defect 4) unless told not to.
    assert reward("GeneralPoints-VL-v0", right | {"number": [1, 7, 13, 2]}) == -2.0
    assert reward("GeneralPoints-VL-v0", right | {"number": [1, 7, 13, 2]}, check_numbers=False) == 5.0
    # What follows "=" is ignored, as in the reference, unless check_stated_result.
    assert reward("GeneralPoints-L-v0", right | {"formula": "7*2+10*1 = 25"}) == 5.0
    assert reward("GeneralPoints-L-v0", right | {"formula": "7*2+10*1 = 25"}, check_stated_result=True) == -1.0
    # Image mode: misread cards cost -1.5 whatever the formula, as in the reference.
    assert reward("GeneralPoints-VL-v0", right | {"cards": ["A", "7", "Q", "3"], "formula": "7*2+("}) == -1.5
    for bad in ({"check_numbers": "yes"}, {"check_stated_result": None}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            gym.make("GeneralPoints-L-v0", **bad)


@pytest.mark.parametrize("env_id", JSON_IDS)
def test_chat_messages_transcript_and_images(env_id):
    image = "VL" in env_id
    env = gym.make(env_id, **SMALL[env_id])
    core = env.unwrapped
    assert isinstance(core, GengymEnv)
    obs, _ = env.reset(seed=3)
    messages = core.chat_messages()
    assert [m["role"] for m in messages] == ["user"] and message_text(messages[0]) == obs["text"]
    assert count_images(messages) == len(core.chat_images()) == (1 if image else 0)
    if image:
        assert messages[0]["content"][0] == {"type": "image"}
        assert np.array_equal(core.chat_images()[0], obs["image"])
    env.step("first try")
    env.step(WRONG)
    messages = core.chat_messages()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert message_text(messages[1]) == "first try" and message_text(messages[3]) == WRONG
    assert "Attempt 2 of 5 was not accepted" in message_text(messages[4])
    assert count_images(messages) == (1 if image else 0)
    messages[0]["content"].clear()  # a copy: the env is unaffected
    assert core.chat_messages()[0]["content"]
    env.step(core.oracle_answer())
    final = core.chat_messages()
    assert final[-1]["role"] == "assistant" and len(final) == 6
    transcript = core.transcript()
    assert [t["reward"] for t in transcript] == [-3.0, -1.5 if image else -2.0, 5.0]
    assert [t["attempt"] for t in transcript] == [1, 2, 3]
    assert transcript[0]["prompt"] == obs["text"]
    json.dumps(transcript)
    if not image:
        assert to_text_only(final)[0]["content"] == obs["text"]


@pytest.mark.parametrize("env_id", JSON_IDS)
def test_sampled_wrong_and_random_answers(env_id):
    env = gym.make(env_id, **SMALL[env_id])
    core = env.unwrapped
    verdicts = ["wrong_value", "wrong_numbers", "illegal"] + (
        ["wrong_cards"] if "VL" in env_id else []
    )
    for seed in range(6):
        for verdict in verdicts:
            env.reset(seed=seed)
            answer = core.sample_wrong_answer(np.random.default_rng(seed), verdict)
            assert answer == core.sample_wrong_answer(np.random.default_rng(seed), verdict)
            assert set(json.loads(answer)) == {"cards", "number", "formula"}
            _, reward, terminated, _, info = env.step(answer)
            assert info["verdict"] == verdict and reward < 0 and not terminated
            # A revision dialogue: the wrong answer, its feedback, then the oracle.
            _, reward, terminated, _, _ = env.step(core.oracle_answer())
            assert reward == 5.0 and terminated
            assert [m["role"] for m in core.chat_messages()] == [
                "user",
                "assistant",
                "user",
                "assistant",
            ]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="possible verdicts"):
        core.sample_wrong_answer(np.random.default_rng(0), "correct")
    with pytest.raises(ValueError):
        core.sample_wrong_answer(np.random.default_rng(0), "budget")
    if "VL" not in env_id:
        with pytest.raises(ValueError, match="not judged"):
            core.sample_wrong_answer(np.random.default_rng(0), "wrong_cards")
    # Sampling uses its own generator: the env deals the same hands with or without it.
    plain = gym.make(env_id, **SMALL[env_id])
    for seed in (3, None, None):
        _, a = env.reset(seed=seed)
        core.sample_wrong_answer(np.random.default_rng(1))
        core.sample_random_answer(np.random.default_rng(1))
        _, b = plain.reset(seed=seed)
        assert a["hand"] == b["hand"]
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(100):
        env.reset()
        answer = core.sample_random_answer(rng)
        assert set(json.loads(answer)) == {"cards", "number", "formula"}
        rewards.append(env.step(answer)[1])
    assert np.mean(np.array(rewards) == 5.0) < 0.05 and min(rewards) < 0


def test_info_keys():
    env = gym.make("GeneralPoints-VL-v0", image_size=96)
    _, info = env.reset(seed=0)
    assert set(info) == {
        "hand",
        "cards",
        "suits",
        "values",
        "target",
        "num_solutions",
        "attempt",
        "success",
    }
    assert info["num_solutions"] == len(solve(info["values"])) > 0
    _, _, _, _, info = env.step(WRONG)
    assert {"verdict", "feedback", "recognition_correct"} <= set(info)
    assert info["recognition_correct"] is False
    assert env.step("unreadable")[4]["recognition_correct"] is None
    env = gym.make("GeneralPoints-L-v0")
    env.reset(seed=0)
    assert "recognition_correct" not in env.step(WRONG)[4]


@pytest.mark.parametrize(
    "action",
    [
        "x" * 1_000_000,
        "\u2660\u2665 caf\u00e9 \x00\r\n\t" * 50,
        '{"formula": "' + "(" * 5000 + '"}',
        WRONG,
    ],
)
def test_hostile_actions_keep_observations_in_the_space(action):
    env = gym.make("GeneralPoints-L-v0")
    env.reset(seed=1)
    obs, reward, *_ = env.step(action)
    assert reward < 0 and obs in env.observation_space and len(obs["text"]) < 4000


@pytest.mark.parametrize("env_id", GP_IDS)
def test_variants_select_what_they_promise(env_id):
    assert set(VARIANTS[env_id]) >= {"id", "rule-ood"}
    for name, kwargs in VARIANTS[env_id].items():
        env = gym.make(env_id, **SMALL[env_id], **kwargs)
        for seed in range(15):
            obs, info = env.reset(seed=seed)
            compact = "compact" in env_id
            if name == "rule-ood":
                assert any(rank in ("J", "Q", "K") for rank in info["cards"])
                rule = "J11 Q12 K13 T24|" if compact else "J counts 11, Q counts 12 and K counts 13"
            else:
                rule = "J10 Q10 K10 T24|" if compact else "J, Q and K each count 10"
            assert rule in obs["text"]
            if name == "visual-ood":
                assert set(info["suits"]) <= {"H", "D"}
            elif "VL" in env_id:
                assert set(info["suits"]) <= {"S", "C"}
            assert env.step(env.unwrapped.oracle_answer())[1] == 5.0
    assert variant_kwargs("GeneralPoints-VL-v0", "visual-ood") == {"suit_colors": "red"}
    with pytest.raises(KeyError, match="has no variant"):
        variant_kwargs("GeneralPoints-L-v0", "visual-ood")


def test_wrappers_match_make_kwargs_and_compose():
    by_kwargs = gym.make(
        "GeneralPoints-VL-v0",
        image_size=96,
        face_card_values=[11, 12, 13],
        target=30,
        suit_colors="red",
        card_style="minimal",
        table_color="blue",
    )
    by_wrappers = VisualVariant(
        RuleVariant(
            gym.make("GeneralPoints-VL-v0", image_size=96), face_card_values=(11, 12, 13), target=30
        ),
        suit_colors="red",
        card_style="minimal",
        table_color="#24496e",
    )
    for seed in range(5):
        a, b = by_kwargs.reset(seed=seed), by_wrappers.reset(seed=seed)
        assert_same(a, b)
    # Outermost wins on the same field; an episode in progress keeps its rules.
    env = gym.make("GeneralPoints-L-v0")
    env.reset(seed=0)
    env = RuleVariant(RuleVariant(env, target=30), target=36)
    assert env.unwrapped.config.target == 24
    assert env.step(env.unwrapped.oracle_answer())[1] == 5.0  # still judged against 24
    assert env.reset(seed=0)[1]["target"] == 36
    with pytest.raises(ValueError, match="observation space"):
        env.unwrapped.reconfigure(mode="VL")
    with pytest.raises(TypeError, match="unknown GeneralPoints option"):
        env.unwrapped.reconfigure(colour="red")
    with pytest.raises(TypeError, match="GeneralPoints env"):
        RuleVariant(gym.make("CartPole-v1"), target=10)
    with pytest.raises(ValueError, match="face_card_values must be three whole numbers"):
        RuleVariant(env, face_card_values=11)
    with pytest.raises(ValueError, match="table_color"):
        VisualVariant(env, table_color=5)
    wrapped = ChatMessages(env)
    _, info = wrapped.reset(seed=0)
    assert info["messages"][0]["role"] == "user"


def test_config_is_validated_early():
    for bad, message in [
        ({"face_card_values": [11, 12]}, "face_card_values"),
        ({"hand_size": 7}, "hand_size"),
        ({"suit_colors": "green"}, "suit_colors"),
        ({"table_color": "plaid"}, "table_color"),
        ({"image_size": 8}, "image_size"),
        ({"verify_iter": 0}, "verify_iter"),
        ({"mode": "V"}, "mode"),
        ({"target": 2.5}, "target"),
        ({"face_card_values": 11}, "face_card_values"),
        ({"image_size": "64"}, "image_size"),
        ({"table_color": 5}, "table_color"),
        ({"table_color": [1, 2, "x"]}, "table_color"),
        ({"rewards": {"correct": "5"}}, "correct must be a finite number"),
        ({"rewards": {"budget": float("nan")}}, "budget must be a finite number"),
        ({"rewards": {"prefix": True}}, "prefix must be a finite number or None"),
        ({"rewards": {"bonus": 1.0}}, "unknown reward name.*bonus"),
    ]:
        with pytest.raises(ValueError, match=message):
            gym.make("GeneralPoints-L-v0", **bad)
    with pytest.raises(TypeError, match="unknown GeneralPoints option"):
        gym.make("GeneralPoints-L-v0", colour="red")
    with pytest.raises(TypeError, match="config must be a GeneralPointsConfig"):
        gym.make("GeneralPoints-L-v0", config={"target": 10})
    config = GeneralPointsConfig(
        rewards={"correct": 1.0}, image_size=64, face_card_values=[11, 12, 13]
    )
    assert config.rewards.correct == 1.0 and config.image_size == (64, 64)
    assert config.face_card_values == (11, 12, 13)


def test_hand_size_and_target_variants_play_out():
    for kwargs in [
        {"hand_size": 3, "target": 10},
        {"hand_size": 5},
        {"hand_size": 2, "target": 12},
    ]:
        env = gym.make("GeneralPoints-L-v0", **kwargs)
        for seed in range(3):
            _, info = env.reset(seed=seed)
            assert len(info["cards"]) == kwargs["hand_size"]
            assert env.step(env.unwrapped.oracle_answer())[1] == 5.0


def test_module_id_syntax_and_no_training_imports_in_a_fresh_interpreter():
    code = (
        "import sys, gymnasium as gym\n"
        "env = gym.make('gym_generalpoints:GeneralPoints-VL-v0', image_size=64)\n"
        "env.reset(seed=0)\n"
        "assert env.step(env.unwrapped.oracle_answer())[1] == 5.0\n"
        "import gym_generalpoints.wrappers, gengym_core.registry, gengym_core.play\n"
        "heavy = {'torch', 'transformers', 'trl', 'deepspeed', 'accelerate', 'peft', 'datasets'}\n"
        "loaded = sorted(heavy & {m.split('.')[0] for m in sys.modules})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_gengym_play_cli_runs_an_oracle_episode(tmp_path):
    from gengym_core.cli import main

    assert (
        main(
            [
                "play",
                "--env",
                "GeneralPoints-VL-v0",
                "--seed",
                "0",
                "--out",
                str(tmp_path),
                "--quiet",
                "--env-kwarg",
                "image_size=128",
            ]
        )
        == 0
    )
    assert (tmp_path / "seed0_step00.png").exists() and (tmp_path / "seed0.md").exists()
    assert gym_generalpoints.ENV_IDS.keys() == VARIANTS.keys()
