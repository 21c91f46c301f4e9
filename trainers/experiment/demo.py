"""``gengym demo``: the whole pipeline end to end, on built-in defaults.

Starts from the small model gengym ships (``tiny:gp-l``, trained from
scratch by ``gengym pretrain`` on compact GeneralPoints-L play over many
face-card rules; see :mod:`trainers.models`), fine-tunes it with SFT on
oracle answers of the training rule (J, Q, K count 10), runs PPO with the
verifier's reward from the same start, evaluates every checkpoint on the
in-distribution and rule-OOD variants of ``GeneralPoints-L-compact-v0``,
draws the paper's plots and prints a one-screen summary. It takes a few
minutes on two CPU cores, and the numbers are real: the shipped model
solves a good share of the hands, and they move as SFT and RL train.
``--model`` runs the same pipeline on another checkpoint, ``--env`` on
another env (with a random tiny model built from code unless ``--model``
names one: expect zeros), ``--device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "run the whole pipeline (SFT, PPO, ID/OOD evaluation, plots) from the shipped model, on built-in defaults"

#: The demo's settings: small enough for two CPU cores.
DEMO_SETTINGS: dict = {
    "name": "gengym demo",
    "env_id": "GeneralPoints-L-compact-v0",
    "model": "tiny:gp-l",
    "eval_episodes": 100,
    "eval_batch_size": 100,
    "eval_max_new_tokens": 40,
    # The shipped model already answers in the env's format: no format warm-up.
    "init_sft": {"skip": True},
    "sft": {
        "num_examples": 2048,
        "max_steps": 240,
        "per_device_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 3e-4,
    },
    "sft_snapshots": 2,
    "ppo": {
        "total_updates": 6,
        "num_envs": 16,
        "num_steps": 8,
        "minibatch_size": 32,
        "micro_batch_size": 32,
        "ppo_epochs": 2,
        "max_new_tokens": 40,
        "temperature": 1.0,
        "learning_rate": 5e-5,
        "max_grad_norm": 1.0,
        "value_head_hidden": 128,
        "thought_weight": 1.0,
    },
    "ppo_eval_every": 3,
}

#: What the demo changes for an env other than the shipped model's: a random tiny
#: model built from code, taught the answer format by a short SFT first.
OTHER_ENV_SETTINGS: dict = {
    "eval_episodes": 16,
    "eval_batch_size": 8,
    "eval_max_new_tokens": 48,
    "init_sft": {"num_examples": 64, "max_steps": 16, "per_device_batch_size": 4, "learning_rate": 3e-3},
    "sft": {"num_examples": 128, "max_steps": 24, "per_device_batch_size": 4, "learning_rate": 3e-3},
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
    "ppo_eval_every": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--model", default=None, help="another checkpoint (path, hub id or tiny:NAME) instead of tiny:gp-l")
    parser.add_argument("--env", default=None, help="env id (default GeneralPoints-L-compact-v0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes per variant")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import os

    # The demo's models are tiny: one torch thread does the work, and on a shared
    # machine two threads waiting on each other ran several times slower. A
    # user's own OMP_NUM_THREADS wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from trainers.common.config import ConfigError, config_from_dict
    from trainers.experiment.runner import ExperimentConfig, ExperimentRunner

    settings = dict(DEMO_SETTINGS, output_dir=str(args.out), device=args.device, seed=args.seed)
    if args.env and args.env != DEMO_SETTINGS["env_id"]:
        settings.update(OTHER_ENV_SETTINGS, env_id=args.env)
        settings["model"] = "tiny:llava" if "VL" in args.env else "tiny:qwen2"
    if args.model:
        settings["model"] = args.model
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
    print(f"evaluations:  {out / 'evals'}  (metrics.json, report.md, sample transcripts)")
    init = [] if cfg.init_sft.get("skip") else [out / "init-sft" / "final"]
    print("checkpoints:  " + ", ".join(str(p) for p in [*init, out / "sft" / "final", out / "rl" / "final"]))
