"""``gengym eval``: success rates of a model (or a baseline) on ID and OOD variants.

``--model`` takes a checkpoint path or hub id, or ``oracle`` / ``random`` for
the built-in baselines (these need no training extras). Writes
``metrics.json``, ``report.md`` and sample transcripts to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "evaluate a model or baseline on the paper's ID / rule-OOD / visual-OOD variants"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint path or hub id, or 'oracle' / 'random'")
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
    parser.add_argument("--prompt-format", choices=["observation", "chat"], default="observation")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (paper: 256)")
    parser.add_argument("--backend", default="hf", help="generation backend for models")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--transcripts", type=int, default=3, help="sample transcripts kept per variant")


def run(args: argparse.Namespace) -> int:
    from gengym_core.registry import variants_of
    from trainers.eval.agents import make_agent
    from trainers.eval.evaluate import evaluate, write_report

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
    if args.episodes < 1 or args.batch_size < 1:
        print("gengym eval: --episodes and --batch-size must be at least 1", file=sys.stderr)
        return 2
    agent_kwargs = {"seed": args.seed}
    if args.model not in ("oracle", "random"):
        agent_kwargs.update(
            backend=args.backend,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
        )
    agent = make_agent(args.model, **agent_kwargs)
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
    finally:
        agent.close()
    out = write_report(result, args.output_dir)
    for name, m in result.metrics.items():
        lo, hi = m["success_ci"]
        print(f"{name:>10}: success {100 * m['success_rate']:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]  "
              f"per-step {100 * m['per_step_accuracy']:5.1f}%")
    print(f"report: {out / 'report.md'}")
    return 0
