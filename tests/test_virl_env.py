"""VIRL-L-v0 / VIRL-VL-v0 by contract: checker, determinism, pickling, vector envs, oracle."""

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

import gym_virl
from gengym_core.chat import count_images, message_text
from gengym_core.protocol import GengymEnv
from gengym_core.spaces import PROMPT_CHARSET
from gym_virl.wrappers import ActionSpaceVariant, ChatMessages, CityStyleVariant

IDS = ("VIRL-L-v0", "VIRL-VL-v0")
SMALL = {"view_size": 32}  # tests that do not look at pixels: small street views


def make(env_id, **kwargs):
    return gym.make(env_id, **{**SMALL, **kwargs})


def play_oracle(env, seed=None, options=None):
    obs, info = env.reset(seed=seed, options=options)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
        total += reward
        steps += 1
        assert info["verdict"] == "correct", info
        if terminated or truncated:
            return info, total, steps


VARIANT_KWARGS = [{}, {"action_space": "relative"}, {"split": "test", "city_style": "held_out"},
                  {"route_length": "long"}]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("kwargs", VARIANT_KWARGS, ids=["default", "relative", "visual-ood", "long"])
def test_env_checker_and_make_are_warning_free(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(env_id, **kwargs)
        check_env(env.unwrapped)
        env.reset(seed=0)
        env.step(env.unwrapped.oracle_answer())
        env.step("not json")
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_render_modes(env_id):
    env = make(env_id, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(obs["text"]) <= set(PROMPT_CHARSET)
    assert env.action_space.contains("anything at all \u2713")
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (66, 66, 3)
    if env_id == "VIRL-VL-v0":
        assert obs["image"].shape == env.observation_space["image"].shape == (66, 66, 3)
        assert np.array_equal(frame, obs["image"])
    ansi = make(env_id, render_mode="ansi")
    ansi.reset(seed=0)
    assert "[Instructions]" in ansi.render() and "rail point 1/" in ansi.render()
    assert isinstance(env.unwrapped, GengymEnv)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id):
    def rollout(seed):
        env = make(env_id)
        obs, info = env.reset(seed=seed)
        out = [(obs["text"], obs.get("image", np.zeros(1)).tobytes(), info["route_id"])]
        rng = np.random.default_rng(5)
        for _ in range(6):
            answer = env.unwrapped.oracle_answer() if rng.random() < 0.7 else "forward()"
            obs, r, te, tr, info = env.step(answer)
            out.append((obs["text"], obs.get("image", np.zeros(1)).tobytes(), r, info["verdict"]))
            if te or tr:
                break
        return out

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


def test_seeding_goes_through_np_random_only():
    # The global generators are neither read (reseeding them changes nothing) nor advanced.
    def rollout():
        env = make("VIRL-VL-v0", city_style="all", route_length="long")
        obs, info = env.reset(seed=11)
        out = [obs["text"], obs["image"].tobytes(), info["route_id"], info["city_style"]]
        for _ in range(3):
            obs, *_ = env.step(env.unwrapped.oracle_answer())
            out.append(obs["image"].tobytes())
        obs, info = env.reset()  # unseeded: continues np_random
        return out + [obs["text"], info["route_id"], info["city_style"]]

    random.seed(1)
    np.random.seed(1)
    first = rollout()
    random.seed(2)
    np.random.seed(2)
    py_state, np_state = random.getstate(), np.random.get_state()
    assert rollout() == first
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_reset_route_option_and_errors():
    env = make("VIRL-L-v0", train_routes=50)
    _, info = env.reset(options={"route": 49})
    assert info["route_index"] == 49 and info["route_id"] == "city0/train/49"
    with pytest.raises(ValueError, match="out of range.*50 routes"):
        env.reset(options={"route": 50})
    with pytest.raises(ValueError, match="out of range"):
        env.reset(options={"route": -1})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"rout": 1})
    with pytest.raises(TypeError, match="unknown VIRL env argument"):
        gym.make("VIRL-L-v0", action_spaces="relative")
    with pytest.raises(ValueError, match="unknown city style"):
        gym.make("VIRL-L-v0", city_style="paris")
    with pytest.raises(ValueError, match="split"):
        gym.make("VIRL-L-v0", split="all")
    for bad in (5.0, "3", True, None):
        with pytest.raises(ValueError, match="route must be a whole number"):
            env.reset(options={"route": bad})
    for bad in ("route", [("route", 1)]):
        with pytest.raises(ValueError, match="reset options must be a dict"):
            env.reset(options=bad)
    # The same route index names the same route in every env.
    a, b = make("VIRL-L-v0"), make("VIRL-L-v0", action_space="relative")
    oa, _ = a.reset(seed=1, options={"route": 7})
    ob, _ = b.reset(seed=2, options={"route": 7})
    assert oa["text"].split("[Action space]")[0] == ob["text"].split("[Action space]")[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_routes": "5"}, {"train_routes": 2.5}, {"train_routes": True}, {"test_routes": 0},
        {"view_size": 64.5}, {"view_size": "64"}, {"view_size": 8}, {"tries_per_point": 1.5},
        {"tries_per_point": 0}, {"rewards": {"correct": "x"}}, {"rewards": {"budget": float("nan")}},
        {"rewards": {"illegal": None}},
    ],
)
def test_malformed_settings_fail_at_make_naming_the_setting(kwargs):
    name = next(iter(kwargs["rewards"])) if "rewards" in kwargs else next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        gym.make("VIRL-L-v0", **kwargs)


