"""``gengym pairs``: write preference pairs (chosen / rejected answers) of a gengym env to disk.

Without ``--model`` the pairs come from the env's oracle (chosen) and its
wrong-answer sampler (rejected, error categories in rotation); with
``--model`` the answers are sampled from that checkpoint and labelled by the
env's verifier. Every pair is replayed in a fresh env before it is written.
Train on the folder with ``gengym dpo --dataset DIR`` or ``gengym
reward-model --dataset DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write preference pairs (verifier-accepted vs refused answers) of an env to disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.config import add_config_arguments
    from trainers.pairs.config import PairsConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of PairsConfig settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id, e.g. GeneralPoints-L-v0")
    parser.add_argument("--n", dest="num_pairs", type=int, default=None, help="number of pairs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (save_to_disk format)")
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwarg_pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument (repeatable; JSON values)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_config_arguments(parser, PairsConfig, skip=("env_id", "env_kwargs", "num_pairs"))


def resolve(args: argparse.Namespace):
    """The config from defaults, the YAML file and the flags (raises ConfigError)."""
    from gengym_core.play import parse_env_kwargs
    from trainers.common.config import ConfigError, load_yaml, resolve_config
    from trainers.pairs.config import PairsConfig

    overrides = {}
    if args.env_kwarg_pairs:
        base = load_yaml(args.config).get("env_kwargs", {}) if args.config else {}
        try:
            overrides["env_kwargs"] = {**base, **parse_env_kwargs(args.env_kwarg_pairs)}
        except ValueError as err:
            raise ConfigError(f"--env-kwarg: {err}") from None
    config = resolve_config(PairsConfig, config_file=args.config, args=args, overrides=overrides)
    try:
        config.make_kwargs()  # unknown env id or variant: fail before any work
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return config


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError

    try:
        config = resolve(args)
    except ConfigError as err:
        print(f"gengym pairs: {err}", file=sys.stderr)
        return 2
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        print(f"gengym pairs: {out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return 2

    from trainers.pairs.build import build_pairs_dataset, save_pairs_dataset

    try:
        dataset, info = build_pairs_dataset(config, progress=config.progress_bar)
    except ValueError as err:
        print(f"gengym pairs: {err}", file=sys.stderr)
        return 2
    if out.exists() and args.overwrite:
        import shutil

        shutil.rmtree(out) if out.is_dir() else out.unlink()
    save_pairs_dataset(dataset, info, out)
    categories = ", ".join(f"{k} {v}" for k, v in info["rejected_verdicts"].items())
    print(f"wrote {len(dataset)} re-verified pairs of {config.env_id} ({info['source']}) to {out}")
    print(f"rejected answers: {categories}")
    if info["skipped_states"]:
        print(f"skipped {info['skipped_states']} of {info['states']} states (no usable sample on one side)")
    return 0
