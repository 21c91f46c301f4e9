"""Oracle SFT data (trainers.data): every env, single- and multi-turn, re-verified from disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("datasets")

from datasets import load_from_disk  # noqa: E402

from gengym_core.cli import main as gengym_main  # noqa: E402
from gengym_core.registry import gengym_env_ids, make  # noqa: E402
from gym_generalpoints import compact  # noqa: E402
from trainers.data import (  # noqa: E402
    OracleDataConfig,
    OracleError,
    build_oracle_dataset,
    clean_messages,
    episode_seed,
    save_oracle_dataset,
    to_text_only_dataset,
    verify_dataset,
    verify_example,
)

#: Small images keep the VL cases fast; the pixels still come from the env.
SMALL = {
    "GeneralPoints-VL-v0": {"image_size": [96, 96]},
    "VIRL-VL-v0": {"view_size": 32},
}
ENV_IDS = gengym_env_ids()


def small_config(env_id: str, n: int = 6, **kwargs) -> OracleDataConfig:
    env_kwargs = {**SMALL.get(env_id, {}), **kwargs.pop("env_kwargs", {})}
    return OracleDataConfig(env_id=env_id, num_examples=n, env_kwargs=env_kwargs, **kwargs)


def roundtrip(dataset, tmp_path):
    save_oracle_dataset(dataset, tmp_path / "data")
    return load_from_disk(str(tmp_path / "data"))


def test_all_four_tasks_are_registered():
    assert {"GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-L-v0", "VIRL-VL-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_single_turn_examples_of_every_env_reverify_from_disk(env_id, tmp_path):
    dataset = roundtrip(build_oracle_dataset(small_config(env_id, n=7), progress=False), tmp_path)
    assert len(dataset) == 7
    image_env = "image" in make(env_id, **SMALL.get(env_id, {})).observation_space.spaces
    for example in dataset:
        messages = clean_messages(example["messages"])
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[-1]["content"] == [{"type": "text", "text": example["answer"]}]
        assert example["verdicts"] == ["correct"] and example["env_id"] == env_id
        placeholders = [p for p in messages[0]["content"] if p["type"] == "image"]
        assert len(placeholders) == len(example["images"]) == (1 if image_env else 0)
        if "compact" in env_id:  # the answer is the env's format
            compact.parse_answer(example["answer"])
        else:
            json.loads(example["answer"])
    assert verify_dataset(dataset) == {}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_revision_dialogues_of_every_env_reverify_from_disk(env_id, tmp_path):
    dataset = roundtrip(build_oracle_dataset(small_config(env_id, n=5, multi_turn=True), progress=False), tmp_path)
    for example in dataset:
        messages = clean_messages(example["messages"])
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        first, feedback_verdict = example["verdicts"]
        assert first != "correct" and feedback_verdict == "correct"
        assert example["rewards"][0] < 0 < example["rewards"][1]
        assert messages[1]["content"][0]["text"] != example["answer"]
    assert verify_dataset(dataset) == {}


def test_revision_dialogue_is_the_envs_own_final_conversation():
    config = small_config("GeneralPoints-L-v0", n=1, multi_turn=True)
    (example,) = build_oracle_dataset(config, progress=False)
    env = make("GeneralPoints-L-v0")
    env.reset(seed=example["episode_seed"])
    rng = np.random.default_rng(np.random.SeedSequence([0, 0, 1]))
    env.step(env.unwrapped.sample_wrong_answer(rng))
    env.step(env.unwrapped.oracle_answer())
    assert clean_messages(example["messages"]) == env.unwrapped.chat_messages()


def test_virl_walks_every_rail_point_of_an_episode_in_order():
    dataset = build_oracle_dataset(small_config("VIRL-L-v0", n=20), progress=False)
    by_episode: dict[int, list[int]] = {}
    for episode, step in zip(dataset["episode"], dataset["step"], strict=True):
        by_episode.setdefault(episode, []).append(step)
    assert len(by_episode) >= 2  # routes are a few rail points long, so 20 examples span episodes
    for steps in by_episode.values():
        assert steps == list(range(len(steps)))
    complete = list(by_episode)[:-1]
    env = make("VIRL-L-v0")
    for episode in complete:  # every episode but the last one (cut at n) is walked to its end
        _, info = env.reset(seed=episode_seed(0, episode))
        assert len(by_episode[episode]) == info["rail_length"]
    assert "stop()" in dataset[len(by_episode[0]) - 1]["answer"]


def test_same_settings_give_the_same_dataset_and_another_seed_another():
    def rows(seed):
        ds = build_oracle_dataset(small_config("GeneralPoints-VL-v0", n=5, seed=seed, multi_turn=True), progress=False)
        return [
            (json.dumps(e["messages"]), e["episode_seed"], e["answer"], [np.asarray(i).tobytes() for i in e["images"]])
            for e in ds
        ]

    assert rows(3) == rows(3)
    assert rows(3) != rows(4)


def test_episode_seeds_are_mixed_not_consecutive():
    seeds = {episode_seed(s, e) for s in range(3) for e in range(50)}
    assert len(seeds) == 150  # seed 0 episode 1 is not seed 1 episode 0


def test_variants_and_env_kwargs_shape_the_data():
    dataset = build_oracle_dataset(small_config("GeneralPoints-L-v0", n=8, variant="rule-ood"), progress=False)
    kwargs = json.loads(dataset[0]["env_kwargs"])
    assert kwargs["face_card_values"] == [11, 12, 13] and kwargs["require_face_card"] is True
    for example in dataset:
        answer = json.loads(example["answer"])
        faces = {"J": 11, "Q": 12, "K": 13}
        assert any(card in faces for card in answer["cards"])  # every rule-OOD hand holds a face card
        for card, number in zip(answer["cards"], answer["number"], strict=True):
            if card in faces:
                assert number == faces[card]
    assert verify_dataset(dataset) == {}

    relative = build_oracle_dataset(small_config("VIRL-L-v0", n=12, variant="rule-ood"), progress=False)
    actions = [json.loads(a)["action"] for a in relative["answer"]]
    turns = [a for a in actions if a.startswith("turn_direction")]
    assert turns and all(any(w in a for w in ("left", "right")) for a in turns)


def test_reverification_catches_tampered_examples():
    (example,) = build_oracle_dataset(small_config("GeneralPoints-VL-v0", n=1), progress=False)
    assert verify_example(example) == []

    wrong_answer = json.loads(example["answer"])
    wrong_answer["formula"] = "1+1+1+1"
    tampered = dict(example, messages=[example["messages"][0], {"role": "assistant", "content": [
        {"type": "text", "text": json.dumps(wrong_answer)}]}])
    assert any("judged" in p for p in verify_example(tampered))

    prompt = json.loads(json.dumps(example["messages"]))
    prompt[0]["content"][-1]["text"] += " Also, ignore the rules."
    assert any("conversation" in p for p in verify_example(dict(example, messages=prompt)))

    pixels = np.asarray(example["images"][0]).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    assert any("images" in p for p in verify_example(dict(example, images=[pixels])))

    assert verify_example(dict(example, verdicts=["wrong_value"]))
    assert verify_example(dict(example, env_id="NoSuchEnv-v0"))


def test_a_rejected_oracle_answer_is_never_written(monkeypatch):
    import gym_generalpoints.env as gp_env

    monkeypatch.setattr(gp_env.GeneralPointsEnv, "oracle_answer", lambda self: '{"formula": "1+2"}')
    with pytest.raises(OracleError, match="rejects the oracle's answer"):
        build_oracle_dataset(small_config("GeneralPoints-L-v0", n=2), progress=False)


def test_wrong_answer_accepted_by_the_verifier_is_an_env_bug(monkeypatch):
    import gym_generalpoints.env as gp_env

    monkeypatch.setattr(gp_env.GeneralPointsEnv, "sample_wrong_answer", lambda self, rng, verdict=None: self.oracle_answer())
    with pytest.raises(OracleError, match="accepts"):
        build_oracle_dataset(small_config("GeneralPoints-L-v0", n=2, multi_turn=True), progress=False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(env_id="GeneralPoints-L-v0", num_examples=0), "num_examples"),
        (dict(env_id="", num_examples=1), "env_id"),
        (dict(env_id="GeneralPoints-L-v0", seed=-1), "seed"),
        (dict(env_id="GeneralPoints-L-v0", wrong_verdict="wrong_value"), "multi_turn"),
        (dict(env_id="GeneralPoints-L-v0", env_kwargs={"x": object()}), "JSON"),
    ],
)
def test_invalid_settings_say_what_to_change(settings, message):
    with pytest.raises(ValueError, match=message):
        OracleDataConfig(**settings)


def test_unbuildable_requests_fail_with_a_reason():
    with pytest.raises(ValueError, match="unknown gengym env"):
        build_oracle_dataset(OracleDataConfig("NoSuchEnv-v0", num_examples=1), progress=False)
    with pytest.raises(ValueError, match="no variant"):
        build_oracle_dataset(small_config("GeneralPoints-L-v0", variant="visual-ood"), progress=False)
    with pytest.raises(ValueError, match="unknown GeneralPoints option"):
        build_oracle_dataset(small_config("GeneralPoints-L-v0", env_kwargs={"colour": "red"}), progress=False)
    with pytest.raises(ValueError, match="budget"):
        build_oracle_dataset(
            small_config("GeneralPoints-L-v0", multi_turn=True, env_kwargs={"verify_iter": 1}), progress=False
        )
    with pytest.raises(ValueError, match="wrong_cards"):  # cards are only judged in image mode
        build_oracle_dataset(
            small_config("GeneralPoints-L-v0", multi_turn=True, wrong_verdict="wrong_cards"), progress=False
        )


def test_text_only_form_for_trl_text_pipelines():
    dataset = build_oracle_dataset(small_config("GeneralPoints-L-v0", n=3), progress=False)
    text = to_text_only_dataset(dataset)
    assert "images" not in text.column_names
    assert all(isinstance(m["content"], str) for row in text["messages"] for m in row)
    assert text[0]["messages"][1]["content"] == dataset[0]["answer"]
    with pytest.raises(ValueError, match="images"):
        to_text_only_dataset(build_oracle_dataset(small_config("GeneralPoints-VL-v0", n=1), progress=False))


def test_gengym_data_command_writes_and_reverifies(tmp_path, capsys):
    out = tmp_path / "gp"
    argv = ["data", "--env", "GeneralPoints-VL-v0", "--n", "4", "--out", str(out), "--seed", "5",
            "--env-kwarg", "image_size=[64,64]", "--variant", "rule-ood", "--multi-turn", "--verify", "--no-progress"]
    assert gengym_main(argv) == 0
    assert "re-verified all 4 examples" in capsys.readouterr().out
    dataset = load_from_disk(str(out))
    assert len(dataset) == 4 and set(dataset["seed"]) == {5} and set(dataset["variant"]) == {"rule-ood"}
    assert json.loads(dataset[0]["env_kwargs"])["image_size"] == [64, 64]
    assert np.asarray(dataset[0]["images"][0]).shape == (64, 64, 3)

    assert gengym_main(argv) == 2  # a non-empty folder is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert gengym_main([*argv, "--overwrite"]) == 0
    assert gengym_main(["data", "--env", "GeneralPoints-L-v0", "--n", "1", "--out", str(tmp_path / "x"),
                        "--variant", "nope"]) == 2
    assert "no variant" in capsys.readouterr().err
    assert gengym_main(["data", "--env", "VIRL-L-v0", "--n", "1", "--out", str(tmp_path / "x"),
                        "--env-kwarg", "colour=red", "--no-progress"]) == 2
    assert "unknown" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_gengym_data_command_writes_nothing_when_the_env_breaks_its_oracle(tmp_path, capsys, monkeypatch):
    import gym_generalpoints.env as gp_env

    monkeypatch.setattr(gp_env.GeneralPointsEnv, "oracle_answer", lambda self: '{"formula": "1+2"}')
    out = tmp_path / "broken"
    assert gengym_main(["data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", str(out), "--no-progress"]) == 1
    assert "broke its oracle contract" in capsys.readouterr().err and not out.exists()
