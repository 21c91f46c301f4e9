"""gengym's single-turn view as reasoning-gym datasets.

Importing this module registers one reasoning-gym dataset per text gengym
env, named ``"gengym:<id>"``::

    import reasoning_gym
    import gengym_integrations.reasoning_gym  # registers gengym:GeneralPoints-L-v0, gengym:VIRL-L-v0

    data = reasoning_gym.create_dataset("gengym:VIRL-L-v0", seed=0, size=1000, variant="rule-ood")
    entry = data[17]                                  # random access: a pure function of (seed, 17)
    score = data.score_answer(model(entry["question"]), entry)   # in [0, 1]

Entry ``i`` is one task step of episode ``i``
(:func:`gengym_core.single_turn.single_turn_task`): its ``question`` is the
env's prompt at that step (V-IRL: the self-contained prompt with the
instructions, history and current observation), ``answer`` the oracle's
answer, and ``metadata`` holds ``source_dataset``, ``source_index``, the env
id, variant and options, the episode seed, the step, and the frozen verifier
(``verifier``, JSON). ``steps="random"`` (default) draws the step of each
episode (V-IRL: any rail point), ``steps="first"`` keeps start states.

Scores follow reasoning-gym's convention, a number in [0, 1]: 1.0 exactly
for an answer the env accepts; otherwise the env's reward mapped linearly
from the worst reward of the env's reward table (0.0) to the reward of a
correct answer (1.0), so a legal but wrong formula scores above an
unreadable answer. ``dataset.env_reward(answer, entry)`` gives the env's own
reward. Image ("VL") envs are not registered: a reasoning-gym entry is text.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from gengym_core.registry import gengym_env_ids, make
from gengym_core.single_turn import resolve_env_kwargs, scorer_from_json, single_turn_task
from gengym_integrations import require

require("reasoning_gym", "reasoning-gym")

from reasoning_gym.dataset import ProceduralDataset  # noqa: E402
from reasoning_gym.factory import DATASETS, register_dataset  # noqa: E402

#: Prefix of the dataset names.
PREFIX = "gengym:"


@dataclass
class GengymTaskConfig:
    """A reasoning-gym dataset of single-turn gengym tasks.

    Attributes:
        env_id: The gengym env id (each registered name sets its own default).
        variant: An evaluation variant of the id (``"id"``, ``"rule-ood"``) or ``""``.
        env_kwargs: Extra ``gym.make`` keyword arguments.
        steps: ``"random"`` (one drawn task step per episode) or ``"first"``.
        seed: Seed of the task set (``None``: a random one, as in reasoning-gym).
        size: Number of entries.
    """

    env_id: str = "GeneralPoints-L-v0"
    variant: str = ""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: str = "random"
    seed: int | None = None
    size: int = 500

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.env_id not in text_env_ids():
            raise ValueError(f"env_id must be a text gengym env ({', '.join(text_env_ids())}), got {self.env_id!r}")
        if self.steps not in ("random", "first"):
            raise ValueError(f"steps must be 'random' or 'first', got {self.steps!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        resolve_env_kwargs(self.env_id, self.env_kwargs, self.variant)


class GengymDataset(ProceduralDataset):
    """Single-turn gengym tasks as a reasoning-gym procedural dataset (see the module docstring)."""

    def __init__(self, config: GengymTaskConfig) -> None:
        super().__init__(config=config, seed=config.seed, size=config.size)
        self._kwargs = resolve_env_kwargs(config.env_id, config.env_kwargs, config.variant)
        self._env = make(config.env_id, **self._kwargs)
        self.name = PREFIX + config.env_id

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < self.size:
            raise IndexError(f"index {idx!r} out of range for {self.size} entries")
        cfg = self.config
        task = single_turn_task(
            self._env, idx, env_id=cfg.env_id, env_kwargs=self._kwargs, seed=self.seed,
            step=0 if cfg.steps == "first" else "random",
        )
        return {
            "question": task.prompt,
            "answer": task.oracle_answer,
            "metadata": {
                "source_dataset": self.name,
                "source_index": idx,
                "env_id": cfg.env_id,
                "variant": cfg.variant,
                "env_kwargs": json.dumps(self._kwargs, sort_keys=True),
                "episode_seed": task.episode_seed,
                "step": task.step,
                "verifier": task.scorer.to_json(),
            },
        }

    def env_reward(self, answer: Any, entry: dict[str, Any]) -> float:
        """The env's own reward for ``answer`` to ``entry`` (first attempt at that step)."""
        return scorer_from_json(entry["metadata"]["verifier"])(answer)

    def score_answer(self, answer: str | None, entry: dict[str, Any]) -> float:
        """reasoning-gym's score in [0, 1]: 1.0 when accepted, else the reward rescaled."""
        scorer = scorer_from_json(entry["metadata"]["verifier"])
        judged = scorer.judge("" if answer is None else answer)
        if judged.verdict == "correct":
            return 1.0
        rewards = [v for v in dict(scorer.rewards).values() if v is not None]
        best, worst = float(scorer.rewards["correct"]), float(min(rewards))
        if best <= worst:
            return 0.0
        return min(max((judged.reward - worst) / (best - worst), 0.0), 1.0)


def text_env_ids() -> list[str]:
    """The gengym ids whose observations are text only (the ones registered here)."""
    ids = []
    for env_id in gengym_env_ids():
        env = make(env_id)
        if "image" not in getattr(env.observation_space, "spaces", {}):
            ids.append(env_id)
        env.close()
    return ids


def register_all() -> list[str]:
    """Register ``gengym:<id>`` for every text gengym id not registered yet; return the names."""
    names = []
    for env_id in text_env_ids():
        name = PREFIX + env_id
        if name not in DATASETS:
            config_cls = dataclasses.make_dataclass(
                f"GengymTaskConfig_{env_id.replace('-', '_')}",
                [("env_id", str, field(default=env_id))],
                bases=(GengymTaskConfig,),
            )
            register_dataset(name, GengymDataset, config_cls)
        names.append(name)
    return names


DATASET_NAMES: list[str] = register_all()
