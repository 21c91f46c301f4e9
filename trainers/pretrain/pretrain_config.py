"""Settings of the pretraining stage: a small Llama-style model from scratch on CPU.

The defaults build the model gengym ships as ``tiny:gp-l``
(``examples/mini/pretrain.yaml`` holds the same values): 4 layers, hidden
size 128, 4 heads, MLP 384, tied embeddings (about 0.87 M parameters), trained
with AdamW, a linear warm-up and a cosine decay on oracle play of
GeneralPoints-L in its compact format over a family of rules (see
:mod:`trainers.pretrain.data`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.common.config import raise_config_errors

#: The paper's rule-OOD rule: never trained on by default, at any target.
PAPER_OOD_RULE = [11, 12, 13]


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs."""

    # ---------------------------------------------------------------- run
    output_dir: str = field(
        default="runs/pretrain",
        metadata={"help": "Folder of the trained model (written whole at the end; must not exist yet)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the data, the initial weights and the batch order."})
    progress_bar: bool = field(default=True, metadata={"help": "Show a progress bar."})

    # --------------------------------------------------------------- data
    num_examples: int = field(
        default=80_000, metadata={"help": "Oracle examples generated (each a prompt and a verified answer)."}
    )
    targets: list[int] = field(
        default_factory=lambda: [24, 12, 16, 18, 20, 30, 36],
        metadata={"help": "Targets of the rule family; the first is the paper's (24)."},
    )
    first_target_share: float = field(
        default=0.85, metadata={"help": "Share of examples at the first target; the others share the rest evenly."}
    )
    face_value_min: int = field(default=1, metadata={"help": "Smallest value a J, Q or K may count."})
    face_value_max: int = field(default=13, metadata={"help": "Largest value a J, Q or K may count."})
    excluded_rules: list[list[int]] = field(
        default_factory=lambda: [list(PAPER_OOD_RULE)],
        metadata={"help": "J/Q/K values never trained on, at any target (default: the paper's OOD rule 11/12/13)."},
    )
    id_rule_share: float = field(
        default=0.05,
        metadata={"help": "Extra share of examples under the training rule (J/Q/K count 10) at the first target."},
    )
    revision_share: float = field(
        default=0.2,
        metadata={"help": "Share of examples that follow 1 to max_revisions wrong answers with their feedback."},
    )
    max_revisions: int = field(default=4, metadata={"help": "Most wrong answers before the verified one."})

    # -------------------------------------------------------------- model
    hidden_size: int = field(default=128, metadata={"help": "Width of the residual stream."})
    num_layers: int = field(default=4, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (hidden_size must divide by it)."})
    intermediate_size: int = field(default=384, metadata={"help": "Width of the MLP."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Longest sequence the model takes."})

    # ------------------------------------------------------- optimisation
    max_steps: int = field(default=1200, metadata={"help": "Optimiser steps (batches)."})
    batch_size: int = field(default=64, metadata={"help": "Examples per step."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate of AdamW."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warm-up steps."})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "Learning rate at the end of the cosine, as a share of the peak."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clip norm."})
    threads: int = field(
        default=1,
        metadata={
            "help": "CPU threads of torch (0 = torch's default). One thread is the default: on a shared 2-core "
            "machine two threads waiting on each other ran 10x slower than one."
        },
    )

    # --------------------------------------------------------- monitoring
    log_every: int = field(default=50, metadata={"help": "Steps between lines of training_log.jsonl."})
    eval_every: int = field(
        default=300, metadata={"help": "Steps between quick greedy one-try checks (0 = only at the end)."}
    )
    eval_hands: int = field(default=100, metadata={"help": "Hands per quick check (ID rule and the paper's OOD rule)."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values and combinations; raise :class:`ConfigError` saying what to change."""
        errors = []
        positive = ("num_examples", "max_steps", "batch_size", "hidden_size", "num_layers", "num_heads",
                    "intermediate_size", "log_every", "eval_hands")
        errors += [f"{name} must be at least 1" for name in positive if getattr(self, name) < 1]
        if self.seed < 0:
            errors.append("seed must be >= 0")
        if not self.targets or any(not 1 <= t <= 1000 for t in self.targets):
            errors.append(f"targets must be a non-empty list of numbers in 1..1000, got {self.targets}")
        if not 0 <= self.first_target_share <= 1:
            errors.append("first_target_share must be in [0, 1]")
        if not 1 <= self.face_value_min <= self.face_value_max <= 13:
            errors.append("face values must satisfy 1 <= face_value_min <= face_value_max <= 13")
        for rule in self.excluded_rules:
            if not isinstance(rule, list) or len(rule) != 3:
                errors.append(f"each excluded rule is three values (J, Q, K), got {rule!r}")
        for name in ("id_rule_share", "revision_share"):
            if not 0 <= getattr(self, name) <= 1:
                errors.append(f"{name} must be in [0, 1]")
        if not 1 <= self.max_revisions <= 8:
            errors.append("max_revisions must be 1..8")
        if self.num_heads >= 1 and self.hidden_size % self.num_heads:
            errors.append(f"hidden_size ({self.hidden_size}) must divide by num_heads ({self.num_heads})")
        if self.max_position_embeddings < 64:
            errors.append("max_position_embeddings must be at least 64")
        if not self.learning_rate > 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            errors.append("learning_rate must be > 0, warmup_steps >= 0 and min_lr_ratio in [0, 1]")
        if self.weight_decay < 0 or not self.max_grad_norm > 0:
            errors.append("weight_decay must be >= 0 and max_grad_norm > 0")
        if self.threads < 0 or self.eval_every < 0:
            errors.append("threads and eval_every must be >= 0")
        raise_config_errors("invalid pretraining settings", errors)

    def rules_excluded(self) -> set[tuple[int, int, int]]:
        """The excluded J/Q/K values as tuples."""
        return {tuple(int(v) for v in rule) for rule in self.excluded_rules}  # type: ignore[misc]
