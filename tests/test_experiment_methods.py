"""The experiment runner comparing SFT, RL, DPO, RLHF and RLAIF in one table and one plot (tiny models, CPU)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from helpers import TINY_EXPERIMENT  # noqa: E402

from trainers.common.compute import TRAINING_RECORD, read_training_record  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict  # noqa: E402
from trainers.experiment.runner import ExperimentConfig, ExperimentRunner  # noqa: E402
from trainers.pairs.build import read_pairs_info  # noqa: E402

SMALL = {"max_steps": 2, "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "progress_bar": False}
TINY = {
    **TINY_EXPERIMENT,
    "name": "tiny methods",
    "env_id": "GeneralPoints-L-v0",
    "model": "tiny:qwen2",
    "sft_snapshots": 1,
    "methods": ["sft", "rl", "dpo", "rlhf", "rlaif"],
    "pairs": {"num_pairs": 4, "model": "init", "samples_per_state": 2, "max_new_tokens": 8},
    "dpo": SMALL,
    "dpo_snapshots": 2,
    "reward_model": SMALL,
    "rlhf": {"reward_weights": {"reward-model": 1.0, "env": 0.1}},
    "rlaif": {"judge_max_new_tokens": 4},
}


def read_results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_every_method_is_a_series_in_one_table_and_one_plot(tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "exp"
    config = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(out)})
    summary = ExperimentRunner(config, log=lambda *_: None).run()
    records = read_results(out)
    assert {r["series"] for r in records} == {"sft", "rl", "dpo", "rlhf", "rlaif"}
    by_series = {s: sorted((r for r in records if r["series"] == s), key=lambda r: r["step"]) for s in TINY["methods"]}
    start = by_series["sft"][0]["gflops"]
    assert all(rows[0]["step"] == 0 and rows[0]["gflops"] == start for rows in by_series.values())  # all from init
    assert [r["step"] for r in by_series["dpo"]] == [0, 1, 2]

    # The pairs were sampled from init: their compute is charged to DPO and RLHF.
    sampling = read_pairs_info(out / "pairs")["sampling"]["gflops"]
    assert sampling > 0
    dpo_record = read_training_record(out / "dpo" / "final")
    assert dpo_record["pair_sampling_gflops"] == pytest.approx(sampling)
    assert by_series["dpo"][-1]["gflops"] == pytest.approx(dpo_record["gflops"])
    # RLHF carries the reward model's training on top of its PPO record.
    rm = read_training_record(out / "reward-model" / "final")
    ppo = read_training_record(out / "rlhf" / "checkpoints" / "update-00001" / "policy")
    assert by_series["rlhf"][1]["gflops"] == pytest.approx(ppo["gflops"] + rm["train_gflops"] + sampling)
    # RLAIF's PPO record includes the judge's forwards (same rollouts as RL, plus the judge).
    rl = read_training_record(out / "rl" / "checkpoints" / "update-00001" / "policy")
    rlaif = read_training_record(out / "rlaif" / "checkpoints" / "update-00001" / "policy")
    assert rlaif["buffer_tokens"] > rl["buffer_tokens"] and rlaif["gflops"] > rl["gflops"]

    image = np.asarray(Image.open(out / "plots" / "success_vs_compute.png").convert("L"))
    assert len(np.unique(image)) > 20 and image.std() > 10
    text = summary.read_text()
    for series in ("| dpo | 2 |", "| rlhf | 1 |", "| rlaif | 1 |", "- rlhf: PPO against a reward model"):
        assert series in text

    # A second run finds everything on disk and evaluates nothing again.
    ExperimentRunner(config, log=lambda *_: None).run()
    assert len(read_results(out)) == len(records)
    assert (out / "reward-model" / "final" / TRAINING_RECORD).is_file()


def test_the_default_compares_sft_and_rl_only():
    config = config_from_dict(ExperimentConfig, {"env_id": "GeneralPoints-L-v0"})
    assert config.methods == ["sft", "rl"]


def test_runner_stages_follow_the_methods(tmp_path, monkeypatch):
    calls = []
    config = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(tmp_path), "methods": ["rl", "rlaif"]})
    runner = ExperimentRunner(config, log=lambda *_: None)
    monkeypatch.setattr(runner, "base_model", lambda: tmp_path / "base")
    monkeypatch.setattr(runner, "init_checkpoint", lambda base: tmp_path / "init")
    monkeypatch.setattr(runner, "evaluate", lambda ckpt, series, step, **k: calls.append(("eval", tuple(series))))
    monkeypatch.setattr(runner, "sft_series", lambda init: calls.append("sft"))
    monkeypatch.setattr(runner, "preference_pairs", lambda base, init: calls.append("pairs"))
    monkeypatch.setattr(runner, "rl_series", lambda *a, **k: calls.append((a[1], (k.get("ppo_overrides") or {}).get("reward"))))
    monkeypatch.setattr(runner, "report", lambda: tmp_path / "summary.md")
    runner.run()
    assert calls == [("eval", ("rl", "rlaif")), ("rl", None), ("rlaif", f"judge:{tmp_path / 'base'}")]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"methods": ["sft", "ppo-2"]}, "methods must be"),
        ({"methods": ["rl", "rl"]}, "methods must be"),
        ({"methods": []}, "methods must be"),
        ({"rlhf": {"reward": "env"}}, "sets its own reward"),
        ({"dpo": {"bta": 0.1}}, "did you mean beta"),
        ({"reward_model": {"head_hidden": -2}}, "head_hidden"),
        ({"pairs": {"revision_share": 3}}, "revision_share"),
        ({"rlhf": {"reward_weights": {"judge": 1}}}, "unknown"),
        ({"rlaif": {"judge_max_new_tokens": 0}}, "judge_max_new_tokens"),
        ({"dpo_snapshots": -1}, "dpo_snapshots"),
    ],
)
def test_bad_method_recipes_fail_before_training(settings, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        config_from_dict(ExperimentConfig, {**TINY, **settings})