def test_unknown_reward_names_are_listed():
    with pytest.raises(TypeError, match="unknown reward name.*prefix.*known.*wrong_intersection"):
        gym.make("VIRL-L-v0", rewards={"prefix": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize("action_space", ["absolute", "relative"])
def test_oracle_solves_every_route(action_space):
    # Every route of both default splits (1000 train, 200 test), short and long: not a sample.
    for length in ("short", "long"):
        for split in ("train", "test"):
            env = make("VIRL-L-v0", action_space=action_space, split=split, route_length=length)
            for route in range(env.unwrapped.num_routes()):
                info, total, steps = play_oracle(env, seed=route, options={"route": route})
                assert info["success"] and total == steps == info["rail_length"]


def test_oracle_solves_image_routes():
    env = make("VIRL-VL-v0", city_style="all")
    styles = set()
    for route in range(6):
        info, _, _ = play_oracle(env, seed=route, options={"route": route})
        styles.add(info["city_style"])
        assert info["success"] and info["recognition_correct"] is True
    assert len(styles) > 1


def test_always_forward_fails():
    env = make("VIRL-L-v0")
    answer = json.dumps({"current observation": "No landmark nearby. You are not at an intersection.",
                         "current instruction": "1.", "action": "forward()"})
    for route in range(40):
        env.reset(options={"route": route})
        while True:
            _, _, te, tr, info = env.step(answer)
            if te or tr:
                break
        assert tr and not info["success"] and info["verdict"] == "budget"


def test_rewards_budget_and_feedback():
    env = make("VIRL-L-v0", tries_per_point=3,
               rewards={"correct": 2.0, "wrong_action": -0.5, "wrong_intersection": -3.0,
                        "illegal": -4.0, "budget": -7.0})
    obs, info = env.reset(seed=0, options={"route": 3})
    u = env.unwrapped
    rng = np.random.default_rng(0)
    expected = {"wrong_action": -0.5, "wrong_intersection": -3.0, "illegal": -4.0}
    for attempt, verdict in enumerate(("wrong_action", "wrong_intersection", "illegal"), start=1):
        answer = u.sample_wrong_answer(rng, verdict)
        obs, r, te, tr, info = env.step(answer)
        assert (info["verdict"], r, info["attempt"], te, tr) == (verdict, expected[verdict], attempt, False, False)
        assert "[Feedback on your previous answer]" in obs["text"] and info["feedback"] in obs["text"]
        assert info["rail_index"] == 0 and not info["correct"]
    obs, r, te, tr, info = env.step(u.oracle_answer())  # right, but too late
    assert (info["verdict"], r, te, tr, info["success"]) == ("budget", -7.0, False, True, False)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("x")
    env.reset(seed=0, options={"route": 3})
    _, r, _, _, info = env.step(u.oracle_answer())
    assert r == 2.0 and info["correct"] and info["attempt"] == 1


def test_info_keys_history_and_transcript():
    env = make("VIRL-L-v0")
    obs, info = env.reset(seed=0, options={"route": 2})
    keys = {"route_id", "route_index", "split", "city_style", "action_space", "rail_rules", "gold_action",
            "rail_index", "rail_length", "is_key_point", "at_intersection", "instruction_index", "success"}
    assert keys <= set(info)
    assert info["is_key_point"] and info["gold_action"].startswith("turn_direction(")
    u = env.unwrapped
    gold0 = info["gold_action"]
    env.step("bad answer")
    obs, _, _, _, info = env.step(u.oracle_answer())
    judged = {"judged_gold_action", "judged_rail_index", "judged_is_key_point", "judged_at_intersection",
              "judged_instruction_index"}
    assert keys | judged | {"verdict", "feedback", "attempt", "correct"} <= set(info)
    assert info["judged_rail_index"] == 0 and info["attempt"] == 2 and info["judged_gold_action"] == gold0
    assert info["rail_index"] == 1 and info["judged_is_key_point"]
    assert f"A_1: {gold0}" in obs["text"] and "O_2:" in obs["text"]
    assert "[Feedback" not in obs["text"]
    t = u.transcript()
    assert [x["verdict"] for x in t] == ["illegal", "correct"]
    assert {"prompt", "answer", "reward", "verdict", "feedback", "rail_index", "gold_action"} <= set(t[0])
    json.dumps(t)


@pytest.mark.parametrize("kwargs", [{}, {"rail_rules": "reference"}, {"action_space": "relative"}])
def test_info_describes_the_observation_it_comes_with(kwargs):
    # Expert labels taken from info["gold_action"] must fit the observation returned
    # with that info (the step info used to describe the point just judged).
    env = make("VIRL-L-v0", **kwargs)
    for route in range(8):
        obs, info = env.reset(seed=route, options={"route": route})
        pairs = []
        while True:
            assert info["gold_action"] in env.unwrapped.oracle_answer()
            pairs.append((obs["text"], info["gold_action"], info["rail_index"]))
            label = json.loads(env.unwrapped.oracle_answer()) | {"action": info["gold_action"]}
            obs, _, te, tr, info = env.step(json.dumps(label))
            assert info["verdict"] == "correct"
            if not te:
                assert info["rail_index"] == pairs[-1][2] + 1
            assert (info["judged_gold_action"], info["judged_rail_index"]) == pairs[-1][1:]
            if te or tr:
                break
        assert te and info["success"] and len(pairs) == info["rail_length"]
        # Finished at the destination: the final info still describes the stop point.
        assert info["gold_action"] == "stop()" == info["judged_gold_action"]


def test_vl_history_does_not_leak_landmark_names():
    env = make("VIRL-VL-v0")
    text_env = make("VIRL-L-v0")
    for route in range(12):
        obs, _ = env.reset(options={"route": route})
        tobs, _ = text_env.reset(options={"route": route})
        names = [n for n in env.unwrapped._route.landmarks if n]
        while True:
            answer = env.unwrapped.oracle_answer()
            obs, _, te, tr, _ = env.step(answer)
            tobs, *_ = text_env.step(answer)
            if te or tr:
                break
            history = obs["text"].split("[Observations and actions so far]")[1].split("[Output]")[0]
            for name in names:
                assert name not in history  # seen only in the images
        # Text mode does name landmarks in its history.
        assert any(n in tobs["text"].split("[Observations and actions so far]")[1] for n in names) or not any(
            p.observed.landmarks for p in text_env.unwrapped._route.rail[:-1]
        )


@pytest.mark.parametrize("env_id", IDS)
def test_adversarial_answers_keep_observations_in_space(env_id):
    env = make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    prefixes = ["", "{", '{"a":', '{"current observation": ', '{"action": "turn_direction(']
    for _ in range(400 if env_id == "VIRL-L-v0" else 60):
        n = int(rng.integers(0, 80))
        junk = "".join(chr(int(c)) for c in rng.integers(1, 0x2FFF, size=n))
        obs, reward, te, tr, info = env.step(prefixes[int(rng.integers(len(prefixes)))] + junk)
        assert env.observation_space.contains(obs), info["feedback"]
        assert info["feedback"].isascii() and len(info["feedback"]) < 600
        assert reward < 0
        if te or tr:
            env.reset()
    for action in (None, 42, {"action": "forward()"}, b"\xff", "x" * 3_000_000):
        obs, *_ = env.step(action)
        assert env.observation_space.contains(obs)
        if env.unwrapped._done:
            env.reset()


def test_non_string_actions_are_illegal_even_when_their_repr_reads_right():
    env = make("VIRL-L-v0")
    env.reset(seed=0, options={"route": 0})
    oracle = env.unwrapped.oracle_answer()
    for action in (json.loads(oracle), [oracle], oracle.encode()):
        _, reward, _, _, info = env.step(action)
        assert info["verdict"] == "illegal" and reward == -1.0 and "must be text" in info["feedback"]
        env.reset(seed=0, options={"route": 0})
    assert env.step(oracle)[4]["verdict"] == "correct"


def test_longest_prompts_fit_the_space():
    env = make("VIRL-L-v0", route_length="long")
    longest = 0
    for route in range(40):
        env.reset(options={"route": route})
        u = env.unwrapped
        while True:
            obs, _, te, tr, _ = env.step(u.sample_wrong_answer(np.random.default_rng(route), "illegal"))
            longest = max(longest, len(obs["text"]))
            obs, _, te, tr, _ = env.step(u.oracle_answer())
            longest = max(longest, len(obs["text"]))
            if te or tr:
                break
    assert longest < env.observation_space["text"].max_length / 4


def test_chat_messages_and_images():
    env = make("VIRL-VL-v0")
    obs, _ = env.reset(seed=0, options={"route": 1})
    u = env.unwrapped
    msgs = u.chat_messages()
    assert [m["role"] for m in msgs] == ["user"] and count_images(msgs) == 1
    assert message_text(msgs[0]) == obs["text"]
    assert len(u.chat_images()) == 1 and np.array_equal(u.chat_images()[0], obs["image"])
    env.step("wrong")
    msgs = u.chat_messages()
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"] and count_images(msgs) == 1
    assert message_text(msgs[1]) == "wrong" and "could not be read" in message_text(msgs[2])
    env.step(u.oracle_answer())
    assert [m["role"] for m in u.chat_messages()] == ["user"]  # a fresh turn at the next rail point
    text_env = make("VIRL-L-v0")
    text_env.reset(seed=0)
    assert count_images(text_env.unwrapped.chat_messages()) == 0 and text_env.unwrapped.chat_images() == []
    wrapped = ChatMessages(make("VIRL-L-v0"))
    _, info = wrapped.reset(seed=0)
    assert info["messages"][0]["role"] == "user"


def test_pickle_mid_episode_and_continue():
    for env_id in IDS:
        env = make(env_id)
        env.reset(seed=5)
        env.step(env.unwrapped.oracle_answer())
        clone = pickle.loads(pickle.dumps(env))
        a = env.step(env.unwrapped.oracle_answer())
        b = clone.step(clone.unwrapped.oracle_answer())
        assert a[0]["text"] == b[0]["text"] and a[1:4] == b[1:4]
        if env_id == "VIRL-VL-v0":
            assert np.array_equal(a[0]["image"], b[0]["image"])
        assert len(pickle.dumps(env)) < 200_000


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs(vector_cls):
    venv = vector_cls([lambda: make("VIRL-VL-v0") for _ in range(2)])
    obs, info = venv.reset(seed=[10, 11])
    assert obs["image"].shape == (2, 66, 66, 3)
    for _ in range(3):
        answers = list(venv.call("oracle_answer"))
        obs, rewards, te, tr, info = venv.step(answers)
        assert list(rewards) == [1.0, 1.0]
    venv.close()


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec(env_id, mode):
    # Same-step autoreset: a finished episode restarts inside the step, so every sub-env
    # always has an oracle answer.
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
                        action_space="relative", **SMALL)
    obs, info = venv.reset(seed=[3, 4])
    assert venv.single_observation_space.contains({k: v[0] for k, v in obs.items()})
    assert list(info["action_space"]) == ["relative", "relative"]
    finished = np.zeros(2, int)
    for _ in range(100):
        obs, rewards, te, tr, info = venv.step(tuple(venv.call("oracle_answer")))
        assert list(rewards) == [1.0, 1.0] and not tr.any()
        finished += te
        if finished.min() >= 1:
            break
    assert finished.min() >= 1  # both episodes reached the destination
    venv.close()


def test_wrappers_and_variants():
    base = make("VIRL-L-v0")
    env = ActionSpaceVariant(CityStyleVariant(base, ["neon", "desert"]), "relative")
    _, info = env.reset(seed=0)
    assert info["action_space"] == "relative" and info["city_style"] in ("neon", "desert")
    assert "turn_direction(" in info["gold_action"] and "slightly" in env.unwrapped._header
    _, info = env.reset(seed=0, options={"action_space": "absolute"})  # explicit option wins
    assert info["action_space"] == "absolute"
    with pytest.raises(ValueError):
        ActionSpaceVariant(base, "diagonal")
    assert set(gym_virl.VARIANTS["VIRL-L-v0"]) == {"id", "rule-ood"}
    assert set(gym_virl.VARIANTS["VIRL-VL-v0"]) == {"id", "rule-ood", "visual-ood"}
    for name, kwargs in gym_virl.VARIANTS["VIRL-VL-v0"].items():
        e = make("VIRL-VL-v0", **kwargs)
        _, info = e.reset(seed=1)
        assert info["split"] == "test"
        if name == "rule-ood":
            assert info["action_space"] == "relative"
        if name == "visual-ood":
            assert info["city_style"] != "harbor"
        else:
            assert info["city_style"] == "harbor"


def test_import_does_not_pull_training_stack():
    code = (
        "import sys, gymnasium as gym, gym_virl, gym_virl.env, gym_virl.realdata, gym_virl.wrappers\n"
        "env = gym.make('VIRL-VL-v0', view_size=32); env.reset(seed=0)\n"
        "env.step(env.unwrapped.oracle_answer())\n"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'deepspeed', 'accelerate', 'peft', 'datasets')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
