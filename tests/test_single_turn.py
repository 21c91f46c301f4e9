"""The single-turn "prompt, reward function" view (gengym_core.single_turn).

The frozen scorers must give exactly the env's reward, verdict and feedback
for any answer: each is checked against a replay of the real env (the
ReplayScorer steps the answer through a fresh env at the same state) on
oracle, wrong, random and junk answers, in every registered env.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from gengym_core import single_turn
from gengym_core.single_turn import (
    GeneralPointsScorer,
    ReplayScorer,
    VirlScorer,
    episode_seed,
    iter_single_turn_tasks,
    scorer_from_json,
)

#: Every registered env id, with kwargs that keep images small (fast).
SMALL = {
    "GeneralPoints-L-compact-v0": {},
    "GeneralPoints-L-v0": {},
    "GeneralPoints-VL-v0": {"image_size": 64},
    "VIRL-L-v0": {},
    "VIRL-VL-v0": {"view_size": 32},
}

JUNK = ["", "no idea", "{", "{'formula': '24'}", "x" * 70_000, '{"action": "stop()"}', 42, None]


def test_every_registered_id_is_covered():
    from gengym_core.registry import gengym_env_ids

    assert sorted(SMALL) == gengym_env_ids()


def test_module_is_torch_free():
    code = (
        "import sys\n"
        "from gengym_core.single_turn import iter_single_turn_tasks, scorer_from_json\n"
        "for env_id in ('GeneralPoints-L-v0', 'VIRL-L-v0'):\n"
        "    task = next(iter_single_turn_tasks(env_id, 1))\n"
        "    assert scorer_from_json(task.scorer.to_json())(task.oracle_answer) > 0\n"
        "heavy = {'torch', 'transformers', 'trl', 'deepspeed', 'accelerate', 'peft', 'datasets'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("env_id", sorted(SMALL))
def test_frozen_scorer_equals_the_env_on_any_answer(env_id):
    from gengym_core.registry import make

    tasks = list(iter_single_turn_tasks(env_id, 4, seed=3, env_kwargs=SMALL[env_id]))
    live = make(env_id, **SMALL[env_id])
    rng = np.random.default_rng(0)
    for task in tasks:
        assert task.judge(task.oracle_answer).verdict == "correct"
        assert task.score(task.oracle_answer) > 0
        # Bring a live env to the task's state to draw wrong and random answers there.
        live.reset(seed=task.episode_seed)
        for _ in range(task.step):
            live.step(live.unwrapped.oracle_answer())
        core = live.unwrapped
        answers = [core.sample_wrong_answer(rng) for _ in range(4)]
        answers += [core.sample_random_answer(rng) for _ in range(2)] + JUNK
        replay = ReplayScorer(env_id, task.env_kwargs, task.episode_seed, task.step)
        for answer in answers:
            frozen, truth = task.judge(answer), replay.judge(answer)
            assert frozen == truth, (answer, frozen, truth)
        wrong = [task.judge(a).verdict for a in answers[:4]]
        assert "correct" not in wrong


@pytest.mark.parametrize("env_id", sorted(SMALL))
def test_tasks_hold_the_envs_conversation_and_images(env_id):
    task = next(iter_single_turn_tasks(env_id, 1, env_kwargs=SMALL[env_id]))
    assert task.messages[-1]["role"] == "user"
    placeholders = sum(p["type"] == "image" for m in task.messages for p in m["content"])
    assert placeholders == len(task.images) == (1 if "VL" in env_id else 0)
    for image in task.images:
        assert image.dtype == np.uint8 and image.ndim == 3
    assert task.prompt.strip()


def test_same_seed_same_tasks_other_seed_other_tasks():
    a = list(
        iter_single_turn_tasks("GeneralPoints-VL-v0", 3, seed=5, env_kwargs={"image_size": 64})
    )
    b = list(
        iter_single_turn_tasks("GeneralPoints-VL-v0", 3, seed=5, env_kwargs={"image_size": 64})
    )
    c = list(
        iter_single_turn_tasks("GeneralPoints-VL-v0", 3, seed=6, env_kwargs={"image_size": 64})
    )
    for x, y in zip(a, b, strict=True):
        assert x.messages == y.messages and x.scorer == y.scorer
        assert all(np.array_equal(i, j) for i, j in zip(x.images, y.images, strict=True))
    assert [t.scorer.cards for t in a] != [t.scorer.cards for t in c]


def test_episode_seeds_match_the_oracle_sft_data():
    from trainers.data.oracle import episode_seed as oracle_episode_seed

    for seed, episode in [(0, 0), (0, 7), (3, 1), (12345, 99)]:
        assert episode_seed(seed, episode) == oracle_episode_seed(seed, episode)
    task = list(iter_single_turn_tasks("GeneralPoints-L-v0", 3, seed=4))[2]
    assert task.episode == 2 and task.episode_seed == episode_seed(4, 2)


def test_virl_episodes_are_walked_one_task_per_rail_point():
    tasks = list(iter_single_turn_tasks("VIRL-L-v0", 30, seed=1))
    first = [t for t in tasks if t.episode == 0]
    assert [t.step for t in first] == list(range(len(first)))
    assert len(first) >= 3 and any(t.episode == 1 for t in tasks)
    assert first[-1].scorer.gold_action == "stop()"
    # Later rail points show the history of earlier actions in their prompt.
    assert "(none yet)" in first[0].prompt and "A_1:" in first[1].prompt
    only_starts = list(iter_single_turn_tasks("VIRL-L-v0", 3, seed=1, max_steps_per_episode=1))
    assert [(t.episode, t.step) for t in only_starts] == [(0, 0), (1, 0), (2, 0)]


def test_variants_reach_the_scorer():
    gp = next(iter_single_turn_tasks("GeneralPoints-L-v0", 1, variant="rule-ood"))
    assert gp.scorer.face_card_values == (11, 12, 13)
    assert any(code[:-1] in ("J", "Q", "K") for code in gp.scorer.cards)
    virl = next(iter_single_turn_tasks("VIRL-L-v0", 1, variant="rule-ood"))
    assert virl.scorer.action_space == "relative" and virl.env_kwargs["split"] == "test"


def test_prefix_reward_keeps_solutions():
    rewards = {"prefix": 1.0}
    task = next(iter_single_turn_tasks("GeneralPoints-L-v0", 1, env_kwargs={"rewards": rewards}))
    assert task.scorer.solutions
    start = task.scorer.solutions[0][:3]
    answer = json.dumps({"number": [], "formula": start})
    assert (
        task.score(answer)
        == 1.0
        == ReplayScorer("GeneralPoints-L-v0", task.env_kwargs, task.episode_seed)
        .judge(answer)
        .reward
    )


@pytest.mark.parametrize("env_id", ["GeneralPoints-VL-v0", "VIRL-L-v0"])
def test_scorers_survive_json_and_pickle(env_id):
    for task in iter_single_turn_tasks(env_id, 3, env_kwargs=SMALL[env_id]):
        for copy in (
            scorer_from_json(task.scorer.to_json()),
            pickle.loads(pickle.dumps(task.scorer)),
        ):
            assert copy == task.scorer
            assert copy(task.oracle_answer) == task.score(task.oracle_answer)
            assert copy("junk") == task.score("junk")
    replay = ReplayScorer("VIRL-L-v0", {}, 7, 1)
    assert scorer_from_json(replay.to_json()) == replay


GOOD_GP = GeneralPointsScorer(
    ("AS", "7H", "KD", "2C"),
    24,
    (10, 10, 10),
    False,
    {
        "correct": 5.0,
        "wrong_value": -1.0,
        "wrong_numbers": -2.0,
        "wrong_cards": -1.5,
        "illegal": -3.0,
        "budget": -1.0,
        "prefix": None,
    },
)


def _gp_json(**changes):
    data = json.loads(GOOD_GP.to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "does not parse"),
        ("[1, 2]", "must be an object"),
        ('{"family": "chess"}', "unknown family"),
        ("x" * 70_000, "characters long"),
        (_gp_json(cards=["AS", "7H", "ZZ", "2C"]), "ZZ"),
        (_gp_json(cards="AS 7H"), "list of strings"),
        (_gp_json(target="24"), "whole number"),
        (_gp_json(check_cards=1), "true or false"),
        (_gp_json(face_card_values=[10, 10]), "three numbers"),
        (_gp_json(rewards={"correct": 5.0, "bonus": 9}), "bad rewards"),
        (_gp_json(extra=1), "unknown field"),
        (_gp_json(rewards={"correct": "lots"}), "must be a number"),
        (_gp_json(rewards={"correct": None}), "must be a number"),
        (
            json.dumps({k: v for k, v in json.loads(GOOD_GP.to_json()).items() if k != "target"}),
            "lacks",
        ),
        (
            json.dumps(
                {
                    "family": "virl",
                    "gold_action": "fly()",
                    "at_intersection": False,
                    "action_space": "absolute",
                    "rewards": {},
                }
            ),
            "gold_action",
        ),
        (
            json.dumps(
                {
                    "family": "virl",
                    "gold_action": "stop()",
                    "at_intersection": False,
                    "action_space": "sideways",
                    "rewards": {},
                }
            ),
            "action_space",
        ),
        (
            json.dumps(
                {
                    "family": "replay",
                    "env_id": "Pong-v5",
                    "env_kwargs": {},
                    "episode_seed": 0,
                    "step": 0,
                }
            ),
            "unknown gengym env",
        ),
    ],
)
def test_bad_scorer_json_is_a_clear_error(text, match):
    with pytest.raises(ValueError, match=match):
        scorer_from_json(text)


def test_scorer_json_is_not_code():
    assert scorer_from_json(GOOD_GP.to_json()) == GOOD_GP


def test_gp_scorer_judges_as_its_env_and_reads_older_json():
    right = {"cards": ["A", "7", "K", "2"], "number": [1, 7, 13, 2], "formula": "7*2+10*1 = 25"}
    task = next(iter_single_turn_tasks("GeneralPoints-L-v0", 1, seed=0))
    assert (task.scorer.check_numbers, task.scorer.check_stated_result) == (False, False)
    lenient = dataclasses.replace(GOOD_GP, check_numbers=False, check_stated_result=False)
    assert lenient(json.dumps(right)) == 5.0 and scorer_from_json(lenient.to_json()) == lenient
    # Scorers written before the two settings existed judged both fields.
    old = json.loads(GOOD_GP.to_json())
    del old["check_numbers"], old["check_stated_result"]
    assert scorer_from_json(json.dumps(old))(json.dumps(right)) == -2.0
    with pytest.raises(ValueError):
        scorer_from_json(b"cos\nsystem\n(S'echo hi'\ntR.")  # pickle bytes are refused, never loaded


def test_virl_scorer_reads_turns_and_claims():
    scorer = VirlScorer("turn_direction(west)", True, "absolute", {})
    good = {
        "current observation": "I am at an intersection.",
        "current instruction": "1.",
        "action": "Turn_Direction( West )",
    }
    assert scorer(json.dumps(good)) == 1.0
    # The right action earns +1 whatever the claim; a wrong one with a false claim -1.5.
    assert scorer.judge(json.dumps({**good, "current observation": "No landmark."})).verdict == "correct"
    assert scorer.judge(json.dumps({"current observation": "No landmark.", "action": "forward()"})).verdict == (
        "wrong_intersection"
    )
    assert scorer.judge(json.dumps({**good, "action": "forward()"})).verdict == "wrong_action"


def test_unknown_family_falls_back_to_replay(monkeypatch):
    monkeypatch.setattr(single_turn, "_FROZEN_SCORERS", {})
    task = next(iter_single_turn_tasks("GeneralPoints-L-v0", 1, seed=2))
    assert isinstance(task.scorer, ReplayScorer)
    assert task.score(task.oracle_answer) == 5.0 and task.score("?") == -3.0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"num_tasks": 0}, ValueError),
        ({"num_tasks": 1, "variant": "visual-ood"}, ValueError),
        ({"num_tasks": 1, "max_steps_per_episode": 0}, ValueError),
        ({"num_tasks": 1, "env_kwargs": {"hand_size": 9}}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        list(iter_single_turn_tasks("GeneralPoints-L-v0", **kwargs))
    with pytest.raises(ValueError, match="unknown gengym env"):
        list(iter_single_turn_tasks("GeneralPoints-XL-v0", 1))


@pytest.mark.parametrize("env_id", ["GeneralPoints-L-v0", "VIRL-L-v0"])
def test_tasks_by_index_match_the_iterated_tasks(env_id):
    from gengym_core.registry import make
    from gengym_core.single_turn import single_turn_task

    env = make(env_id)
    listed = list(iter_single_turn_tasks(env_id, 12, seed=3))
    for task in listed[::3]:
        again = single_turn_task(env, task.episode, env_id=env_id, env_kwargs={}, seed=3, step=task.step)
        assert again.messages == task.messages and again.scorer == task.scorer
    drawn = [single_turn_task(env, e, env_id=env_id, env_kwargs={}, seed=3, step="random") for e in range(6)]
    assert [t.step for t in drawn] == [
        single_turn_task(env, e, env_id=env_id, env_kwargs={}, seed=3, step="random").step for e in range(6)
    ]
    assert all(t.score(t.oracle_answer) > 0 for t in drawn)
    if env_id == "VIRL-L-v0":
        assert len({t.step for t in drawn}) > 1
    with pytest.raises(ValueError, match="task steps"):
        single_turn_task(env, 0, env_id=env_id, env_kwargs={}, seed=3, step=99)
    with pytest.raises(ValueError):
        single_turn_task(env, -1, env_id=env_id, env_kwargs={}, seed=3)
