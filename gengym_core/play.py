"""Play episodes of a gengym env with the built-in oracle and show every turn.

Prints each prompt, the oracle's answer and the verifier's verdict, saves the
rendered images (VL envs) and writes the episode transcript as Markdown and
JSON, so a user can see exactly what a model would be shown and asked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from gengym_core.run_safety import atomic_write_text

HELP = "play episodes with the built-in oracle; print prompts and verdicts, save images"


def parse_env_kwargs(pairs: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are read as JSON when they parse, else as text.

    Example:
        >>> parse_env_kwargs(["face_card_value=11", "suit_colors=red", "x=[1, 2]"])
        {'face_card_value': 11, 'suit_colors': 'red', 'x': [1, 2]}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="GeneralPoints-VL-v0", help="env id")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--episodes", type=int, default=1, help="number of episodes")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for images and transcripts (none: print only)"
    )
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument (repeatable), e.g. face_card_values=[11,12,13]",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the per-episode summary")


def play_episode(env, seed: int, out: Path | None, log=print) -> dict[str, Any]:
    """Run one oracle episode; return a summary with the transcript."""
    import numpy as np
    from PIL import Image

    obs, info = env.reset(seed=seed)
    core = env.unwrapped
    images: list[str] = []
    total, step = 0.0, 0
    while True:
        if "image" in obs and out is not None:
            path = out / f"seed{seed}_step{step:02d}.png"
            Image.fromarray(np.asarray(obs["image"])).save(path)
            images.append(path.name)
        log(f"--- prompt (step {step}) ---\n{obs['text']}")
        answer = core.oracle_answer()
        log(f"--- oracle answer ---\n{answer}")
        obs, reward, terminated, truncated, info = env.step(answer)
        total += float(reward)
        log(f"--- verdict: {info['verdict']} (reward {float(reward):+g}) ---\n{info['feedback']}")
        step += 1
        if terminated or truncated:
            break
    return {
        "seed": seed,
        "steps": step,
        "return": total,
        "success": bool(info.get("success", False)),
        "images": images,
        "transcript": core.transcript(),
    }


def _markdown(env_id: str, episode: dict[str, Any]) -> str:
    lines = [f"# {env_id}, seed {episode['seed']}", ""]
    lines.append(
        f"Oracle episode: {episode['steps']} step(s), return {episode['return']:+g}, "
        f"success {episode['success']}."
    )
    for name in episode["images"]:
        lines += ["", f"![{name}]({name})"]
    for i, turn in enumerate(episode["transcript"]):
        lines += ["", f"## Turn {i + 1}", "", "Prompt:", "", "```text", turn["prompt"], "```"]
        lines += ["", "Answer:", "", "```json", turn["answer"], "```"]
        lines += ["", f"Verdict: **{turn['verdict']}**, reward {turn['reward']:+g}. {turn['feedback']}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from gengym_core.registry import make
    from gengym_core.run_safety import CommandError, output_lock

    if args.episodes < 1:
        raise CommandError("--episodes must be at least 1")
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    try:
        env = make(args.env, **parse_env_kwargs(args.env_kwargs))
    except ValueError as err:  # an unknown id or option, or a bad value (--env-kwarg)
        raise CommandError(str(err)) from None
    with env, output_lock(args.out) if args.out is not None else contextlib.nullcontext():
        return _play(env, args)


def _play(env, args: argparse.Namespace) -> int:
    log = (lambda *_: None) if args.quiet else print
    successes = 0
    for k in range(args.episodes):
        seed = args.seed + k
        episode = play_episode(env, seed, args.out, log=log)
        successes += episode["success"]
        print(
            f"episode seed={seed}: {episode['steps']} step(s), return {episode['return']:+g}, "
            f"success={episode['success']}"
        )
        if args.out is not None:
            stem = args.out / f"seed{seed}"
            atomic_write_text(stem.with_suffix(".json"), json.dumps(episode, indent=2))
            atomic_write_text(stem.with_suffix(".md"), _markdown(args.env, episode))
    if args.out is not None:
        print(f"wrote transcripts and images to {args.out}")
    print(f"oracle success: {successes}/{args.episodes}")
    return 0 if successes == args.episodes else 1
