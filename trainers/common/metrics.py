"""Metrics to JSON Lines and TensorBoard, with grouped names.

Metric names are grouped like cleanrl's (``env/...``, ``losses/...``,
``ppo/...``, ``perf/...``, ``compute/...``). Every call to :meth:`log` writes
one JSON object per line to ``metrics.jsonl`` (the machine-readable record a
resumed run appends to) and, when enabled, the same scalars to TensorBoard.
Only the main process writes.

A resumed run redoes what came after its checkpoint: :meth:`MetricsLogger.truncate_after`
drops those JSONL records, and the TensorBoard writer opened after it marks
the same steps purged, so TensorBoard hides the earlier run's events there
instead of drawing both.
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
        self._writer_class = None
        self._purge_step: int | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            # Imported now, so a missing package fails at the start of a run;
            # the writer itself opens at the first record (see truncate_after).
            from torch.utils.tensorboard import SummaryWriter

            self._writer_class = SummaryWriter

    def _tensorboard(self):
        if self._writer is None and self._writer_class is not None:
            self._writer = self._writer_class(log_dir=str(self.path.parent / "tensorboard"),
                                              purge_step=self._purge_step)
        return self._writer

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` at ``step``; non-finite numbers are written as null."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": int(step), "time": time.time()}
        writer = self._tensorboard()
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
                record[key] = value if math.isfinite(value) else None
                if writer is not None and math.isfinite(value):
                    writer.add_scalar(key, value, step)
            else:
                record[key] = value
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            writer.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites what it redoes).

        TensorBoard events past ``step`` are hidden too: the next writer opens
        with ``purge_step=step + 1`` (one already open is closed first).
        """
        if not self.enabled:
            return
        truncate_jsonl(self.path, "step", step)
        self._purge_step = int(step) + 1
        self.close()

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
