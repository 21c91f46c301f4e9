"""The interface every generation backend implements.

A backend takes a batch of already-encoded, left-padded prompts (see
:func:`trainers.common.inputs.encode_prompts`) and returns, per prompt, the
generated token ids, their decoded text, why generation stopped, and the
log-probability of every sampled token.

Log-probabilities are defined the way the PPO update computes them, so that
the two can be compared: ``log_softmax(logits / T)`` of the sampled token,
where ``T`` is the sampling temperature (1 for greedy decoding), *before*
top-k / top-p truncation. Truncation only decides which tokens may be drawn;
the policy whose ratio PPO clips is the temperature-scaled softmax.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FINISH_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are the paper's PPO rollout settings."""

    max_new_tokens: int = field(default=512, metadata={"help": "Most tokens generated per answer."})
    temperature: float = field(
        default=0.2, metadata={"help": "Sampling temperature; 0 means greedy decoding."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1 disables)."})
    top_k: int = field(default=0, metadata={"help": "Keep only the k most likely tokens (0 disables)."})
    stop_strings: tuple[str, ...] = field(
        default=(), metadata={"help": "Stop a sequence once its text contains one of these."}
    )
    seed: int | None = field(
        default=None,
        metadata={"help": "Seed for sampling; the same seed and inputs give the same samples."},
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables), got {self.top_k}")
        if any(not s for s in self.stop_strings):
            raise ValueError("stop_strings must not contain the empty string")
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """The temperature that log-probs are computed at (1 for greedy)."""
        return 1.0 if self.greedy else self.temperature


@dataclass
class Generation:
    """What a backend returns for a batch of ``B`` prompts.

    Attributes:
        token_ids: ``B`` lists of generated token ids, each ending with the
            EOS token when generation stopped on it; tokens after the stop
            point are not included.
        texts: The decoded completions (special tokens skipped), cut at a stop
            string when one ended the sequence (the stop string is kept).
        finish_reasons: ``"eos"``, ``"stop"`` (a stop string) or ``"length"``.
        logprobs: ``B`` lists, one float per token of ``token_ids``.
    """

    token_ids: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]
    logprobs: list[list[float]]

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if not (len(self.texts) == len(self.finish_reasons) == len(self.logprobs) == n):
            raise ValueError("token_ids, texts, finish_reasons and logprobs must have the same length")
        for ids, lps in zip(self.token_ids, self.logprobs, strict=True):
            if len(ids) != len(lps):
                raise ValueError("every sequence needs one log-prob per token")
        bad = set(self.finish_reasons) - set(FINISH_REASONS)
        if bad:
            raise ValueError(f"unknown finish reasons {sorted(bad)}")

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return sum(len(ids) for ids in self.token_ids)


class GenerationBackend(abc.ABC):
    """Samples completions for encoded prompts from a policy model.

    Subclasses implement :meth:`generate`. The training loop brackets every
    rollout phase with :meth:`rollout_phase` (where a backend gathers ZeRO-3
    shards, copies weights or warms graphs, and releases them afterwards) and
    calls :meth:`update_weights` after each update's optimisation phase so
    that backends holding their own copy of the weights can refresh it.
    """

    name: str = "base"

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor

    @abc.abstractmethod
    def generate(self, inputs: Mapping[str, Any], params: SamplingParams) -> Generation:
        """Generate one completion per prompt in ``inputs`` (left-padded)."""

    @contextlib.contextmanager
    def rollout_phase(self) -> Iterator[None]:
        """Context for a whole rollout phase; the default does nothing."""
        yield

    def update_weights(self, model: Any) -> None:  # noqa: B027 - optional hook
        """Called after each update's optimiser steps; backends sharing the module need nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (engines, graphs)."""


#: Config and processor attributes naming a VLM's image or video placeholder token.
_PLACEHOLDER_ATTRIBUTES = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")


def placeholder_token_ids(model: Any, processor: Any) -> set[int]:
    """The ids of the model's image and video placeholder tokens; backends never sample them.

    A VLM's forward pairs every placeholder in ``input_ids`` with image
    features. A placeholder inside an answer has no image behind it, so the
    teacher-forced pass that scores the answer (PPO) would fail, and as text
    it means nothing. Backends keep these ids out of sampling the way top-k
    does (log-probs are still those of the untruncated distribution). Text
    models have none.
    """
    ids: set[int] = set()
    for source in (getattr(model, "config", None), processor):
        for name in _PLACEHOLDER_ATTRIBUTES:
            value = getattr(source, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                ids.add(value)
    return ids


def batch_sampling_tokens(model: Any, processor: Any) -> tuple[Any, set[int], set[int]]:
    """``(tokenizer, eos_ids, suppressed_ids)`` of a backend that samples padded batches.

    ``suppressed_ids`` are the placeholder ids never sampled (see
    :func:`placeholder_token_ids`), EOS ids excepted.

    Raises:
        ValueError: The tokenizer has no pad token.
    """
    from trainers.common.modeling import eos_token_ids, get_tokenizer

    tokenizer = get_tokenizer(processor)
    eos_ids = set(eos_token_ids(model, processor))
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; batched generation needs one")
    return tokenizer, eos_ids, placeholder_token_ids(model, processor) - eos_ids


def cut_at_stop(
    tokenizer: Any, ids: Sequence[int], eos_ids: set[int], stop_strings: Sequence[str]
) -> tuple[int, str, str]:
    """Where one generated sequence ends, its text and why it ended.

    Returns ``(n_tokens, text, reason)``: keep ``ids[:n_tokens]``. EOS ends a
    sequence including the EOS token; a stop string ends it at the first token
    whose decoded prefix contains the string (found by bisection over decoded
    prefixes: O(log n) decodes rather than one per token).
    """
    n = len(ids)
    reason = "length"
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            n, reason = i + 1, "eos"
            break
    text = tokenizer.decode(list(ids[:n]), skip_special_tokens=True)
    if stop_strings:
        hits = [(text.find(s), s) for s in stop_strings if s in text]
        if hits:
            _, stop = min(hits)
            lo, hi = 1, n  # smallest k with the stop string inside decode(ids[:k])
            while lo < hi:
                mid = (lo + hi) // 2
                if stop in tokenizer.decode(list(ids[:mid]), skip_special_tokens=True):
                    hi = mid
                else:
                    lo = mid + 1
            n = lo
            text = tokenizer.decode(list(ids[:n]), skip_special_tokens=True)
            reason = "stop"
    return n, text, reason


def generation_from_rows(
    tokenizer: Any,
    token_rows: Sequence[Sequence[int]],
    logprob_rows: Sequence[Sequence[float]],
    eos_ids: set[int],
    stop_strings: Sequence[str],
) -> Generation:
    """A :class:`Generation` from each prompt's raw generated tokens and their log-probs.

    Every row is cut where it ends (:func:`cut_at_stop`: EOS, a stop string,
    or its full length), and its log-probs with it; backends call this so
    that all of them end sequences the same way.
    """
    ids_list, texts, reasons, lps = [], [], [], []
    for row, row_lp in zip(token_rows, logprob_rows, strict=True):
        n, text, reason = cut_at_stop(tokenizer, row, eos_ids, stop_strings)
        ids_list.append(list(row[:n]))
        lps.append(list(row_lp[:n]))
        texts.append(text)
        reasons.append(reason)
    return Generation(token_ids=ids_list, texts=texts, finish_reasons=reasons, logprobs=lps)
