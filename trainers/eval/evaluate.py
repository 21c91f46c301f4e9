"""Run an agent through fixed episodes of each evaluation variant.

Episodes are a pure function of ``(seed, variant, episode index)``, and the
agent answers ``batch_size`` envs at a time, with sequential revision: a
wrong answer gets the verifier's feedback and another try, until success or
the env's budget. Two runs with the same settings agree exactly (greedy
decoding; with sampling, the same seed).

Output (see :func:`write_report`): ``metrics.json``, ``report.md`` and, per
variant, transcripts of the first episodes with their images for VL envs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gengym_core.registry import make, variants_of
from trainers.common.prompting import DEFAULT_PROMPT_FORMAT
from trainers.eval.agents import Agent
from trainers.eval.stats import EpisodeRecord, summarize


@dataclass
class EvalResult:
    """Metrics and episodes of one evaluation, per variant."""

    env_id: str
    agent: str
    metrics: dict[str, dict[str, Any]]
    episodes: dict[str, list[EpisodeRecord]] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "agent": self.agent, "settings": self.settings, "variants": self.metrics}


def episode_seed(seed: int, variant: str, index: int) -> int:
    """The reset seed of episode ``index`` of ``variant`` (stable across runs and machines)."""
    digest = [ord(c) for c in variant]
    return int(np.random.SeedSequence([seed, index, *digest]).generate_state(1)[0] & 0x7FFFFFFF)


def resolve_variants(env_id: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Variant name -> make kwargs; unknown names fail with the list of known ones."""
    known = variants_of(env_id)
    out = {}
    for name in names:
        if name not in known:
            raise ValueError(f"{env_id} has no variant {name!r}; it has: {', '.join(known) or 'none'}")
        out[name] = known[name]
    return out


