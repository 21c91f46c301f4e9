"""``gengym pretrain``: train a small model from scratch on compact GeneralPoints-L play (CPU).

Settings come from the PretrainConfig defaults, then ``--config FILE.yaml``,
then individual flags (``--output-dir``, ``--max-steps``...). The model is
written whole to ``--output-dir`` at the end, with its tokenizer, its
compute record and ``training_log.jsonl``; every gengym command then takes
that folder as ``--model``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train a small Llama-style model from scratch on compact GeneralPoints-L oracle play (CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.pretrain.pretrain_config import PretrainConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of PretrainConfig settings")
    add_config_arguments(parser, PretrainConfig)


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError, resolve_config
    from trainers.pretrain.pretrain_config import PretrainConfig

    try:
        config = resolve_config(PretrainConfig, config_file=args.config, args=args)
    except ConfigError as err:
        print(f"gengym pretrain: {err}", file=sys.stderr)
        return 2
    from trainers.pretrain.pretrain_trainer import train_pretrain

    command = "gengym pretrain " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else None
    try:
        out = train_pretrain(config, command=command)
    except ConfigError as err:
        print(f"gengym pretrain: {err}", file=sys.stderr)
        return 2
    print(f"final model: {out}")
    return 0
