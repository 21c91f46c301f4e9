"""``gengym data``: write an oracle SFT dataset of a gengym env to disk.

Every example is an answer the env's verifier accepted (single-turn optimal
answers, the paper's SFT data, or with ``--multi-turn`` revision dialogues:
a rejected answer, the verifier's feedback and the corrected answer). The
folder is written with ``Dataset.save_to_disk``; read it back with
``datasets.load_from_disk`` or pass it to ``gengym sft --dataset``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gengym_core.run_safety import output_lock, replace_folder

HELP = "write oracle SFT data (verified optimal answers or revision dialogues) of an env to disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainers.common.cli_support import add_env_kwarg_argument

    parser.add_argument("--env", required=True, help="gengym env id, e.g. GeneralPoints-VL-v0")
    parser.add_argument("--n", type=int, required=True, help="number of examples")
    parser.add_argument("--out", type=Path, required=True, help="output folder (save_to_disk format)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; episodes are reset with seeds derived from it")
    parser.add_argument(
        "--variant",
        default="",
        help="evaluation variant of the env id to draw from (id, rule-ood, visual-ood)",
    )
    add_env_kwarg_argument(
        parser,
        "extra gym.make keyword argument (repeatable; JSON values), e.g. face_card_values=[11,12,13]",
        dest="env_kwargs",
    )
    parser.add_argument(
        "--multi-turn",
        action="store_true",
        help="revision dialogues: a wrong answer, the verifier's feedback, then the corrected answer",
    )
    parser.add_argument(
        "--wrong-verdict",
        default="",
        help="verdict category of the wrong answers with --multi-turn (e.g. wrong_value); default: random",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the gengym data folder at --out (never another folder)"
    )
    parser.add_argument(
        "--verify", action="store_true", help="read the written folder back and re-verify every example"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from gengym_core.play import parse_env_kwargs

    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        from trainers.data.oracle import OracleDataConfig

        config = OracleDataConfig(
            env_id=args.env,
            num_examples=args.n,
            seed=args.seed,
            env_kwargs=env_kwargs,
            variant=args.variant,
            multi_turn=args.multi_turn,
            wrong_verdict=args.wrong_verdict,
        )
        config.make_kwargs()  # unknown env id or variant: fail before any work
    except ValueError as err:
        print(f"gengym data: {err}", file=sys.stderr)
        return 2
    out: Path = args.out
    with output_lock(out, beside=True):
        return _write(args, config, out)


def _write(args: argparse.Namespace, config, out: Path) -> int:
    """Build the examples and put them in ``out`` (whole: written beside, then renamed in)."""
    from trainers.common.cli_support import check_output_folder, saved_dataset_problem
    from trainers.data.oracle import (
        OracleError,
        build_oracle_dataset,
        features,
        save_oracle_dataset,
    )

    check_output_folder(
        out,
        overwrite=args.overwrite,
        kind="gengym data folder",
        not_ours=lambda folder: saved_dataset_problem(folder, list(features())),
    )
    try:
        dataset = build_oracle_dataset(config, progress=not args.no_progress)
    except ValueError as err:
        print(f"gengym data: {err}", file=sys.stderr)
        return 2
    except OracleError as err:
        print(f"gengym data: nothing written, the env broke its oracle contract: {err}", file=sys.stderr)
        return 1
    replace_folder(out, lambda tmp: save_oracle_dataset(dataset, tmp))
    episodes = len(set(dataset["episode"]))
    print(f"wrote {len(dataset)} verified examples from {episodes} episodes of {config.env_id} to {out}")
    if args.verify:
        from datasets import load_from_disk

        from trainers.data.oracle import verify_dataset

        failures = verify_dataset(load_from_disk(str(out)), progress=not args.no_progress)
        if failures:
            for row, problems in list(failures.items())[:10]:
                print(f"row {row}: {'; '.join(problems)}", file=sys.stderr)
            print(f"gengym data: {len(failures)} of {len(dataset)} examples failed re-verification", file=sys.stderr)
            return 1
        print(f"re-verified all {len(dataset)} examples")
    return 0
