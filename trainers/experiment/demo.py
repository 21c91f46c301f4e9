"""``gengym demo``: the whole pipeline end to end, on built-in defaults.

Builds a tiny vision-language model from code (no downloads), writes oracle
SFT data for GeneralPoints-VL, fine-tunes it, runs a few PPO updates with the
verifier's reward, evaluates every checkpoint on the in-distribution,
rule-OOD and visual-OOD variants, draws the paper's plots and prints a
one-screen summary. On two CPU cores it takes a few minutes. ``--model`` runs
the same pipeline on a real checkpoint, ``--device cuda`` on a GPU.

The tiny model is random and far too small to play the game: expect success
near zero. The point of the demo is that every stage really runs and every
output is produced; point ``--model`` at a real VLM for real numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "run the whole pipeline (data, SFT, PPO, ID/OOD evaluation, plots) on built-in defaults"

#: The demo's settings: small enough for two CPU cores.
DEMO_SETTINGS: dict = {
    "name": "gengym demo",
    "env_id": "GeneralPoints-VL-v0",
    "model": "tiny:llava",
    "eval_episodes": 16,
    "eval_batch_size": 8,
    "eval_max_new_tokens": 48,
    "init_sft": {"num_examples": 64, "max_steps": 16, "per_device_batch_size": 4, "learning_rate": 3e-3},
    "sft": {"num_examples": 128, "max_steps": 24, "per_device_batch_size": 4, "learning_rate": 3e-3},
    "sft_snapshots": 2,
    "ppo": {
        "total_updates": 2,
        "num_envs": 4,
        "num_steps": 4,
        "minibatch_size": 8,
        "micro_batch_size": 4,
        "ppo_epochs": 2,
        "max_new_tokens": 48,
        "learning_rate": 1e-4,
        "max_grad_norm": 1.0,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--model", default=None, help="a real checkpoint (path or hub id) instead of the tiny one")
    parser.add_argument("--env", default=None, help="env id (default GeneralPoints-VL-v0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes per variant")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError, config_from_dict
    from trainers.experiment.runner import ExperimentConfig, ExperimentRunner

    settings = dict(DEMO_SETTINGS, output_dir=str(args.out), device=args.device, seed=args.seed)
    if args.model:
        settings["model"] = args.model
    if args.env:
        settings["env_id"] = args.env
    if args.episodes is not None:
        settings["eval_episodes"] = args.episodes
    try:
        config = config_from_dict(ExperimentConfig, settings, source="demo settings")
    except (ConfigError, ValueError) as err:
        print(f"gengym demo: {err}", file=sys.stderr)
        return 2
    _quiet_library_progress_bars()
    start = time.perf_counter()
    runner = ExperimentRunner(config)
    try:
        summary = runner.run()
    except ConfigError as err:  # settings a stage refused; what is done stays done for a rerun
        print(f"gengym demo: {err}", file=sys.stderr)
        return 2
    print_summary(runner, time.perf_counter() - start)
    print(f"\nfull report: {summary}")
    return 0


def _quiet_library_progress_bars() -> None:
    """Hide the per-file bars of transformers' loading and saving: the demo has its own."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def print_summary(runner, seconds: float) -> None:
    """One screen: what ran, where the files are, the results table."""
    from trainers.experiment.plots import headline_metric

    cfg = runner.config
    metric, label = headline_metric(cfg.env_id)
    records = runner.records()
    print("\n" + "=" * 72)
    print(f"gengym demo finished in {seconds / 60:.1f} min  ({cfg.env_id}, model {cfg.model})")
    print("=" * 72)
    header = f"{'series':<10}{'step':>6}{'GFLOPs':>12}" + "".join(f"{v:>12}" for v in cfg.variants)
    print(header)
    for r in sorted(records, key=lambda r: (r["series"], r["gflops"])):
        cells = "".join(
            f"{100 * r['variants'][v][metric]:>11.1f}%" if v in r["variants"] else f"{'-':>12}" for v in cfg.variants
        )
        print(f"{r['series']:<10}{r['step']:>6}{r['gflops']:>12.4g}{cells}")
    print(f"({label}; {cfg.eval_episodes} episodes per variant)")
    last = {}
    for r in sorted(records, key=lambda r: r["gflops"]):
        last[r["series"]] = r
    for series, r in sorted(last.items()):
        first_variant = next(iter(r["variants"].values()))
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in first_variant["verdicts"].items())
        print(f"verdicts of the last {series} checkpoint ({next(iter(r['variants']))}): {shares}")
    out = runner.out
    print(f"\nplots:        {out / 'plots'}")
    print(f"evaluations:  {out / 'evals'}  (metrics.json, report.md, transcripts with images)")
    print(f"checkpoints:  {out / 'init-sft' / 'final'}, {out / 'sft' / 'final'}, {out / 'rl' / 'final'}")
