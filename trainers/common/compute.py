"""Training compute in FLOPs, as the paper counts it (x axis of its plots).

The paper estimates compute with the usual ``6 N`` FLOPs per token for a
forward and backward pass and ``2 N`` for a forward pass alone:

* SFT: ``X_SFT = 6 N (D_init + D_SFT)``
* RL: ``X_RL = 6 N (D_init + D_RL) + 2 N D_buffer``

``N`` is the number of parameters and every ``D`` a number of tokens. What
each term counts here (the paper names the terms; where it does not spell out
the details, this is our reading):

* ``D_init``: tokens of the SFT run that produced the *initial* checkpoint
  both methods start from (the format warm-up). It is a constant offset, so
  SFT and RL curves begin at the same x.
* ``D_SFT``: tokens passed forward and backward while fine-tuning, counted
  again on every epoch: the non-padding positions of every training batch
  (prompt and answer, image tokens as the language model sees them).
* ``D_RL``: tokens passed forward and backward in PPO updates: prompt plus
  completion of every turn in every minibatch, counted once per PPO epoch
  (4 epochs count each turn 4 times).
* ``D_buffer``: tokens processed by forward passes only while filling the
  rollout buffer: every prompt token (prefill) and every generated token
  once each (the KV cache means no position is computed twice), plus the
  positions of any separate forward-only scoring pass over prompt and
  completion that the loop runs for old log-probs and values.

Token counts are non-padding positions of the language model's input
(``attention_mask.sum()``): a vision encoder's own work is not counted
separately, which is the granularity of the paper's formula.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ComputeTracker",
    "count_parameters",
    "count_tokens",
    "rl_flops",
    "sft_flops",
]


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def sft_flops(num_params: int, init_tokens: int, sft_tokens: int) -> int:
    """``X_SFT = 6 N (D_init + D_SFT)``, exactly, as an int.

    Example:
        >>> sft_flops(10, 2, 3)
        300
    """
    _check_counts(num_params=num_params, init_tokens=init_tokens, sft_tokens=sft_tokens)
    return 6 * num_params * (init_tokens + sft_tokens)


def rl_flops(num_params: int, init_tokens: int, rl_tokens: int, buffer_tokens: int) -> int:
    """``X_RL = 6 N (D_init + D_RL) + 2 N D_buffer``, exactly, as an int.

    Example:
        >>> rl_flops(10, 2, 3, 4)
        380
    """
    _check_counts(
        num_params=num_params, init_tokens=init_tokens, rl_tokens=rl_tokens, buffer_tokens=buffer_tokens
    )
    return 6 * num_params * (init_tokens + rl_tokens) + 2 * num_params * buffer_tokens


def count_tokens(attention_mask: Any) -> int:
    """Non-padding positions in a batch: ``int(attention_mask.sum())``.

    Accepts a tensor, an array or nested lists of 0/1 (or bools).
    """
    total = attention_mask.sum() if hasattr(attention_mask, "sum") else None
    if total is None:
        total = sum(count_tokens(row) if isinstance(row, (list, tuple)) else int(row) for row in attention_mask)
    return int(total)


def count_parameters(
    model: Any, trainable_only: bool = False, exclude: Iterable[Any] = ()
) -> int:
    """``N`` for the compute formula: parameters of the model being trained.

    * Each parameter is counted once, even when tied (input and output
      embeddings) or reachable through several submodules.
    * Parameters partitioned by DeepSpeed ZeRO-3 have an empty local tensor;
      their full size (``ds_numel``) is counted.
    * Frozen copies are left out by not passing them: count the policy (and
      its value head), not a frozen reference model. When such a copy hangs
      inside the module passed, name it in ``exclude``.
    * Frozen parts of the trained model itself (a frozen vision tower, LoRA's
      base weights) are counted by default -- their forward and
      backward-through-activations work is real compute. ``trainable_only``
      counts only parameters with ``requires_grad``.

    Args:
        model: A ``torch.nn.Module`` (anything with ``parameters()``).
        trainable_only: Count only parameters that require gradients.
        exclude: Submodules whose parameters are not counted.

    Returns:
        The parameter count.
    """
    skipped = {id(p) for module in exclude for p in module.parameters()}
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        key = id(param)
        if key in seen or key in skipped:
            continue
        seen.add(key)
        if trainable_only and not param.requires_grad:
            continue
        total += int(getattr(param, "ds_numel", 0) or param.numel())
    return total


@dataclass
class ComputeTracker:
    """Running token counts of one training run and the FLOPs they make.

    The same tracker serves SFT (only ``add_train_tokens``) and RL (both). It
    counts the tokens of *this process*; in a multi-process run, sum the
    counts across processes (or multiply by the world size when every process
    sees equal batches) before plotting.

    Attributes:
        num_params: ``N`` (see :func:`count_parameters`).
        init_tokens: ``D_init``.
        train_tokens: ``D_SFT`` or ``D_RL`` so far.
        buffer_tokens: ``D_buffer`` so far (RL only).

    Example:
        >>> tracker = ComputeTracker(num_params=1_000_000, init_tokens=100)
        >>> tracker.add_buffer_tokens(500)
        >>> tracker.add_train_tokens(2000)
        >>> tracker.gflops
        13.6
    """

    num_params: int
    init_tokens: int = 0
    train_tokens: int = 0
    buffer_tokens: int = 0

    def __post_init__(self) -> None:
        _check_counts(
            num_params=self.num_params,
            init_tokens=self.init_tokens,
            train_tokens=self.train_tokens,
            buffer_tokens=self.buffer_tokens,
        )

    def add_train_tokens(self, tokens: Any) -> None:
        """Add tokens that went forward and backward (an int or an attention mask)."""
        count = tokens if isinstance(tokens, int) else count_tokens(tokens)
        _check_counts(tokens=count)
        self.train_tokens += count

    def add_buffer_tokens(self, tokens: Any) -> None:
        """Add tokens that went forward only (an int or an attention mask)."""
        count = tokens if isinstance(tokens, int) else count_tokens(tokens)
        _check_counts(tokens=count)
        self.buffer_tokens += count

    @property
    def flops(self) -> int:
        """``6 N (D_init + D_train) + 2 N D_buffer``."""
        return rl_flops(self.num_params, self.init_tokens, self.train_tokens, self.buffer_tokens)

    @property
    def gflops(self) -> float:
        """:attr:`flops` in units of 10^9, the paper's x axis."""
        return self.flops / 1e9

    def metrics(self) -> dict[str, float]:
        """Values to log, under ``compute/...`` names."""
        return {
            "compute/gflops": self.gflops,
            "compute/train_tokens": float(self.train_tokens),
            "compute/buffer_tokens": float(self.buffer_tokens),
        }

    def state_dict(self) -> dict[str, int]:
        """Plain ints, for a resumable checkpoint."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counts saved by :meth:`state_dict` (validated)."""
        fields = ("num_params", "init_tokens", "train_tokens", "buffer_tokens")
        unknown = set(state) - set(fields)
        if unknown:
            raise ValueError(f"unknown compute tracker fields: {sorted(unknown)}")
        values = {name: state.get(name, getattr(self, name)) for name in fields}
        _check_counts(**values)
        for name, value in values.items():
            setattr(self, name, value)


#: File beside every checkpoint gengym trains, recording its training compute
#: (written by SFT and PPO; read to chain D_init and by the experiment runner).
TRAINING_RECORD = "gengym_training.json"


def read_training_record(model_path: Any) -> dict[str, Any]:
    """The ``gengym_training.json`` beside a local checkpoint, or ``{}``."""
    import json
    import logging
    from pathlib import Path

    record = Path(str(model_path)) / TRAINING_RECORD
    if not record.is_file():
        return {}
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        logging.getLogger(__name__).warning("ignoring unreadable %s", record)
        return {}
    return data if isinstance(data, dict) else {}


def gflops_of(model_path: Any) -> float:
    """Training compute recorded beside a local checkpoint, in GFLOPs: 0 for a base
    model (no record) or a record whose figure is not a number."""
    try:
        return float(read_training_record(model_path).get("gflops", 0.0))
    except (TypeError, ValueError):
        return 0.0


def init_tokens_of(model_path: Any) -> int:
    """``D_init`` of a run that starts from ``model_path``: every token that made it."""
    record = read_training_record(model_path)
    try:
        return int(record.get("init_tokens", 0)) + int(record.get("train_tokens", 0))
    except (TypeError, ValueError):
        return 0
