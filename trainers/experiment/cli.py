"""``gengym experiment CONFIG.yaml``: run (or resume) an SFT-vs-RL experiment.

Chains the format warm-up SFT, the SFT and RL series, evaluates every
checkpoint on the ID and OOD variants and draws the paper's plots. Running
the same command again resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run or resume an SFT-vs-RL experiment from a YAML recipe (plots, summary)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="experiment YAML (see examples/experiments/)")
    parser.add_argument("--output-dir", default=None, help="override the recipe's output_dir")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="override the device")
    parser.add_argument("--model", default=None, help="override the base model (path, hub id or tiny:FAMILY)")


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError
    from trainers.experiment.runner import ExperimentRunner, load_experiment_config

    try:
        config = load_experiment_config(args.config, output_dir=args.output_dir, device=args.device, model=args.model)
    except (ConfigError, ValueError) as err:
        print(f"gengym experiment: {err}", file=sys.stderr)
        return 2
    try:
        summary = ExperimentRunner(config).run()
    except ConfigError as err:  # settings a stage refused; what is done stays done for a rerun
        print(f"gengym experiment: {err}", file=sys.stderr)
        return 2
    print(f"summary: {summary}")
    return 0
