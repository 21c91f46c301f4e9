"""gengym_integrations: episodes played through each library's own API.

Each test needs its library (``pip install 'generalization-gym[integrations]'``)
and is skipped, saying so, where it is missing. The model is scripted: it
answers wrong first (so feedback turns happen) and then with the env's
oracle, knowing the env's state only from the conversation it is shown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gengym_core.session import ChatSession, to_hf_messages
from gengym_core.single_turn import episode_seed

TEXT_IDS = ["GeneralPoints-L-v0", "VIRL-L-v0"]
SMALL_VL = {"GeneralPoints-VL-v0": {"image_size": 64}, "VIRL-VL-v0": {"view_size": 24}}


def _library(name: str, extra: str):
    return pytest.importorskip(
        name, reason=f"{name} is not installed: pip install 'generalization-gym[{extra}]'"
    )


def _wrong_then_oracle(core, answered: int) -> str:
    if answered == 0:
        return core.sample_wrong_answer(np.random.default_rng(0))
    return core.oracle_answer()


def test_importing_the_package_imports_no_library_and_no_torch():
    import subprocess

    code = (
        "import sys, gengym_integrations, gengym_core.session; "
        "bad = {'torch', 'verifiers', 'skyrl_gym', 'gem', 'reasoning_gym'} & set(sys.modules); "
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_library_names_its_extra():
    from gengym_integrations import require

    with pytest.raises(ImportError, match=r"generalization-gym\[nope\]"):
        require("no_such_library_here", "nope")


# ------------------------------------------------------------------ SkyRL-gym


@pytest.mark.parametrize("env_id", TEXT_IDS)
def test_skyrl_episode_from_a_parquet_row(env_id, tmp_path):
    skyrl_gym = _library("skyrl_gym", "skyrl")
    import pandas as pd

    from gengym_integrations.skyrl import ENV_CLASS, skyrl_rows, write_parquet

    path = write_parquet(skyrl_rows(env_id, 3, seed=1), tmp_path / "rows.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["prompt", "env_class", "data_source", "extra_info"]
    row = frame.iloc[2].to_dict()
    assert row["env_class"] == ENV_CLASS and row["extra_info"]["seed"] == episode_seed(1, 2)
    # What SkyRL's generator does with a row: every column but the prompt is an extra.
    extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
    env = skyrl_gym.make(row["env_class"], env_config={}, extras={**extras, "max_turns": 50})
    history, _ = env.init(list(row["prompt"]))
    assert history == [dict(m) for m in row["prompt"]]
    core = env.session.env.unwrapped
    rewards, done = [], False
    while not done:
        out = env.step(_wrong_then_oracle(core, len(rewards)))
        rewards.append(out["reward"])
        done = out["done"]
        assert all(m["role"] == "user" for m in out["observations"]) and bool(out["observations"]) != done
        history += [{"role": "assistant", "content": "..."}, *out["observations"]]
    assert rewards[0] < 0 and env.get_metrics()["success"] == 1.0
    assert env.get_metrics()["episode_return"] == pytest.approx(sum(rewards))
    env.close()


def test_skyrl_refuses_bad_rows_and_image_envs():
    skyrl_gym = _library("skyrl_gym", "skyrl")
    from gengym_integrations.skyrl import skyrl_rows

    for extras in ({}, {"extra_info": {"env_id": "GeneralPoints-L-v0", "seed": -1}},
                   {"extra_info": {"env_id": "GeneralPoints-L-v0", "seed": 1, "env_kwargs": "{oops"}},
                   {"extra_info": {"env_id": "Nope-v0", "seed": 1}}):
        with pytest.raises(ValueError):
            skyrl_gym.make("gengym", env_config={}, extras=extras)
    with pytest.raises(ValueError, match="text"):
        skyrl_rows("VIRL-VL-v0", 1)


# ------------------------------------------------------------------------ GEM


@pytest.mark.parametrize("env_id", TEXT_IDS + sorted(SMALL_VL))
def test_gem_episode_through_gem_make(env_id):
    gem = _library("gem", "gem")
    import gengym_integrations.gem as adapter

    assert "gengym:" + env_id in adapter.GEM_ENV_IDS
    env = gem.make("gengym:" + env_id, **SMALL_VL.get(env_id, {}))
    obs, info = env.reset(seed=3)
    core = env.session.env.unwrapped
    if env_id in SMALL_VL:
        assert obs["problem"] and len(obs["images"]) == 1
        np.testing.assert_array_equal(np.asarray(obs["images"][0]), core.chat_images()[0])
    else:
        assert isinstance(obs, str) and obs == core.chat_messages()[0]["content"][0]["text"]
    answered, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(_wrong_then_oracle(core, answered))
        if answered == 0:
            text = obs["problem"] if isinstance(obs, dict) else obs
            assert reward < 0 and info["feedback"] in text
        answered += 1
    assert terminated and not truncated and info["success"]


def test_gem_vector_env_and_variants():
    gem = _library("gem", "gem")
    import gengym_integrations.gem  # noqa: F401

    envs = gem.make_vec(["gengym:GeneralPoints-L-v0"] * 2, seed=5)
    first, _ = envs.reset()
    assert len(first) == 2 and first[0] != first[1]
    env = gem.make("gengym:GeneralPoints-L-v0", variant="rule-ood")
    obs, info = env.reset(seed=0)
    assert "J counts 11, Q counts 12 and K counts 13" in obs
    with pytest.raises(ValueError):
        gem.make("gengym:GeneralPoints-L-v0", bogus=1)


# -------------------------------------------------------------- reasoning-gym


@pytest.mark.parametrize("env_id", TEXT_IDS)
def test_reasoning_gym_dataset_by_index(env_id):
    reasoning_gym = _library("reasoning_gym", "reasoning-gym")
    import gengym_integrations.reasoning_gym as adapter

    name = "gengym:" + env_id
    assert name in adapter.DATASET_NAMES
    data = reasoning_gym.create_dataset(name, seed=2, size=6)
    assert len(data) == 6 and len(list(data)) == 6
    entry = data[4]
    again = reasoning_gym.create_dataset(name, seed=2, size=6)[4]
    assert entry == again  # a pure function of (seed, index)
    meta = entry["metadata"]
    assert meta["source_dataset"] == name and meta["source_index"] == 4
    assert data.score_answer(entry["answer"], entry) == 1.0
    assert data.score_answer(None, entry) == data.score_answer("junk", entry) < 1.0
    session = ChatSession(env_id)
    session.reset(seed=meta["episode_seed"])
    for _ in range(meta["step"]):
        session.step(session.env.unwrapped.oracle_answer())
    wrong = session.env.unwrapped.sample_wrong_answer(np.random.default_rng(0))
    env_reward = session.step(wrong)[1]
    assert data.env_reward(wrong, entry) == env_reward < 0
    assert 0.0 <= data.score_answer(wrong, entry) < 1.0
    for idx in (-1, 6, "1"):
        with pytest.raises(IndexError):
            data[idx]
    with pytest.raises(ValueError):
        reasoning_gym.create_dataset(name, steps="all")
    assert "gengym:VIRL-VL-v0" not in adapter.DATASET_NAMES  # entries are text


def test_reasoning_gym_partial_credit_orders_verdicts():
    reasoning_gym = _library("reasoning_gym", "reasoning-gym")
    import gengym_integrations.reasoning_gym  # noqa: F401

    data = reasoning_gym.create_dataset("gengym:GeneralPoints-L-v0", seed=0, size=2, steps="first")
    entry = data[0]
    answer = json.loads(entry["answer"])
    wrong_value = dict(answer, formula="*".join(str(n) for n in answer["number"]))
    scores = [data.score_answer(text, entry) for text in ("nothing", json.dumps(wrong_value), entry["answer"])]
    rewards = [data.env_reward(text, entry) for text in ("nothing", json.dumps(wrong_value), entry["answer"])]
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0
    assert rewards == sorted(rewards)


# ------------------------------------------------------------------ verifiers


def _vf_eval(env_id: str, kwargs: dict, tmp_path: Path, num: int = 2) -> tuple[list[dict], list[dict]]:
    """Run ``vf-eval gengym-verifiers`` in-process against the scripted model; return the
    episodes it wrote and the requests the model saw."""
    from scripted_chat import ReplayPolicy, ScriptedChatServer, opening_key
    from verifiers.v1.cli.eval.main import main

    session = ChatSession(env_id, **kwargs)
    episodes = {}
    for i in range(num):
        seed = episode_seed(0, i)
        episodes[opening_key(session.reset(seed=seed)[0])] = (env_id, kwargs, seed)
    server = ScriptedChatServer(ReplayPolicy(episodes))
    with server:
        main([
            "gengym-verifiers", "--env.taskset.env-id", env_id,
            "--env.taskset.env-kwargs", json.dumps(kwargs), "--env.taskset.num-tasks", str(num),
            "-n", str(num), "-m", "scripted", "--client.base-url", server.base_url,
            "--no-rich", "--no-push", "-o", str(tmp_path), "--run.name", "gengym-test",
        ])
    lines = (tmp_path / "gengym-test" / "traces.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], server.requests


@pytest.mark.parametrize("env_id", TEXT_IDS + sorted(SMALL_VL))
def test_verifiers_eval_plays_multi_turn_episodes(env_id, tmp_path, monkeypatch, capsys):
    _library("verifiers.v1", "verifiers")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.chdir(tmp_path)
    kwargs = SMALL_VL.get(env_id, {})
    episodes, requests = _vf_eval(env_id, kwargs, tmp_path)
    capsys.readouterr()
    assert len(episodes) == 2
    for episode in episodes:
        assert episode["ok"] and not episode["errors"]
        (trace,) = episode["traces"]
        rewards = trace["rewards"]
        assert rewards["success"]["score"] == 1.0 and rewards["success"]["weight"] == 0.0
        answers = trace["metrics"]["answers"]
        assert answers >= 2  # the scripted model answered wrong first, then right
        assert trace["info"]["final_verdict"] == "correct"
    # The model saw a growing conversation: the second request of an episode holds
    # the opening, the wrong answer and the feedback turn.
    assert sorted({len(r["messages"]) for r in requests})[:2] == [1, 3]
    parts = [p for r in requests for m in r["messages"] if isinstance(m["content"], list) for p in m["content"]]
    if env_id in SMALL_VL:
        urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
        hf, images = to_hf_messages(requests[0]["messages"])
        assert len(images) >= 1
    else:
        assert not parts
