"""The experiment runner: a tiny recipe end to end, its plots, resume, and the demo settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from helpers import TINY_EXPERIMENT, run_command  # noqa: E402

from trainers.common.config import ConfigError, config_from_dict  # noqa: E402
from trainers.experiment.runner import ExperimentConfig, ExperimentRunner  # noqa: E402

TINY = {
    **TINY_EXPERIMENT,
    "name": "tiny",
    "env_id": "GeneralPoints-VL-v0",
    "model": "tiny:llava",
    "sft_snapshots": 2,
    "rl_without_sft": True,
    "verification_ablation": [1, 2],
}


def read_results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def assert_png_is_a_real_plot(path):
    from PIL import Image

    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 300
    # A blank canvas has one grey level; a plot has axes, text and lines.
    assert len(np.unique(image)) > 20 and image.std() > 10


@pytest.mark.slow
def test_tiny_experiment_runs_plots_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    config = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(out)})

    # Interrupt the first run inside the RL series, after the SFT stages.
    import trainers.experiment.runner as runner_module

    real_rl_series = runner_module.ExperimentRunner.rl_series

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module.ExperimentRunner, "rl_series", crash)
    with pytest.raises(KeyboardInterrupt):
        ExperimentRunner(config, log=lambda *_: None).run()
    before = read_results(out)
    assert {r["series"] for r in before} == {"sft", "rl"}  # init (both series) and SFT snapshots
    init_weights = out / "init-sft" / "final" / "model.safetensors"
    stamp = init_weights.stat().st_mtime_ns

    monkeypatch.setattr(runner_module.ExperimentRunner, "rl_series", real_rl_series)
    summary = ExperimentRunner(config, log=lambda *_: None).run()
    assert init_weights.stat().st_mtime_ns == stamp, "the resumed run retrained the init checkpoint"
    records = read_results(out)
    keys = [(r["series"], r["checkpoint"]) for r in records]
    assert len(keys) == len(set(keys)), "a checkpoint was evaluated twice"
    assert records[: len(before)] == before
    series = {r["series"] for r in records}
    assert series == {"sft", "rl", "rl-no-sft", "viter-1", "viter-2"}
    sft = sorted((r for r in records if r["series"] == "sft"), key=lambda r: r["gflops"])
    assert [r["step"] for r in sft] == [0, 1, 2]
    assert sft[0]["gflops"] < sft[-1]["gflops"]
    for r in records:
        assert set(r["variants"]) == {"id", "rule-ood", "visual-ood"}

    for name in ("success_vs_compute", "recognition_vs_success", "rl_without_sft", "verification_ablation"):
        assert_png_is_a_real_plot(out / "plots" / f"{name}.png")
    text = summary.read_text()
    assert "| sft | 2 |" in text and "verification_ablation.png" in text

    # A third run finds everything done and evaluates nothing again.
    ExperimentRunner(config, log=lambda *_: None).run()
    assert len(read_results(out)) == len(records)


def test_ablation_evaluates_with_its_own_budget(tmp_path, monkeypatch):
    calls = []
    config = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(tmp_path), "verification_ablation": [3]})
    runner = ExperimentRunner(config, log=lambda *_: None)
    monkeypatch.setattr(runner, "evaluate", lambda ckpt, series, step, env_overrides=None: calls.append((series, env_overrides)))
    monkeypatch.setattr(runner, "rl_series", lambda *a, **k: calls.append(("rl", k.get("env_kwargs"))))
    monkeypatch.setattr(runner, "base_model", lambda: tmp_path / "base")
    monkeypatch.setattr(runner, "init_checkpoint", lambda base: tmp_path / "init")
    monkeypatch.setattr(runner, "sft_series", lambda init: None)
    monkeypatch.setattr(runner, "report", lambda: tmp_path / "summary.md")
    config.rl_without_sft = False
    runner.run()
    assert (["viter-3"], {"verify_iter": 3}) in calls
    assert ("rl", {"verify_iter": 3}) in calls


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"env_id": "Nope-v0"}, "unknown gengym env"),
        ({"eval_variants": ["visual-ood"], "env_id": "GeneralPoints-L-v0"}, "not variants"),
        ({"sft": {"learning_rat": 1}}, "learning_rat"),
        ({"ppo": {"clip_range": 3}}, "clip_range"),
        ({"verification_ablation": [0]}, "at least 1"),
        ({"model": "tiny:nope"}, "unknown tiny model family"),
        ({"judge_model": "tiny:gpt"}, "judge_model: unknown tiny model family"),
        ({"model": ""}, "model must name a checkpoint"),
    ],
)
def test_bad_recipes_fail_before_training(settings, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        config_from_dict(ExperimentConfig, {**TINY, **settings})


def test_demo_and_example_recipes_are_valid():
    from pathlib import Path

    from trainers.experiment.demo import DEMO_SETTINGS
    from trainers.experiment.runner import load_experiment_config

    config_from_dict(ExperimentConfig, DEMO_SETTINGS)
    recipes = sorted(Path(__file__).resolve().parent.parent.joinpath("examples", "experiments").glob("*.yaml"))
    assert len(recipes) >= 4
    for recipe in recipes:
        load_experiment_config(recipe)


def test_a_missing_checkpoint_or_gpu_fails_before_anything_is_written(tmp_path):
    import torch

    from gengym_core.cli import main as gengym_main

    missing = config_from_dict(ExperimentConfig, {**TINY, "model": str(tmp_path / "nope"), "output_dir": str(tmp_path / "a")})
    with pytest.raises(ConfigError, match="no checkpoint folder"):
        ExperimentRunner(missing, log=lambda *_: None).run()
    assert not (tmp_path / "a").exists()
    if not torch.cuda.is_available():
        gpu = config_from_dict(ExperimentConfig, {**TINY, "device": "cuda", "output_dir": str(tmp_path / "b")})
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            ExperimentRunner(gpu, log=lambda *_: None).run()
        assert not (tmp_path / "b").exists()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"env_id: GeneralPoints-L-v0\nmodel: {tmp_path / 'nope'}\noutput_dir: {tmp_path / 'c'}\n")
    assert gengym_main(["experiment", str(recipe)]) == 2


def test_resuming_with_settings_that_change_recorded_results_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    first = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(out), "methods": ["sft", "rl"]})
    runner = ExperimentRunner(first, log=lambda *_: None)
    stages = ("base_model", "init_checkpoint", "evaluate", "sft_series", "rl_series", "preference_pairs",
              "dpo_series", "rlhf_series", "rlaif_series", "report")
    for stage in stages:
        monkeypatch.setattr(ExperimentRunner, stage, lambda self, *a, **k: None)
    runner.run()  # writes experiment.json only

    def resume(**changes):
        config = config_from_dict(ExperimentConfig, {**TINY, "output_dir": str(out), "methods": ["sft", "rl"], **changes})
        ExperimentRunner(config, log=lambda *_: None).run()

    # Changes that leave the recorded results valid: a new title, device, more series, a method's own
    # settings while that method has not run.
    resume(name="renamed", device="auto", rl_without_sft=True, verification_ablation=[1, 3])
    resume(methods=["sft", "rl", "dpo"], dpo={"max_steps": 4})
    # Changes that would mix new results with old ones.
    for changes, names in [
        ({"eval_episodes": 5}, "eval_episodes"),
        ({"sft": {**TINY["sft"], "max_steps": 3}, "seed": 1}, "seed, sft"),
        ({"methods": ["sft", "rl", "dpo"], "dpo": {"max_steps": 8}}, "dpo changed"),
    ]:
        with pytest.raises(ConfigError, match=names):
            resume(**changes)


@pytest.mark.slow
def test_under_a_launcher_the_main_process_alone_evaluates_and_writes(tmp_path, monkeypatch):
    """Two CPU processes (torchrun): both train, the main one evaluates; results are as in one process."""
    import subprocess
    import sys

    import yaml

    out = tmp_path / "exp"
    recipe = tmp_path / "recipe.yaml"
    settings = {**TINY, "env_id": "GeneralPoints-L-v0", "model": "tiny:qwen2", "rl_without_sft": False,
                "verification_ablation": [], "deepspeed": "zero3", "output_dir": str(out)}
    recipe.write_text(yaml.safe_dump(settings))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "gengym_core.cli", "experiment", str(recipe)]
    returncode, stderr = run_command(launch, timeout=600)
    assert returncode == 0, stderr[-3000:]
    records = read_results(out)
    keys = [(r["series"], r["checkpoint"]) for r in records]
    assert len(keys) == len(set(keys)), "a checkpoint was recorded by more than one process"
    assert sorted((r["series"], r["step"]) for r in records) == [("rl", 0), ("rl", 1), ("sft", 0), ("sft", 1), ("sft", 2)]
    assert_png_is_a_real_plot(out / "plots" / "success_vs_compute.png")

    # deepspeed: none cannot share PPO between processes: refused before anything runs.
    recipe.write_text(yaml.safe_dump({**settings, "deepspeed": "none", "output_dir": str(tmp_path / "none")}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    done = subprocess.run([sys.executable, "-m", "gengym_core.cli", "experiment", str(recipe)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "deepspeed: zero2 or zero3" in done.stderr
    assert not (tmp_path / "none").exists()


def test_demo_rejects_bad_flags_before_writing_anything(tmp_path, capsys):
    from gengym_core.cli import main as gengym_main

    out = tmp_path / "demo"
    for flags, message in [
        (["--episodes", "0"], "eval_episodes"),
        (["--model", str(tmp_path / "missing")], "no checkpoint folder"),
        (["--env", "Nope-v0"], "unknown gengym env"),
    ]:
        assert gengym_main(["demo", "--out", str(out), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("env_id", ["VIRL-L-v0", "VIRL-VL-v0"])
def test_training_uses_the_training_routes_and_evaluation_the_held_out_ones(env_id):
    from gengym_core.registry import variants_of

    config = config_from_dict(ExperimentConfig, {**TINY, "env_id": env_id, "model": "tiny:qwen2",
                                                 "methods": ["sft", "rl", "dpo"], "rl_without_sft": False,
                                                 "verification_ablation": [1]})
    assert {kwargs["split"] for kwargs in variants_of(env_id).values()} == {"test"}
    assert config.train_env_kwargs() == {"split": "train"}
    assert config.sft_config("init", model="m", output_dir="o").env_kwargs["split"] == "train"
    assert config.sft_config("sft", model="m", output_dir="o").env_kwargs["split"] == "train"
    assert config.ppo_config(model="m", output_dir="o", env_kwargs={"tries_per_point": 1}).env_kwargs == {
        "split": "train", "tries_per_point": 1}
    assert config.pairs_config(model="").env_kwargs["split"] == "train"
    rule = config_from_dict(ExperimentConfig, {**TINY, "env_id": env_id, "model": "tiny:qwen2",
                                               "train_variant": "rule-ood", "rl_without_sft": False,
                                               "verification_ablation": []})
    assert rule.train_env_kwargs() == {"split": "train", "action_space": "relative"}


def test_a_torn_results_line_does_not_swallow_the_next_record(tmp_path, monkeypatch):
    from trainers.eval.agents import OracleAgent

    class CheckpointAsOracle(OracleAgent):  # evaluation without a model: the oracle answers
        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr("trainers.eval.agents.ModelAgent", CheckpointAsOracle)
    config = config_from_dict(ExperimentConfig, {**TINY, "env_id": "GeneralPoints-L-v0", "model": "tiny:qwen2",
                                                 "output_dir": str(tmp_path), "rl_without_sft": False,
                                                 "verification_ablation": []})
    runner = ExperimentRunner(config, log=lambda *_: None)
    runner.results_path.write_text('{"series": "sft", "checkpoint": "killed-mid-wri')
    runner.evaluate(tmp_path / "checkpoint", ["sft", "rl"], step=3)
    records = runner.records()
    assert [(r["series"], r["step"]) for r in records] == [("sft", 3), ("rl", 3)]
    assert records[0]["variants"]["id"]["success_rate"] == 1.0
    runner.evaluate(tmp_path / "checkpoint", ["sft", "rl"], step=3)  # recorded: not evaluated again
    assert len(runner.records()) == 2


def test_snapshot_steps_spread_over_the_run_and_end_at_its_last_step():
    from trainers.experiment.runner import snapshot_steps

    assert snapshot_steps("sft", 10, 3) == [3, 7, 10]
    assert snapshot_steps("dpo", 2, 4) == [1, 2]  # never step 0, no step twice
    with pytest.raises(ValueError, match="the dpo section needs max_steps >= 1"):
        snapshot_steps("dpo", 0, 2)


@pytest.mark.slow
def test_mini_gp_l_recipe_runs_end_to_end_at_a_tiny_size(tmp_path):
    """The CPU-scale recipe, shrunk: the shipped model, SFT and PPO series, both variants, the plot."""
    from pathlib import Path

    from trainers.common.compute import gflops_of
    from trainers.common.config import load_yaml
    from trainers.models import shipped_model_path

    recipe = Path(__file__).resolve().parent.parent / "examples" / "experiments" / "mini_gp_l.yaml"
    settings = load_yaml(recipe)
    assert settings["model"] == "tiny:gp-l" and settings["eval_episodes"] >= 200
    small = {
        "output_dir": str(tmp_path / "exp"),
        "eval_episodes": 3,
        "eval_batch_size": 3,
        "sft": {**settings["sft"], "num_examples": 16, "max_steps": 2, "progress_bar": False},
        "sft_snapshots": 2,
        "ppo": {**settings["ppo"], "total_updates": 2, "num_envs": 2, "num_steps": 2, "minibatch_size": 4,
                "micro_batch_size": 4, "ppo_epochs": 1},
        "ppo_eval_every": 1,
    }
    config = config_from_dict(ExperimentConfig, {**settings, **small})
    summary = ExperimentRunner(config, log=lambda *_: None).run()
    records = read_results(tmp_path / "exp")
    start = gflops_of(shipped_model_path("gp-l"))
    assert start > 0  # the pretraining's compute is D_init of both series
    for series in ("sft", "rl"):
        points = sorted((r for r in records if r["series"] == series), key=lambda r: r["step"])
        assert [r["step"] for r in points] == [0, 1, 2]
        assert points[0]["gflops"] == pytest.approx(start) and points[-1]["gflops"] > start
        for r in points:
            assert set(r["variants"]) == {"id", "rule-ood"}
            assert r["variants"]["id"]["episodes"] == 3
    assert_png_is_a_real_plot(tmp_path / "exp" / "plots" / "success_vs_compute.png")
    assert "tiny:gp-l" in summary.read_text()
