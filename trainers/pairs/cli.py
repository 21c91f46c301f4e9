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

from gengym_core.run_safety import output_lock, replace_folder

HELP = "write preference pairs (verifier-accepted vs refused answers) of an env to disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import ENV_FIELDS, add_env_kwarg_argument
    from trainers.common.config import add_config_arguments
    from trainers.pairs.config import PairsConfig

    parser.add_argument("--config", type=Path, default=None, help="YAML file of PairsConfig settings")
    parser.add_argument("--env", dest="env_id", default=None, help="gengym env id, e.g. GeneralPoints-L-v0")
    parser.add_argument("--n", dest="num_pairs", type=int, default=None, help="number of pairs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (save_to_disk format)")
    add_env_kwarg_argument(parser, "extra gym.make keyword argument (repeatable; JSON values)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the gengym pairs folder at --out (never another folder)"
    )
    add_config_arguments(parser, PairsConfig, skip=(*ENV_FIELDS, "num_pairs"))


def resolve(args: argparse.Namespace):
    """The config from defaults, the YAML file and the flags (raises ConfigError)."""
    from trainers.common.cli_support import resolve_command_config
    from trainers.common.config import ConfigError
    from trainers.pairs.build import env_shows_images
    from trainers.pairs.config import PairsConfig

    config = resolve_command_config(PairsConfig, args)
    try:
        shows_images = env_shows_images(config)  # unknown env id, variant or option: fail before any work
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if config.model:  # a model that cannot read the prompts fails before its weights load
        from trainers.common.hf_trainer_support import check_model_kind

        check_model_kind(
            config.model,
            trust_remote_code=False,
            has_images=shows_images,
            data=f"the prompts of {config.env_id}",
            not_generative="pairs are sampled from generative models only",
            text_only_hint="sample from a vision-language model, or use the env's text mode (e.g. GeneralPoints-L-v0)",
        )
    return config


def run(args: argparse.Namespace) -> int:
    from trainers.common.config import ConfigError

    try:
        config = resolve(args)
    except ConfigError as err:
        print(f"gengym pairs: {err}", file=sys.stderr)
        return 2
    out: Path = args.out
    with output_lock(out, beside=True):
        return _write(args, config, out)


def _write(args: argparse.Namespace, config, out: Path) -> int:
    """Build the pairs and put them in ``out`` (whole: written beside, then renamed in)."""
    from trainers.common.cli_support import check_output_folder, saved_dataset_problem
    from trainers.pairs.build import PAIRS_INFO, build_pairs_dataset, features, save_pairs_dataset

    check_output_folder(
        out,
        overwrite=args.overwrite,
        kind="gengym pairs folder",
        not_ours=lambda folder: saved_dataset_problem(folder, list(features()), extra_files=[PAIRS_INFO]),
    )
    try:
        dataset, info = build_pairs_dataset(config, progress=config.progress_bar)
    except ValueError as err:
        print(f"gengym pairs: {err}", file=sys.stderr)
        return 2
    replace_folder(out, lambda tmp: save_pairs_dataset(dataset, info, tmp))
    categories = ", ".join(f"{k} {v}" for k, v in info["rejected_verdicts"].items())
    print(f"wrote {len(dataset)} re-verified pairs of {config.env_id} ({info['source']}) to {out}")
    print(f"rejected answers: {categories}")
    if info["skipped_states"]:
        print(f"skipped {info['skipped_states']} of {info['states']} states (no usable sample on one side)")
    return 0
