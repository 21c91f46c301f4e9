"""The benchmark scripts run (their figures only mean something on the hardware they target)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ppo_benchmark_tiny_smoke_run(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "ppo.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ppo.py"), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["plain_generate_tokens_per_s"] > 0
    assert figures["update"]["update_tokens_per_s"] > 0 and figures["update"]["rollout_s"] > 0


@pytest.mark.slow
def test_ppo_size_search_tiny_smoke_run(tmp_path):
    """Each attempt runs in its own process and nothing is saved but the figures."""
    pytest.importorskip("torch")
    out = tmp_path / "size.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ppo.py"), "--tiny", "--max-size", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(out.read_text())["max_size"]
    assert found["full"] == found["lora"] == "tiny-2"
    assert [(a["decoder"], a["mode"], a["ok"]) for a in found["attempts"]] == [
        ("tiny-1", "full", True), ("tiny-1", "lora", True), ("tiny-2", "full", True), ("tiny-2", "lora", True)
    ]
    assert all(a["update_tokens_per_s"] > 0 for a in found["attempts"])
