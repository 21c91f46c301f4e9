"""Settings of a preference-pair dataset (``gengym pairs``), checked before any work.

A pair is one env state (the prompt and images the policy would see) with a
*chosen* answer the env's verifier accepts there and a *rejected* answer it
refuses there. Two sources:

* **oracle** (no ``model``): the chosen answer is the env's oracle answer and
  the rejected one a well-formed wrong answer of a named error category
  (:meth:`~gengym_core.protocol.GengymEnv.sample_wrong_answer`: wrong value,
  wrong numbers, wrong cards, illegal formula, wrong action...). Cheap and
  deterministic; the categories rotate so each is equally common.
* **model**: ``samples_per_state`` answers are sampled from ``model`` at each
  state and labelled by the verifier; the chosen answer is one it accepts,
  the rejected one the refused answer with the lowest reward. States where
  the model has no accepted (or no refused) answer take the oracle's (or a
  sampled wrong) answer instead, or are skipped (``fallback``).

This module imports nothing heavy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from trainers.common.config import raise_config_errors
from trainers.common.prompting import DEFAULT_PROMPT_FORMAT, PROMPT_FORMATS


@dataclass
class PairsConfig:
    """What preference pairs to build (every field is also a ``gengym pairs`` flag)."""

    env_id: str = field(default="", metadata={"help": "gengym env id whose states the pairs come from."})
    num_pairs: int = field(default=1000, metadata={"help": "Pairs to write."})
    seed: int = field(
        default=0, metadata={"help": "Seed of the dataset: episode resets, wrong answers and sampling derive from it."}
    )
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra gym.make keyword arguments (applied on top of the variant's)."},
    )
    variant: str = field(
        default="", metadata={"help": "Evaluation variant of the env id to draw states from (id, rule-ood, visual-ood)."}
    )
    prompt_format: Literal["observation", "chat"] = field(
        default=DEFAULT_PROMPT_FORMAT,
        metadata={
            "help": "How the prompt is stored: observation (one user turn holding the env's observation, as PPO "
            "and evaluation show it by default) or chat (the env's multi-turn conversation)."
        },
    )
    revision_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of pairs taken at a revision state: after one wrong answer and the verifier's "
            "feedback, as the policy meets it in multi-turn RL."
        },
    )
    rejected_verdicts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Error categories of the oracle's rejected answers, in rotation (e.g. wrong_value,illegal); "
            "empty = every category the env family has."
        },
    )

    # ------------------------------------------------------------ sampling from a model
    model: str = field(
        default="",
        metadata={"help": "Sample the answers from this checkpoint (path, hub id or tiny:gp-l); empty = oracle pairs."},
    )
    samples_per_state: int = field(default=4, metadata={"help": "Answers sampled from the model at each state."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (must be > 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest sampled answer in tokens."})
    max_prompt_length: int = field(
        default=8192, metadata={"help": "Longest prompt in tokens (image tokens included); longer ones stop with an error."}
    )
    batch_size: int = field(default=8, metadata={"help": "Answers generated in one batch."})
    fallback: Literal["oracle", "skip"] = field(
        default="oracle",
        metadata={
            "help": "When the model's samples at a state hold no accepted (or no refused) answer: oracle = take "
            "the oracle's answer (or a sampled wrong answer) for that side; skip = drop the state."
        },
    )
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "Where the sampling model runs."})
    dtype: Literal["auto", "bfloat16", "float32"] = field(
        default="auto", metadata={"help": "Sampling precision: auto = bfloat16 on capable GPUs, else float32."}
    )
    progress_bar: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self) -> None:
        from trainers.models import resolve_model_spec

        # A shipped model (tiny:gp-l) is its folder inside the package from here on.
        self.model = resolve_model_spec(self.model)
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = []
        if not isinstance(self.env_id, str) or not self.env_id:
            errors.append("env_id must name a gengym env, e.g. GeneralPoints-L-v0")
        if self.num_pairs < 1:
            errors.append(f"num_pairs must be at least 1, got {self.num_pairs}")
        if self.seed < 0:
            errors.append(f"seed must be >= 0, got {self.seed}")
        if not isinstance(self.env_kwargs, dict):
            errors.append("env_kwargs must be a mapping")
        else:
            try:
                json.dumps(self.env_kwargs)
            except TypeError as err:
                errors.append(f"env_kwargs must be JSON-serialisable (they are stored with the pairs): {err}")
        if self.prompt_format not in PROMPT_FORMATS:
            errors.append(f"prompt_format must be one of {PROMPT_FORMATS}")
        if not 0.0 <= self.revision_share <= 1.0:
            errors.append(f"revision_share must be in [0, 1], got {self.revision_share}")
        if any(v in ("correct", "budget") or not v for v in self.rejected_verdicts):
            errors.append("rejected_verdicts name error categories; 'correct' and 'budget' are not answer errors")
        if self.model and self.rejected_verdicts:
            errors.append(
                "rejected_verdicts choose the oracle's wrong answers; with a model the verifier labels the samples "
                "(drop one of them)"
            )
        if self.samples_per_state < 1 or self.batch_size < 1:
            errors.append("samples_per_state and batch_size must be at least 1")
        if self.model and self.samples_per_state < 2 and self.fallback == "skip":
            errors.append("one sample per state can never give both sides of a pair; sample more or use fallback=oracle")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            errors.append("temperature must be > 0 (pairs need varied samples) and top_p in (0, 1]")
        if self.max_new_tokens < 1 or self.max_prompt_length < 1:
            errors.append("max_new_tokens and max_prompt_length must be positive")
        raise_config_errors("invalid pair settings", errors)

    @property
    def source(self) -> str:
        """``"model"`` when answers are sampled from a model, else ``"oracle"``."""
        return "model" if self.model else "oracle"

    def make_kwargs(self) -> dict[str, Any]:
        """The ``gym.make`` kwargs: the variant's, then ``env_kwargs`` on top.

        Raises:
            ValueError: Unknown env id or a variant the id does not have.
        """
        from gengym_core.single_turn import resolve_env_kwargs

        return resolve_env_kwargs(self.env_id, self.env_kwargs, self.variant)
