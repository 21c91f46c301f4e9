"""The paper's figures, drawn with matplotlib from evaluation records.

Every function takes plain records -- dicts with ``series`` (e.g. ``"sft"``,
``"rl"``), ``gflops`` and ``variants`` (variant name -> metrics as written by
:func:`trainers.eval.stats.summarize`) -- and writes one PNG. Nothing here
trains or evaluates, so the plots can be redrawn from ``results.jsonl`` at
any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Colours and labels of the series the runner produces.
SERIES_STYLE: dict[str, tuple[str, str]] = {
    "sft": ("#d62728", "SFT"),
    "rl": ("#1f77b4", "RL (PPO)"),
    "rl-no-sft": ("#7f7f7f", "RL without SFT"),
}

VARIANT_TITLES = {"id": "in distribution", "rule-ood": "rule OOD", "visual-ood": "visual OOD"}


def headline_metric(env_id: str) -> tuple[str, str]:
    """The metric the paper plots for an env: GP success rate, V-IRL per-step accuracy."""
    if env_id.startswith("VIRL"):
        return "per_step_accuracy", "per-step accuracy (%)"
    return "success_rate", "success rate (%)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["gflops"]):
        out.setdefault(r["series"], []).append(r)
    return out


def _style(name: str, index: int) -> tuple[str, str]:
    if name in SERIES_STYLE:
        return SERIES_STYLE[name]
    palette = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    return palette[index % len(palette)], name


def plot_success_vs_compute(
    records: Sequence[dict[str, Any]], env_id: str, path: str | Path, *, title: str | None = None
) -> Path:
    """One panel per variant: the headline metric against training GFLOPs, a line per series."""
    plt = _pyplot()
    metric, ylabel = headline_metric(env_id)
    variants = sorted({v for r in records for v in r["variants"]}, key=lambda v: list(VARIANT_TITLES).index(v) if v in VARIANT_TITLES else 99)
    fig, axes = plt.subplots(1, max(1, len(variants)), figsize=(4.2 * max(1, len(variants)), 3.6), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=False):
        for k, (name, points) in enumerate(_series(records).items()):
            pts = [p for p in points if variant in p["variants"]]
            if not pts:
                continue
            colour, label = _style(name, k)
            xs = [p["gflops"] for p in pts]
            ys = [100 * p["variants"][variant][metric] for p in pts]
            ax.plot(xs, ys, marker="o", color=colour, label=label)
            if metric == "success_rate":
                lo = [100 * p["variants"][variant]["success_ci"][0] for p in pts]
                hi = [100 * p["variants"][variant]["success_ci"][1] for p in pts]
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, linewidth=0)
        ax.set_title(VARIANT_TITLES.get(variant, variant))
        ax.set_xlabel("training compute (GFLOPs)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize="small")
    fig.suptitle(title or f"{env_id}: SFT vs RL")
    return _save(fig, path)


def plot_recognition_vs_success(records: Sequence[dict[str, Any]], env_id: str, path: str | Path) -> Path:
    """Recognition accuracy against the headline metric, every evaluated checkpoint a point."""
    plt = _pyplot()
    metric, ylabel = headline_metric(env_id)
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    for k, (name, points) in enumerate(_series(records).items()):
        colour, label = _style(name, k)
        xs, ys = [], []
        for p in points:
            for m in p["variants"].values():
                if m.get("recognition_accuracy") is not None:
                    xs.append(100 * m["recognition_accuracy"])
                    ys.append(100 * m[metric])
        if xs:
            ax.scatter(xs, ys, color=colour, label=label, alpha=0.8)
    ax.set_xlabel("recognition accuracy (%)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{env_id}: recognition vs success")
    return _save(fig, path)


def plot_verification_ablation(
    runs: dict[int, Sequence[dict[str, Any]]], env_id: str, variant: str, path: str | Path
) -> Path:
    """Headline metric on ``variant`` against compute, one line per verification budget."""
    plt = _pyplot()
    metric, ylabel = headline_metric(env_id)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    cmap = plt.get_cmap("viridis")
    budgets = sorted(runs)
    for k, budget in enumerate(budgets):
        pts = sorted((p for p in runs[budget] if variant in p["variants"]), key=lambda p: p["gflops"])
        if not pts:
            continue
        ax.plot(
            [p["gflops"] for p in pts],
            [100 * p["variants"][variant][metric] for p in pts],
            marker="o",
            color=cmap(k / max(1, len(budgets) - 1)),
            label=f"VIter {budget}",
        )
    ax.set_xlabel("training compute (GFLOPs)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{env_id}: verification iterations ({VARIANT_TITLES.get(variant, variant)})")
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
