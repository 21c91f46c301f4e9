"""Evaluation: metrics by hand, baselines on every variant, determinism, reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gengym_core.registry import gengym_env_ids, variants_of
from trainers.eval.agents import OracleAgent, RandomAgent
from trainers.eval.evaluate import episode_seed, evaluate, resolve_variants, write_report
from trainers.eval.stats import EpisodeRecord, summarize, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        # Hand-computed: p=0.8, z=1.96: centre (0.8+0.19207)/1.38415, half 1.96*sqrt(0.016+0.009604)/1.38415
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (50, 100, (0.4038, 0.5962)),
        (1, 1, (0.2065, 1.0)),
    ],
)
def test_wilson_interval_against_hand_computed_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_summary_metrics_by_hand():
    eps = [
        EpisodeRecord(seed=1, success=True, episode_return=4.0, turns=2, verdicts=["wrong_value", "correct"], recognition=[True, True]),
        EpisodeRecord(seed=2, success=False, episode_return=-6.0, turns=3, verdicts=["illegal", "illegal", "budget"], recognition=[False]),
    ]
    m = summarize(eps)
    assert m["success_rate"] == 0.5 and m["successes"] == 1 and m["episodes"] == 2
    assert m["per_step_accuracy"] == pytest.approx(1 / 5)
    assert m["recognition_accuracy"] == pytest.approx(2 / 3)
    assert m["mean_attempts"] == 2.5 and m["mean_return"] == -1.0
    assert m["verdicts"] == pytest.approx({"budget": 0.2, "correct": 0.2, "illegal": 0.4, "wrong_value": 0.2})
    assert m["success_ci"] == list(wilson_interval(1, 2))


ENV_IDS = gengym_env_ids()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_oracle_scores_100_and_random_near_0_on_every_variant(env_id):
    variants = list(variants_of(env_id))
    assert "id" in variants and "rule-ood" in variants
    oracle = evaluate(OracleAgent(), env_id, variants, episodes=12, batch_size=4, show_progress=False)
    for name, m in oracle.metrics.items():
        assert m["success_rate"] == 1.0, name
        assert m["per_step_accuracy"] == 1.0, name
        # Recognition is judged in the image envs only, and the oracle reports what the image shows.
        assert m["recognition_accuracy"] == (1.0 if "-VL-" in env_id else None), name
    rand = evaluate(RandomAgent(seed=0), env_id, variants, episodes=12, batch_size=4, show_progress=False)
    for name, m in rand.metrics.items():
        assert m["success_rate"] <= 1 / 12, name


def test_evaluation_is_deterministic_and_independent_of_batching():
    a = evaluate(RandomAgent(seed=5), "GeneralPoints-L-v0", ["id"], episodes=10, batch_size=3, show_progress=False)
    b = evaluate(RandomAgent(seed=5), "GeneralPoints-L-v0", ["id"], episodes=10, batch_size=3, show_progress=False)
    assert a.metrics == {k: {**v, "seconds": a.metrics[k]["seconds"]} for k, v in b.metrics.items()}
    assert [e.seed for e in a.episodes["id"]] == [episode_seed(0, "id", i) for i in range(10)]
    c = evaluate(OracleAgent(), "GeneralPoints-L-v0", ["id"], episodes=10, batch_size=1, show_progress=False)
    d = evaluate(OracleAgent(), "GeneralPoints-L-v0", ["id"], episodes=10, batch_size=7, show_progress=False)
    assert [e.seed for e in c.episodes["id"]] == [e.seed for e in d.episodes["id"]]
    # The random baseline's answers are a function of (seed, episode, turn), not of the batching.
    runs = [
        evaluate(RandomAgent(seed=5), "VIRL-L-v0", ["id"], episodes=6, batch_size=b, show_progress=False)
        for b in (1, 4)
    ]
    one, four = ([(e.verdicts, e.episode_return) for e in r.episodes["id"]] for r in runs)
    assert one == four
    assert len({tuple(v) for v, _ in one}) > 1  # and episodes do differ from one another


class _UnreadableAgent:
    """Answers text no verifier can parse."""

    name = "unreadable"

    def act(self, envs, prompts):
        return ["not an answer"] * len(envs)

    def close(self):
        pass


@pytest.mark.parametrize("env_id", ["GeneralPoints-VL-v0", "VIRL-VL-v0"])
def test_an_unreadable_answer_counts_as_a_failed_recognition(env_id):
    result = evaluate(_UnreadableAgent(), env_id, ["id"], episodes=2, batch_size=2, show_progress=False)
    assert all(e.recognition and not any(e.recognition) for e in result.episodes["id"])
    assert result.metrics["id"]["recognition_accuracy"] == 0.0  # not None: the answers named nothing right


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="has no variant 'visual-ood'"):
        resolve_variants("GeneralPoints-L-v0", ["visual-ood"])


def test_report_files(tmp_path):
    result = evaluate(OracleAgent(), "GeneralPoints-VL-v0", ["id", "visual-ood"], episodes=4, batch_size=2, show_progress=False)
    out = write_report(result, tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"id", "visual-ood"}
    report = (out / "report.md").read_text()
    assert "| id | 100.0% (4/4)" in report
    from PIL import Image

    image = Image.open(out / "transcripts" / "id" / "episode0.png")
    assert image.size[0] > 100
    turns = json.loads((out / "transcripts" / "id" / "episode0.json").read_text())["turns"]
    assert turns[0]["verdict"] == "correct"


def test_model_agent_runs_and_is_deterministic(tiny_model_path):
    from trainers.eval.agents import ModelAgent

    path = tiny_model_path("llava")
    runs = []
    for _ in range(2):
        agent = ModelAgent(str(path), max_new_tokens=8, device="cpu")
        result = evaluate(agent, "GeneralPoints-VL-v0", ["id"], episodes=3, batch_size=2, show_progress=False)
        runs.append([(e.verdicts, e.episode_return) for e in result.episodes["id"]])
        assert result.metrics["id"]["mean_attempts"] >= 1
    assert runs[0] == runs[1]


def test_cli_runs_baselines_and_rejects_bad_variants(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "gengym_core.cli", "eval", "--model", "oracle", "--env", "GeneralPoints-L-v0",
         "--variants", "all", "--episodes", "3", "--output-dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "100.0%" in out.stdout and (tmp_path / "report.md").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "gengym_core.cli", "eval", "--model", "oracle", "--env", "GeneralPoints-L-v0",
         "--variants", "id,nope", "--output-dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_cli_rejects_malformed_checkpoints_and_settings_before_loading(tiny_model_path, tmp_path, capsys):
    import torch

    from gengym_core.cli import main as gengym_main

    def fails(model, *extra, env="GeneralPoints-L-v0"):
        argv = ["eval", "--model", model, "--env", env, "--episodes", "1", "--output-dir", str(tmp_path / "out"), *extra]
        code = gengym_main(argv)
        return code, capsys.readouterr().err

    text_model = tiny_model_path("qwen2")
    data_folder = tmp_path / "not-a-model"
    data_folder.mkdir()
    (data_folder / "config.json").write_text("{}")
    cases = [
        ((str(tmp_path / "missing"),), "no checkpoint folder"),
        ((str(text_model / "config.json"),), "is a file"),
        ((str(data_folder),), "cannot read a model config"),
        (("",), "give a checkpoint folder"),
        ((str(text_model), "--max-new-tokens", "0"), "--max-new-tokens"),
        ((str(text_model), "--temperature", "-1"), "--temperature"),
        ((str(text_model), "--backend", "nope"), "--generation-backend must be one of"),
    ]
    for args, message in cases:
        code, err = fails(*args)
        assert code == 2 and message in err, (args, err)
    with pytest.raises(SystemExit) as exit_info:  # argparse lists the choices
        fails(str(text_model), "--generation-backend", "nope")
    assert exit_info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    code, err = fails(str(text_model), env="GeneralPoints-VL-v0")
    assert code == 2 and "text-only model but the env shows images" in err
    code, err = fails("oracle", "--output-dir", str(text_model / "config.json"))
    assert code == 2 and "is a file" in err
    if not torch.cuda.is_available():
        code, err = fails(str(text_model), "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in err
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        code, err = fails(str(text_model), "--generation-backend", "vllm")
        assert code == 2 and "vLLM" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_baselines_run_on_the_base_install(tmp_path):
    """Without the training extras the oracle and random baselines still evaluate; a model asks for the extras."""
    blocked = ["torch", "transformers", "trl", "datasets", "deepspeed", "peft", "accelerate", "matplotlib"]
    script = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from gengym_core.cli import main\n"
        f"a = main(['eval', '--model', 'oracle', '--env', 'GeneralPoints-VL-v0', '--variants', 'all', "
        f"'--episodes', '2', '--output-dir', {str(tmp_path / 'oracle')!r}])\n"
        f"b = main(['eval', '--model', 'random', '--env', 'VIRL-L-v0', '--episodes', '2', "
        f"'--output-dir', {str(tmp_path / 'random')!r}])\n"
        f"c = main(['eval', '--model', {str(tmp_path)!r}, '--env', 'VIRL-L-v0', '--episodes', '2', "
        f"'--output-dir', {str(tmp_path / 'model')!r}])\n"
        "print('codes', a, b, c)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "codes 0 0 2" in out.stdout, out.stderr[-2000:]
    assert "training extras" in out.stderr
    metrics = json.loads((tmp_path / "oracle" / "metrics.json").read_text())
    assert {v["success_rate"] for v in metrics["variants"].values()} == {1.0}
