"""Metrics of an evaluation, as pure functions of episode records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at
    0 or ``trials`` successes, which is where small evaluations of weak or
    strong models land.

    Example:
        >>> lo, hi = wilson_interval(8, 10)
        >>> round(lo, 4), round(hi, 4)
        (0.4902, 0.9433)
        >>> wilson_interval(0, 0)
        (0.0, 1.0)
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeRecord:
    """What one evaluated episode produced."""

    seed: int
    success: bool
    episode_return: float
    turns: int
    verdicts: list[str]
    recognition: list[bool] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)


def summarize(episodes: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Per-variant metrics of a list of episodes.

    * ``success_rate`` with its 95% Wilson interval ``success_ci``;
    * ``per_step_accuracy``: share of answers judged correct (the paper's
      V-IRL metric: each rail point is a step). Every env step counts, the
      call that ends an episode over its budget (verdict ``budget``)
      included, as in PPO's ``env/per_step_accuracy``;
    * ``recognition_accuracy``: share of answers that reported the image
      correctly (VL envs; ``None`` when no answer was judged on it);
    * ``mean_attempts``: answers per episode, the ``budget`` call included;
    * ``mean_return`` and ``verdicts``: share of answers per verdict category.
    """
    n = len(episodes)
    wins = sum(e.success for e in episodes)
    steps = [v for e in episodes for v in e.verdicts]
    recog = [r for e in episodes for r in e.recognition]
    counts = Counter(steps)
    lo, hi = wilson_interval(wins, n)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "success_ci": [lo, hi],
        "per_step_accuracy": counts.get("correct", 0) / len(steps) if steps else 0.0,
        "recognition_accuracy": (sum(recog) / len(recog)) if recog else None,
        "mean_attempts": (sum(e.turns for e in episodes) / n) if n else 0.0,
        "mean_return": (sum(e.episode_return for e in episodes) / n) if n else 0.0,
        "verdicts": {k: counts[k] / len(steps) for k in sorted(counts)},
    }
