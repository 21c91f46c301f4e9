"""``gengym eval``: success rates of a model (or a baseline) on ID and OOD variants.

``--model`` takes a checkpoint path or hub id, a shipped model (``tiny:gp-l``,
see :mod:`trainers.models`), or ``oracle`` / ``random`` for
the built-in baselines (these need no training extras). Writes
``metrics.json``, ``report.md`` and sample transcripts as ``--output-dir``:
one folder holds one evaluation (an earlier one there is replaced whole
with ``--overwrite``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.common.prompting import DEFAULT_PROMPT_FORMAT, PROMPT_FORMATS

HELP = "evaluate a model or baseline on the paper's ID / rule-OOD / visual-OOD variants"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint path or hub id, a shipped model (tiny:gp-l), or 'oracle' / 'random'")
    parser.add_argument("--env", required=True, help="gengym env id")
    parser.add_argument(
        "--variants",
        default="id",
        help="comma-separated variant names (id, rule-ood, visual-ood) or 'all'",
    )
    parser.add_argument("--episodes", type=int, default=100, help="episodes per variant")
    parser.add_argument("--output-dir", type=Path, required=True, help="where metrics and the report go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes (and of sampling)")
    parser.add_argument("--batch-size", type=int, default=8, help="envs answered in one generation batch")
    parser.add_argument("--prompt-format", choices=list(PROMPT_FORMATS), default=DEFAULT_PROMPT_FORMAT)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (paper: 256)")
    from trainers.generation import available_backends

    parser.add_argument(
        "--generation-backend",
        default="hf",
        choices=available_backends(),
        help="how a model samples its answers (see docs/generation.md)",
    )
    # The flag's earlier spelling, kept for one release.
    parser.add_argument("--backend", dest="old_backend_flag", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--transcripts", type=int, default=3, help="sample transcripts kept per variant")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the earlier evaluation in --output-dir (never another folder)"
    )


def _setting_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the numeric and backend flags (nothing loaded yet)."""
    from trainers.generation import available_backends

    problems = []
    if args.old_backend_flag is not None:
        print("gengym eval: --backend is deprecated; use --generation-backend", file=sys.stderr)
        args.generation_backend = args.old_backend_flag
    if args.episodes < 1 or args.batch_size < 1:
        problems.append("--episodes and --batch-size must be at least 1")
    if args.max_new_tokens < 1:
        problems.append("--max-new-tokens must be at least 1")
    if not args.temperature >= 0:
        problems.append("--temperature must be >= 0 (0 = greedy)")
    if args.transcripts < 0:
        problems.append("--transcripts must be >= 0")
    if args.seed < 0:
        problems.append(f"--seed must be >= 0, got {args.seed}")
    if args.generation_backend not in available_backends():
        problems.append(
            f"--generation-backend must be one of {', '.join(available_backends())}, "
            f"got {args.generation_backend!r}"
        )
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        problems.append(f"--output-dir {out} is a file; give a folder")
    return problems


def run(args: argparse.Namespace) -> int:
    from gengym_core.registry import variants_of
    from gengym_core.run_safety import output_lock
    from trainers.common.cli_support import check_output_folder
    from trainers.eval.evaluate import evaluation_folder_problem

    try:
        known = variants_of(args.env)
    except ValueError as err:
        print(f"gengym eval: {err}", file=sys.stderr)
        return 2
    names = list(known) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        print(f"gengym eval: {args.env} has variants {', '.join(known)}; got {args.variants!r}", file=sys.stderr)
        return 2
    problems = _setting_problems(args)
    if problems:
        print("gengym eval: " + "; ".join(problems), file=sys.stderr)
        return 2
    with output_lock(args.output_dir, beside=True):
        check_output_folder(
            args.output_dir, overwrite=args.overwrite, kind="gengym evaluation", not_ours=evaluation_folder_problem
        )
        return _evaluate(args, names, known)


def _evaluate(args: argparse.Namespace, names: list[str], known: dict) -> int:
    from trainers.eval.evaluate import env_shows_images, evaluate, write_report

    try:
        agent = _make_agent(args, shows_images=any(env_shows_images(args.env, known[n]) for n in names))
    except (ValueError, OSError, ImportError) as err:
        if isinstance(err, ModuleNotFoundError):
            raise  # a missing training extra: `gengym` says which install to run
        print(f"gengym eval: {err}", file=sys.stderr)  # e.g. a backend whose library is not installed
        return 2
    try:
        result = evaluate(
            agent,
            args.env,
            names,
            episodes=args.episodes,
            seed=args.seed,
            batch_size=args.batch_size,
            prompt_format=args.prompt_format,
            keep_transcripts=args.transcripts,
        )
    except ValueError as err:  # e.g. a prompt longer than the model takes
        print(f"gengym eval: {err}", file=sys.stderr)
        return 1
    finally:
        agent.close()
    write_report(result, args.output_dir)
    for name, m in result.metrics.items():
        lo, hi = m["success_ci"]
        print(f"{name:>10}: success {100 * m['success_rate']:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]  "
              f"per-step {100 * m['per_step_accuracy']:5.1f}%")
    print(f"report: {args.output_dir / 'report.md'}")
    return 0


def _make_agent(args: argparse.Namespace, *, shows_images: bool):
    """The baseline, or the model after a check of its config against the env (before any weights load)."""
    from trainers.eval.agents import check_model_for_env, make_agent

    if args.model in ("oracle", "random"):
        return make_agent(args.model, seed=args.seed)
    check_model_for_env(args.model, shows_images=shows_images)
    return make_agent(
        args.model,
        seed=args.seed,
        generation_backend=args.generation_backend,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
    )
