"""Metrics to JSON Lines and TensorBoard, with grouped names.

Metric names are grouped like cleanrl's (``env/...``, ``losses/...``,
``ppo/...``, ``perf/...``, ``compute/...``). Every call to :meth:`log` writes
one JSON object per line to ``metrics.jsonl`` (the machine-readable record a
resumed run appends to) and, when enabled, the same scalars to TensorBoard.
Only the main process writes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Writes scalar metrics of a run.

    Args:
        output_dir: The run directory; ``metrics.jsonl`` and ``tensorboard/``
            go inside it.
        tensorboard: Also write TensorBoard event files (needs the
            ``tensorboard`` package).
        enabled: ``False`` on non-main processes: calls become no-ops.
    """

    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` at ``step``; non-finite numbers are written as null."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": int(step), "time": time.time()}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
                record[key] = value if math.isfinite(value) else None
                if self._writer is not None and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            else:
                record[key] = value
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            self._writer.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites what it redoes)."""
        if self.enabled:
            truncate_jsonl(self.path, "step", step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def truncate_jsonl(path: str | Path, key: str, last: int) -> None:
    """Keep the records of a JSONL file whose ``key`` is at most ``last``.

    A blank or torn line (a run killed mid-write) goes too. Nothing happens
    when the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if _number_of(line, key) <= last]
    path.write_text("".join(line + "\n" for line in kept))


def _number_of(line: str, key: str) -> float:
    """``key`` of a JSONL record as a number; infinity for a blank or torn line."""
    try:
        return float(json.loads(line)[key])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return float("inf")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file back (skipping a torn last line)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
