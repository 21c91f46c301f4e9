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
