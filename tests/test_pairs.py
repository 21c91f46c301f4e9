"""Preference pairs from the envs (trainers.pairs): verified sides, replay, storage, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("datasets")

from helpers import run_gengym  # noqa: E402

from gengym_core.chat import count_images, message_text  # noqa: E402
from gengym_core.registry import make  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict, help_of  # noqa: E402
from trainers.pairs.build import (  # noqa: E402
    PAIRS_INFO,
    build_pairs_dataset,
    check_pairs,
    iter_pairs,
    load_pairs,
    save_pairs_dataset,
    verify_pair,
    verify_pairs,
    wrong_verdicts_of,
)
from trainers.pairs.config import PairsConfig  # noqa: E402

SMALL_IMAGES = {"GeneralPoints-VL-v0": {"image_size": [64, 64]}, "VIRL-VL-v0": {"view_size": 64}}
ENV_IDS = ["GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-L-v0", "VIRL-VL-v0"]


def pairs_config(env_id: str, **overrides) -> PairsConfig:
    settings = {"env_id": env_id, "num_pairs": 8, "env_kwargs": SMALL_IMAGES.get(env_id, {}), "progress_bar": False}
    settings.update(overrides)
    return PairsConfig(**settings)


def judge_fresh(row: dict, side: str) -> str:
    """The verdict of a stored answer, found independently: a fresh env walked to the state."""
    env = make(row["env_id"], **json.loads(row["env_kwargs"]))
    env.reset(seed=row["episode_seed"])
    passed = 0
    for answer in row["earlier_answers"]:  # the oracle's, and earlier revision states' wrong ones
        passed += env.step(answer)[4]["verdict"] == "correct"
    assert passed == row["step"]
    for wrong in row["prefix_answers"]:
        env.step(wrong)
    _, _, _, _, info = env.step(message_text(row[side][0]))
    return info["verdict"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_oracle_pairs_chosen_always_verifies_and_rejected_never(env_id):
    config = pairs_config(env_id, revision_share=0.5)
    rows = list(iter_pairs(config))
    assert len(rows) == config.num_pairs
    categories = set(wrong_verdicts_of(env_id))
    for row in rows:
        assert judge_fresh(row, "chosen") == row["chosen_verdict"] == "correct"
        rejected = judge_fresh(row, "rejected")
        assert rejected == row["rejected_verdict"] and rejected in categories
        assert row["prompt"][-1]["role"] == "user"
        # Each observation of the conversation so far shows its image.
        assert len(row["images"]) == count_images(row["prompt"])
        assert (len(row["images"]) >= 1) == ("VL" in env_id)
    # The error categories rotate: every one the mode allows shows up.
    possible = categories - ({"wrong_cards"} if env_id == "GeneralPoints-L-v0" else set())
    assert {row["rejected_verdict"] for row in rows} == possible
    assert verify_pairs(rows) == {}


def test_revision_states_show_the_wrong_answer_and_its_feedback():
    rows = list(iter_pairs(pairs_config("GeneralPoints-L-v0", revision_share=1.0, num_pairs=4)))
    for row in rows:
        (wrong,) = row["prefix_answers"]
        prompt = message_text(row["prompt"][-1])
        formula = json.loads(wrong)["formula"]
        assert formula[:20] in prompt  # the observation quotes the earlier answer
        assert judge_fresh(row, "chosen") == "correct"
    chat = list(iter_pairs(pairs_config("GeneralPoints-L-v0", revision_share=1.0, num_pairs=2, prompt_format="chat")))
    assert [m["role"] for m in chat[0]["prompt"]] == ["user", "assistant", "user"]
    assert verify_pairs(chat) == {}


def test_pairs_are_a_pure_function_of_the_settings():
    a = list(iter_pairs(pairs_config("VIRL-L-v0", revision_share=0.3)))
    b = list(iter_pairs(pairs_config("VIRL-L-v0", revision_share=0.3)))
    assert a == b
    c = list(iter_pairs(pairs_config("VIRL-L-v0", revision_share=0.3, seed=1)))
    assert [r["chosen"] for r in a] != [r["chosen"] for r in c]


def test_multi_step_episodes_give_one_state_per_rail_point():
    rows = list(iter_pairs(pairs_config("VIRL-L-v0", num_pairs=6)))
    assert [r["step"] for r in rows[:3]] == [0, 1, 2] and len({r["episode"] for r in rows}) == 1


def test_replay_catches_tampered_pairs():
    (row,) = list(iter_pairs(pairs_config("GeneralPoints-VL-v0", num_pairs=1)))
    assert verify_pair(row) == []
    swapped = dict(row, chosen=row["rejected"], rejected=row["chosen"])
    assert any("judged" in p for p in verify_pair(swapped))
    wrong_state = dict(row, episode_seed=row["episode_seed"] + 1)
    problems = verify_pair(wrong_state)
    assert any("prompt differs" in p for p in problems) or any("images differ" in p for p in problems)
    repainted = dict(row, images=[np.zeros_like(row["images"][0])])
    assert any("images differ" in p for p in verify_pair(repainted))


def test_requested_categories_that_cannot_occur_fail_clearly():
    with pytest.raises(ValueError, match="wrong_cards"):
        list(iter_pairs(pairs_config("GeneralPoints-L-v0", rejected_verdicts=["wrong_cards"])))
    rows = list(iter_pairs(pairs_config("GeneralPoints-L-v0", rejected_verdicts=["illegal"], num_pairs=3)))
    assert {r["rejected_verdict"] for r in rows} == {"illegal"}


def test_a_budget_of_one_cannot_make_revision_states():
    with pytest.raises(ValueError, match="at least 2 attempts"):
        list(iter_pairs(pairs_config("GeneralPoints-L-v0", revision_share=1.0, env_kwargs={"verify_iter": 1})))


def test_stored_folder_reads_back_and_reverifies(tmp_path):
    dataset, info = build_pairs_dataset(pairs_config("GeneralPoints-VL-v0", num_pairs=3), progress=False)
    save_pairs_dataset(dataset, info, tmp_path / "pairs")
    assert json.loads((tmp_path / "pairs" / PAIRS_INFO).read_text())["pairs"] == 3
    loaded = load_pairs(tmp_path / "pairs")
    assert loaded["prompt"][0][0]["content"][0] == {"type": "image", "text": None}  # Arrow's layout
    assert verify_pairs(loaded) == {}  # images compared pixel for pixel with the env's


def test_model_sampled_pairs_are_labelled_by_the_verifier(tiny_model_path):
    config = pairs_config(
        "GeneralPoints-L-v0", num_pairs=3, model=str(tiny_model_path("qwen2")), samples_per_state=3, max_new_tokens=12
    )
    dataset, info = build_pairs_dataset(config, progress=False)
    assert verify_pairs(dataset) == {}
    for row in dataset:
        # A random tiny model never solves the game: the oracle steps in for the chosen side.
        assert row["chosen_source"] == "oracle" and row["chosen_verdict"] == "correct"
        assert row["rejected_source"] == "model" and row["rejected_verdict"] not in ("correct", "budget")
        assert judge_fresh(row, "rejected") == row["rejected_verdict"]
    sampling = info["sampling"]
    assert sampling["generated_tokens"] > 0 and sampling["prompt_tokens"] > 0
    expected = 2 * sampling["num_params"] * (sampling["prompt_tokens"] + sampling["generated_tokens"]) / 1e9
    assert sampling["gflops"] == pytest.approx(expected)


def test_skip_fallback_gives_up_when_the_model_never_succeeds(tiny_model_path, monkeypatch):
    import trainers.pairs.build as build

    monkeypatch.setattr(build, "MAX_SKIPPED_IN_A_ROW", 4)
    config = pairs_config(
        "GeneralPoints-L-v0", num_pairs=2, model=str(tiny_model_path("qwen2")), samples_per_state=2,
        max_new_tokens=4, fallback="skip",
    )
    with pytest.raises(ValueError, match="no usable pair"):
        list(iter_pairs(config))


MALFORMED = [
    ({"prompt": [[{"role": "assistant", "content": "x"}]]}, "end with a user turn"),
    ({"chosen": [[]]}, "one assistant message"),
    ({"rejected": [[{"role": "assistant", "content": "  "}]]}, "rejected answer is empty"),
    ({"rejected": [[{"role": "assistant", "content": "a"}]]}, "same text"),
    ({"images": [[np.zeros((4, 4, 3), np.uint8)]]}, "0 image placeholders but 1 images"),
    ({"prompt": [[{"role": "robot", "content": "x"}]]}, "role"),
]


@pytest.mark.parametrize(("change", "message"), MALFORMED)
def test_malformed_pair_data_is_refused(change, message):
    from datasets import Dataset

    columns = {
        "prompt": [[{"role": "user", "content": "q"}]],
        "chosen": [[{"role": "assistant", "content": "a"}]],
        "rejected": [[{"role": "assistant", "content": "b"}]],
    }
    columns.update(change)
    with pytest.raises(ValueError, match=message):
        check_pairs(Dataset.from_dict(columns))


def test_unreadable_or_empty_pair_folders_are_refused(tmp_path):
    dataset, info = build_pairs_dataset(pairs_config("GeneralPoints-L-v0", num_pairs=2), progress=False)
    save_pairs_dataset(dataset.select([]), info, tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no preference pairs"):
        load_pairs(tmp_path / "empty")
    save_pairs_dataset(dataset, info, tmp_path / "broken")
    for arrow in (tmp_path / "broken").glob("*.arrow"):
        arrow.write_bytes(b"not arrow data")
    with pytest.raises(ValueError, match="cannot read preference pairs"):
        load_pairs(tmp_path / "broken")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cannot read preference pairs"):
        load_pairs(tmp_path / "file")


def test_settings_are_checked_and_documented():
    assert all(help_of(PairsConfig).values())
    for settings, message in [
        ({"revision_share": 2}, "revision_share"),
        ({"rejected_verdicts": ["correct"]}, "not answer errors"),
        ({"model": "m", "rejected_verdicts": ["illegal"]}, "drop one of them"),
        ({"temperature": 0}, "temperature"),
        ({"env_id": ""}, "env_id"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(PairsConfig, {"env_id": "GeneralPoints-L-v0", **settings})
    with pytest.raises(ValueError, match="no variant"):
        PairsConfig(env_id="GeneralPoints-L-v0", variant="visual-ood").make_kwargs()


def test_command_writes_a_folder_and_refuses_bad_input(tmp_path):
    def gengym(*args):
        return run_gengym("pairs", *args)

    out = gengym("--env", "VIRL-L-v0", "--n", "3", "--out", str(tmp_path / "p"), "--no-progress-bar")
    assert out.returncode == 0, out.stderr
    assert "3 re-verified pairs" in out.stdout
    assert verify_pairs(load_pairs(tmp_path / "p")) == {}
    again = gengym("--env", "VIRL-L-v0", "--n", "3", "--out", str(tmp_path / "p"))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = gengym("--env", "Nope-v0", "--n", "3", "--out", str(tmp_path / "q"))
    assert bad.returncode == 2 and "unknown gengym env" in bad.stderr
    bad = gengym("--env", "VIRL-L-v0", "--env-kwarg", "bogus=1", "--n", "3", "--out", str(tmp_path / "q"))
    assert bad.returncode == 2 and "bogus" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "q").exists()


def test_a_model_that_cannot_read_the_prompts_is_refused_before_it_loads(tiny_model_path, monkeypatch):
    import argparse

    import trainers.common.modeling as modeling
    from trainers.pairs import cli

    def must_not_load(*args, **kwargs):
        raise AssertionError("no weights should load")

    monkeypatch.setattr(modeling, "load_model_and_processor", must_not_load)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    text_model = str(tiny_model_path("qwen2"))
    args = parser.parse_args(["--env", "GeneralPoints-VL-v0", "--out", "x", "--model", text_model])
    with pytest.raises(ConfigError, match="text-only model but the prompts of GeneralPoints-VL-v0 hold images"):
        cli.resolve(args)
    args = parser.parse_args(["--env", "GeneralPoints-L-v0", "--out", "x", "--model", text_model])
    assert cli.resolve(args).model == text_model


def test_chat_pairs_replay_the_earlier_answers_their_prompt_shows():
    """In the chat format a later V-IRL state's prompt holds every earlier answer, wrong ones included."""
    rows = list(iter_pairs(pairs_config("VIRL-L-v0", revision_share=1.0, num_pairs=6, prompt_format="chat")))
    later = [row for row in rows if row["step"] >= 1]
    assert later and verify_pairs(later) == {}
    row = later[0]
    assert len(row["earlier_answers"]) == 2 * row["step"]  # a wrong answer, then the oracle's, per step
    assert row["earlier_answers"][0] in message_text(row["prompt"][1])
    oracle_only = {key: value for key, value in row.items() if key != "earlier_answers"}
    assert verify_pairs([oracle_only]) == {0: ["the prompt differs from what the env shows at the stored state"]}
    short = {**row, "earlier_answers": row["earlier_answers"][:-1]}
    (problem,) = verify_pairs([short])[0]
    assert "not the stored" in problem
