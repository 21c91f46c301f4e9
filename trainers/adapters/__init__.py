"""Adapters that let other RL libraries train on gengym envs.

* :mod:`trainers.adapters.grpo_env` -- any gengym env as an
  ``environment_factory`` env of TRL's ``GRPOTrainer`` (multi-turn, the
  answer submitted through a tool, the env's reward via ``get_reward``);
* :mod:`trainers.adapters.grpo_data` -- the datasets both GRPO setups need
  (tool-mode rows that carry the group's seed; single-turn rows with the
  prompt, images and a frozen verifier) and the reward function of the
  single-turn setup;
* :mod:`trainers.adapters.trl_support` -- the TRL version the adapter is
  written against, checked with a clear error.

The torch-free single-turn view these build on is
:mod:`gengym_core.single_turn`. Names are imported lazily, so
``import trainers.adapters`` loads neither TRL nor datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GengymToolEnv": "trainers.adapters.grpo_env",
    "ToolEnvConfig": "trainers.adapters.grpo_env",
    "tool_env_factory": "trainers.adapters.grpo_env",
    "env_success": "trainers.adapters.grpo_env",
    "RolloutNeeds": "trainers.adapters.grpo_env",
    "suggested_tool_settings": "trainers.adapters.grpo_env",
    "TOOL_INSTRUCTION": "trainers.adapters.grpo_data",
    "tool_prompt_dataset": "trainers.adapters.grpo_data",
    "single_turn_dataset": "trainers.adapters.grpo_data",
    "verifier_reward": "trainers.adapters.grpo_data",
    "completion_text": "trainers.adapters.grpo_data",
    "require_trl_environment_factory": "trainers.adapters.trl_support",
    "TRLVersionError": "trainers.adapters.trl_support",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainers.adapters' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
