"""MetricsLogger: JSONL records and TensorBoard events of a run that resumes and redoes steps."""

from __future__ import annotations

import pytest

from trainers.common.metrics import MetricsLogger, read_metrics

pytest.importorskip("tensorboard")


def _scalars(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), purge_orphaned_data=True)
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_resumed_run_replaces_redone_steps_in_jsonl_and_tensorboard(tmp_path):
    first = MetricsLogger(tmp_path)
    for step in range(1, 6):
        first.log(step, {"env/return": float(step)})
    first.close()

    # A resume from the checkpoint of step 3 redoes steps 4 and 5 with new values.
    second = MetricsLogger(tmp_path)
    second.truncate_after(3)
    for step in (4, 5):
        second.log(step, {"env/return": 10.0 * step})
    second.close()

    assert [(r["step"], r["env/return"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]
    # TensorBoard shows each step once, the redone ones with their new values.
    assert _scalars(tmp_path / "tensorboard", "env/return") == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]


def test_a_fresh_start_hides_a_killed_run_in_the_same_folder(tmp_path):
    killed = MetricsLogger(tmp_path)
    killed.log(1, {"losses/policy": 0.5})
    killed.close()
    fresh = MetricsLogger(tmp_path)
    fresh.truncate_after(0)
    fresh.log(1, {"losses/policy": 0.25})
    fresh.close()
    assert _scalars(tmp_path / "tensorboard", "losses/policy") == [(1, 0.25)]


def test_disabled_logger_writes_nothing(tmp_path):
    off = MetricsLogger(tmp_path / "run", enabled=False)
    off.log(1, {"a": 1.0})
    off.truncate_after(0)
    off.close()
    assert not (tmp_path / "run").exists()
