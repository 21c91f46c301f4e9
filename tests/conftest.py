"""Shared pytest fixtures for the whole gengym suite.

Tests never touch the network: the Hugging Face hub is switched offline for
the session before anything imports ``transformers``, and every model a test
needs is a tiny one built from code (:mod:`trainers.testing.tiny_models`).

This module stays cheap to import (no torch), so env tests do not pay for the
training stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any test module imports huggingface_hub / transformers, which
# read these once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One compute thread per test process: the suite runs one process per core
# (pytest -n 2), and tiny models spend far more time synchronising threads
# than computing (a tiny matmul goes from milliseconds to microseconds).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory):
    """Factory ``tiny_model_path(family) -> Path`` of a built tiny checkpoint.

    Each family is built once per test session (per xdist worker) into a
    temporary directory, with seed 0. A family this environment cannot build
    (Qwen2-VL without torchvision) skips the calling test with the reason.
    """
    from trainers.testing.tiny_models import build_tiny_model, missing_requirement

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        reason = missing_requirement(family)
        if reason is not None:
            pytest.skip(f"tiny {family}: {reason}")
        if family not in built:
            built[family] = build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    """Factory ``tiny_model(family) -> LoadedModel``, loaded once per session.

    The model is in eval mode and shared between tests: do not train it or
    change its processor in place (load your own with
    :func:`trainers.common.modeling.load_model_and_processor` for that).
    """
    from trainers.common.modeling import load_model_and_processor

    loaded: dict[str, object] = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_model_and_processor(tiny_model_path(family))
        return loaded[family]

    return get