def env_shows_images(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether the env's observations hold an image (its observation space has an ``image`` key).

    Raises:
        ValueError: Unknown env id, or an option the env does not take.
    """
    env = make(env_id, **env_kwargs)
    try:
        return "image" in getattr(env.observation_space, "spaces", {})
    finally:
        env.close()


def run_episodes(
    agent: Agent,
    env_id: str,
    env_kwargs: dict[str, Any],
    seeds: Sequence[int],
    *,
    batch_size: int = 8,
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
    keep_transcripts: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[EpisodeRecord]:
    """Play one episode per seed, ``batch_size`` envs answered together.

    Args:
        agent: Who answers.
        env_id, env_kwargs: The env and its variant kwargs.
        seeds: Reset seed of each episode, in order; results keep this order.
        batch_size: Envs stepped together (one generation batch).
        prompt_format: ``"observation"`` or ``"chat"``, as in PPO.
        keep_transcripts: Keep the transcript (and first image) of this many
            leading episodes.
        progress: Called with 1 after each finished episode.
    """
    from trainers.common.prompting import turn_prompt

    envs = [make(env_id, **env_kwargs) for _ in range(max(1, min(batch_size, len(seeds))))]
    results: list[EpisodeRecord | None] = [None] * len(seeds)
    pending = list(range(len(seeds)))[::-1]
    slots: list[dict[str, Any] | None] = [None] * len(envs)

    def start(slot: int) -> None:
        index = pending.pop()
        obs, _ = envs[slot].reset(seed=int(seeds[index]))
        slots[slot] = {"index": index, "obs": obs, "ret": 0.0, "verdicts": [], "recog": [], "image": obs.get("image")}

    for slot in range(len(envs)):
        if pending:
            start(slot)
    while any(s is not None for s in slots):
        active = [k for k, s in enumerate(slots) if s is not None]
        prompts = [turn_prompt(envs[k], slots[k]["obs"], prompt_format) for k in active]
        answers = agent.act([envs[k] for k in active], prompts)
        for k, answer in zip(active, answers, strict=True):
            state = slots[k]
            obs, reward, terminated, truncated, info = envs[k].step(answer)
            state["obs"], state["ret"] = obs, state["ret"] + float(reward)
            state["verdicts"].append(str(info.get("verdict")))
            if "recognition_correct" in info:
                # An answer that could not be read did not report the image right.
                state["recog"].append(bool(info["recognition_correct"]))
            if terminated or truncated:
                index = state["index"]
                record = EpisodeRecord(
                    seed=int(seeds[index]),
                    success=bool(info.get("success", False)),
                    episode_return=state["ret"],
                    turns=len(state["verdicts"]),
                    verdicts=state["verdicts"],
                    recognition=state["recog"],
                )
                if index < keep_transcripts:
                    record.transcript = envs[k].unwrapped.transcript()
                    if state["image"] is not None:
                        record.transcript.insert(0, {"image": state["image"]})
                results[index] = record
                slots[k] = None
                if progress is not None:
                    progress(1)
                if pending:
                    start(k)
    for env in envs:
        env.close()
    return [r for r in results if r is not None]


def evaluate(
    agent: Agent,
    env_id: str,
    variants: Sequence[str] = ("id",),
    *,
    episodes: int = 100,
    seed: int = 0,
    batch_size: int = 8,
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
    keep_transcripts: int = 3,
    show_progress: bool = True,
    env_overrides: dict[str, Any] | None = None,
) -> EvalResult:
    """Evaluate ``agent`` on ``episodes`` fixed episodes of each variant.

    ``env_overrides`` are ``gym.make`` kwargs applied on top of every
    variant's own (e.g. ``{"verify_iter": 1}`` for the verification ablation).
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    resolved = resolve_variants(env_id, variants)
    metrics: dict[str, dict[str, Any]] = {}
    records: dict[str, list[EpisodeRecord]] = {}
    for name, kwargs in resolved.items():
        kwargs = {**kwargs, **(env_overrides or {})}
        seeds = [episode_seed(seed, name, i) for i in range(episodes)]
        start = time.perf_counter()
        with tqdm(total=episodes, desc=f"eval {name}", unit="ep", disable=not show_progress, leave=False) as bar:
            eps = run_episodes(
                agent,
                env_id,
                kwargs,
                seeds,
                batch_size=batch_size,
                prompt_format=prompt_format,
                keep_transcripts=keep_transcripts,
                progress=bar.update,
            )
        metrics[name] = summarize(eps) | {"env_kwargs": kwargs, "seconds": time.perf_counter() - start}
        records[name] = eps
    settings = {
        "episodes": episodes,
        "seed": seed,
        "batch_size": batch_size,
        "prompt_format": prompt_format,
        "env_overrides": dict(env_overrides or {}),
    }
    return EvalResult(env_id=env_id, agent=getattr(agent, "name", type(agent).__name__), metrics=metrics, episodes=records, settings=settings)


def write_report(result: EvalResult, output_dir: str | Path) -> Path:
    """Write ``metrics.json``, ``report.md`` and transcripts under ``output_dir``."""
    from PIL import Image

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result.to_json(), indent=2))
    lines = [
        f"# Evaluation of `{result.agent}` on {result.env_id}",
        "",
        f"{result.settings.get('episodes')} episodes per variant, seed {result.settings.get('seed')}, "
        f"prompt format {result.settings.get('prompt_format')}.",
        "",
        "| variant | success | 95% CI | per-step acc. | recognition | attempts | return |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result.metrics.items():
        recog = "-" if m["recognition_accuracy"] is None else f"{100 * m['recognition_accuracy']:.1f}%"
        lo, hi = m["success_ci"]
        lines.append(
            f"| {name} | {100 * m['success_rate']:.1f}% ({m['successes']}/{m['episodes']}) "
            f"| {100 * lo:.1f}-{100 * hi:.1f}% | {100 * m['per_step_accuracy']:.1f}% | {recog} "
            f"| {m['mean_attempts']:.2f} | {m['mean_return']:+.2f} |"
        )
    lines += ["", "Verdicts (share of answers):", ""]
    for name, m in result.metrics.items():
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["verdicts"].items())
        lines.append(f"- {name}: {shares}")
    for name, eps in result.episodes.items():
        for k, ep in enumerate(e for e in eps if e.transcript):
            folder = out / "transcripts" / name
            folder.mkdir(parents=True, exist_ok=True)
            turns = list(ep.transcript)
            if turns and "image" in turns[0]:
                Image.fromarray(np.asarray(turns.pop(0)["image"])).save(folder / f"episode{k}.png")
            (folder / f"episode{k}.json").write_text(json.dumps({"seed": ep.seed, "turns": turns}, indent=2))
            if k == 0:
                lines += ["", f"## Sample transcript: {name}", ""]
                if (folder / f"episode{k}.png").exists():
                    lines += [f"![{name}](transcripts/{name}/episode{k}.png)", ""]
                for turn in turns[:3]:
                    lines += ["```text", str(turn.get("answer", ""))[:600], "```", f"-> {turn.get('verdict')}: {turn.get('feedback', '')}", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
