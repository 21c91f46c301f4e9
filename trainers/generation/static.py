"""Our own decode loop: static KV cache, CUDA graphs, sampling on device.

Why this exists: Hugging Face ``generate`` runs every decode step as a few
thousand small kernels launched one by one from Python. On a GPU such a step
is launch-bound (tens of microseconds per launch against about one inside a
replayed CUDA graph), so the device idles most of the time. This backend
keeps the model's own forward and changes only how decode steps are run:

1. **Prefill** runs eagerly through the model's own
   ``prepare_inputs_for_generation`` and forward, exactly as ``generate``
   does with ``cache_implementation="static"``: images, Mllama's
   cross-attention states and Qwen2-VL's rope deltas are the model's
   business.
2. **Decode** steps are single-token forwards on a preallocated static KV
   cache whose inputs live in fixed buffers: the last token, the position
   ids (advanced by one per step, the rule ``generate`` itself applies), a 2D
   attention mask over the whole cache (padding stays hidden, the causal mask
   hides the future) and whatever else the model's
   ``prepare_inputs_for_generation`` hands a decode step (checked to stay
   constant from step to step). Sampling (temperature, top-k, top-p), the
   log-prob of the sampled token, EOS detection and the retirement of
   finished rows (they keep stepping on pad tokens, masked) all happen in the
   same step, on device.
3. On CUDA that step is **captured as a CUDA graph** per batch-size bucket
   (batches are padded up to a power of two) and replayed. When capture is
   impossible (a model reads device values on the host, a hook gathers
   weights, the driver refuses) the reason is logged and the same step runs
   eagerly: slower, never wrong. On CPU the step always runs eagerly.

Models whose decode inputs cannot be held in fixed buffers (a cache layer
other than a plain static layer, a decode input that changes in a way the
step cannot follow) use a generic eager loop instead, which calls
``prepare_inputs_for_generation`` at every step like ``generate``; the reason
is logged too.

The backend leans on private parts of transformers' generation code
(``_prepare_static_cache``, ``_update_model_kwargs_for_generation``, the
static cache layers' fields), which change between releases (5.24 renamed
the cache input ``past_key_values`` to ``cache``). Two guards keep a change
there from producing wrong log-probs silently: a transformers release
outside :data:`TESTED_TRANSFORMERS` hands every call to the ``hf`` backend
(with a one-line warning), and after every static decode the KV cache must
have advanced by exactly the steps taken, or the call is redone by ``hf``
and the backend stays there.

Stop strings are checked on the host every ``stop_check_interval`` steps,
together with the "all rows finished" test: each check is one device-to-host
synchronisation, so checking every step would stall the launch pipeline,
while checking rarely wastes up to ``interval - 1`` steps after the last row
finished. Tokens generated past a stop string are cut afterwards with
:func:`~trainers.generation.base.cut_at_stop`, so the result is the same for
any interval.

Sampling draws its randomness as exponential noise from a ``torch.Generator``
seeded with :attr:`SamplingParams.seed`; the noise is drawn eagerly before
each step (one kernel), so graph replay and eager decoding consume it the
same way. A token is sampled as ``argmax(p / E)`` with ``E ~ Exp(1)`` per
vocabulary entry (the exponential race, equivalent to sampling from ``p``),
which needs no host synchronisation, unlike ``torch.multinomial``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainers.generation.base import (
    Generation,
    GenerationBackend,
    SamplingParams,
    batch_sampling_tokens,
    generation_from_rows,
)

logger = logging.getLogger(__name__)

#: Sampling modes; each has its own captured graph (the truncated mode sorts
#: the vocabulary, the others need not).
SAMPLING_MODES = ("greedy", "sample", "truncated")

#: Decode-step inputs the static step provides itself (the cache under
#: either of the names transformers has used for it).
_STEP_OWNED_KEYS = ("input_ids", "cache", "past_key_values", "attention_mask")

#: transformers minor releases this backend was checked against (first and
#: last, inclusive) by the token and log-prob equality tests.
TESTED_TRANSFORMERS = ("5.23", "5.25")


def cache_input_name() -> str:
    """The keyword under which the installed transformers passes the KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` in model
    forwards, ``prepare_inputs_for_generation`` and ``generate``'s model
    kwargs; the old name stays a deprecated alias that loses when both are
    given, so a cache passed under the wrong name is silently ignored.
    """
    from transformers import GenerationMixin

    params = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def untested_transformers_reason() -> str | None:
    """Why the installed transformers is not one the backend was checked against, or None."""
    import transformers
    from packaging.version import Version

    installed = Version(transformers.__version__)
    first, last = (Version(v) for v in TESTED_TRANSFORMERS)
    minor = Version(f"{installed.major}.{installed.minor}")
    if first <= minor <= last:
        return None
    return (
        f"transformers {transformers.__version__} is outside the releases this backend was "
        f"checked against ({TESTED_TRANSFORMERS[0]} to {TESTED_TRANSFORMERS[1]})"
    )


@dataclass
class StaticBackendConfig:
    """Settings of the ``static`` generation backend."""

    use_cuda_graphs: bool | None = field(
        default=None,
        metadata={
            "help": "Capture decode steps as CUDA graphs; None means yes on CUDA, no elsewhere."
        },
    )
    pad_to_buckets: bool | None = field(
        default=None,
        metadata={
            "help": "Pad batches up to a bucket size so graphs are reused across batch sizes; "
            "None follows use_cuda_graphs."
        },
    )
    batch_buckets: tuple[int, ...] = field(
        default=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        metadata={
            "help": "Batch-size buckets (ascending); larger batches round up to a multiple of the largest."
        },
    )
    cache_len_multiple: int = field(
        default=256,
        metadata={
            "help": "KV-cache length rounds up to a multiple of this, so one cache (and graph) serves many calls."
        },
    )
    stop_check_interval: int = field(
        default=8,
        metadata={
            "help": "Decode steps between host checks for stop strings and all-rows-finished."
        },
    )
    max_cached_states: int = field(
        default=4, metadata={"help": "Most (bucket, input layout) caches and graphs kept at once."}
    )
    release_after_phase: bool = field(
        default=True,
        metadata={
            "help": "Free KV caches and graphs when a rollout phase ends (gives the memory back to training)."
        },
    )
    static_decode: bool = field(
        default=True,
        metadata={
            "help": "Use the static-buffer decode step; False forces the generic eager loop "
            "(prepare_inputs_for_generation every step)."
        },
    )
    allow_untested_transformers: bool = field(
        default=False,
        metadata={
            "help": "Decode with this backend even on a transformers release outside "
            "TESTED_TRANSFORMERS (otherwise every call goes to hf); check it with the "
            "equality tests first."
        },
    )

    def __post_init__(self) -> None:
        buckets = tuple(int(b) for b in self.batch_buckets)
        if not buckets or any(b < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
            raise ValueError(
                f"batch_buckets must be distinct positive sizes in ascending order, got {self.batch_buckets}"
            )
        self.batch_buckets = buckets
        if self.cache_len_multiple < 1:
            raise ValueError(
                f"cache_len_multiple must be at least 1, got {self.cache_len_multiple}"
            )
        if self.stop_check_interval < 1:
            raise ValueError(
                f"stop_check_interval must be at least 1, got {self.stop_check_interval}"
            )
        if self.max_cached_states < 1:
            raise ValueError(f"max_cached_states must be at least 1, got {self.max_cached_states}")

    def bucket_for(self, batch_size: int) -> int:
        """The padded batch size for ``batch_size`` rows."""
        for bucket in self.batch_buckets:
            if bucket >= batch_size:
                return bucket
        largest = self.batch_buckets[-1]
        return largest * math.ceil(batch_size / largest)


# -- sampling ----------------------------------------------------------------


def sampling_mode(params: SamplingParams) -> str:
    """Which sampling graph ``params`` need: greedy, plain sampling or truncated."""
    if params.greedy:
        return "greedy"
    if params.top_k == 0 and params.top_p >= 1.0:
        return "sample"
    return "truncated"


def truncation_mask(scaled_logits: Any, top_k: Any, top_p: Any) -> Any:
    """Which vocabulary entries top-k and then top-p truncation remove.

    Same semantics as Hugging Face's ``TopKLogitsWarper`` followed by
    ``TopPLogitsWarper`` (ties at the k-th value are kept; the most likely
    token always survives), with ``top_k`` and ``top_p`` as tensors so that
    one captured graph serves every setting, and one sort for both.

    Args:
        scaled_logits: ``[B, V]`` logits already divided by the temperature.
        top_k: 0-dim (or ``[B]``) long tensor; 0 disables top-k.
        top_p: 0-dim (or ``[B]``) float tensor; 1 disables top-p.

    Returns:
        ``[B, V]`` bool tensor, True where a token may not be sampled.
    """
    import torch

    vocab = scaled_logits.shape[-1]
    sorted_logits, order = torch.sort(scaled_logits, dim=-1)  # ascending
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    kth_index = (vocab - k).reshape(-1, 1).expand(scaled_logits.shape[0], 1)
    kth_largest = sorted_logits.gather(-1, kth_index)
    removed_sorted = sorted_logits < kth_largest
    kept = sorted_logits.masked_fill(removed_sorted, float("-inf"))
    cumulative = kept.softmax(dim=-1).cumsum(dim=-1)
    threshold = (1 - top_p).reshape(-1, 1).to(cumulative.dtype)
    removed_sorted = removed_sorted | (cumulative <= threshold)
    removed_sorted[..., -1] = False
    return removed_sorted.scatter(-1, order, removed_sorted)


def sample_tokens(
    logits: Any,
    *,
    mode: str,
    temperature: Any,
    top_k: Any = None,
    top_p: Any = None,
    noise: Any = None,
    banned: Any = None,
) -> tuple[Any, Any]:
    """Pick one token per row and its log-prob, without host synchronisation.

    Args:
        logits: ``[B, V]`` float32 raw logits of the next token.
        mode: One of :data:`SAMPLING_MODES`.
        temperature: 0-dim float tensor (ignored when greedy).
        top_k, top_p: 0-dim tensors for the truncated mode.
        noise: ``[B, V]`` float tensor of ``Exp(1)`` draws (not for greedy).
        banned: ``[V]`` bool tensor of tokens never to pick (the image
            placeholders), removed before top-k / top-p like Hugging Face's
            ``suppress_tokens``; ``None`` bans nothing.

    Returns:
        ``(tokens, logprobs)``: ``[B]`` long and ``[B]`` float32, the
        log-prob being ``log_softmax(logits / T)`` of the chosen token before
        truncation (``T`` = 1 when greedy), as the PPO ratio needs it.
    """
    import torch

    if mode == "greedy":
        allowed = logits if banned is None else logits.masked_fill(banned, float("-inf"))
        tokens = allowed.argmax(dim=-1)
        logprobs = torch.log_softmax(logits, dim=-1)
        return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; choose one of {SAMPLING_MODES}")
    scaled = logits / temperature
    logprobs = torch.log_softmax(scaled, dim=-1)
    probs = logprobs.exp()
    allowed = scaled
    if banned is not None:
        allowed = scaled.masked_fill(banned, float("-inf"))
        probs = probs.masked_fill(banned, 0.0)
    if mode == "truncated":
        probs = probs.masked_fill(truncation_mask(allowed, top_k, top_p), 0.0)
    # Exponential race: argmax(p / E) is distributed as p. Clamping keeps a
    # (vanishingly rare) E = 0 from turning a masked token into inf / 0.
    race = probs / noise.clamp_min(torch.finfo(noise.dtype).tiny)
    tokens = race.argmax(dim=-1)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def _banned_mask(ids: Sequence[int], vocab: int, device: Any) -> Any:
    """``[vocab]`` bool tensor, True at ``ids`` (those inside the vocabulary); None when empty."""
    import torch

    ids = [i for i in ids if 0 <= i < vocab]
    if not ids:
        return None
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[torch.tensor(ids, device=device)] = True
    return mask


# -- host synchronisation detection -------------------------------------------

#: Operators that make the host wait for the device (they read a device value
#: or produce a data-dependent shape); any of them breaks CUDA graph capture.
HOST_SYNC_OPS = frozenset(
    {
        "aten::_local_scalar_dense",  # .item(), bool(t), int(t), if t: ...
        "aten::nonzero",
        "aten::nonzero_static",
        "aten::masked_select",
        "aten::_unique2",
        "aten::unique_dim",
        "aten::unique_consecutive",
        "aten::equal",
        "aten::is_nonzero",
    }
)


def find_host_syncs(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``fn`` and list the host-synchronising operators it dispatched.

    Works on CPU too (the same operators sync on CUDA), which is how the test
    suite checks that a decode step is capturable without a GPU. Besides
    :data:`HOST_SYNC_OPS` it flags ``repeat_interleave`` with tensor repeats
    and no ``output_size``, and copies from a CUDA tensor to the CPU.

    Returns:
        ``(fn's result, operator names in dispatch order)``.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    found: list[str] = []

    def _device_of(value: Any) -> Any:
        return value.device if isinstance(value, torch.Tensor) else None

    class _Detector(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            name = func._schema.name
            if name in HOST_SYNC_OPS:
                found.append(name)
            elif (
                name == "aten::repeat_interleave"
                and func._overloadname == "Tensor"
                and kwargs.get("output_size") is None
            ):
                found.append(f"{name}.Tensor")
            elif name == "aten::_to_copy" and args:
                src, dst = _device_of(args[0]), kwargs.get("device")
                if (
                    src is not None
                    and src.type == "cuda"
                    and dst is not None
                    and torch.device(dst).type == "cpu"
                ):
                    found.append(name + " (cuda -> cpu)")
            elif name == "aten::copy_" and len(args) >= 2:
                dst, src = _device_of(args[0]), _device_of(args[1])
                if src is not None and dst is not None and src.type == "cuda" and dst.type == "cpu":
                    found.append(name + " (cuda -> cpu)")
            return func(*args, **kwargs)

    with _Detector():
        result = fn()
    return result, found


# -- the static KV cache ------------------------------------------------------


def _build_static_cache(
    model: Any, batch_size: int, length: int, model_kwargs: Mapping[str, Any]
) -> Any:
    """A fresh (unallocated) static cache the way ``generate`` builds it.

    Goes through the model's own ``_prepare_static_cache`` so that model
    overrides apply (Mllama sizes its cross-attention layers by the number of
    images). ``generate`` remembers the longest cache it ever built and never
    builds a shorter one; that memory is bypassed here, since the cache
    lengths are chosen by this backend.
    """
    from transformers import StaticCache

    prepare = getattr(model, "_prepare_static_cache", None)
    if prepare is None:
        return StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=length)
    previous = model.__dict__.get("_previous_max_cache_length", None)
    model._previous_max_cache_length = -1
    try:
        return prepare(
            cache_implementation="static",
            batch_size=batch_size,
            max_cache_len=length,
            prefill_chunk_size=None,
            model_kwargs=dict(model_kwargs),
        )
    finally:
        if previous is None:
            model.__dict__.pop("_previous_max_cache_length", None)
        else:
            model._previous_max_cache_length = previous


@dataclass
class _CacheLayout:
    """Which cache layers grow with the sequence (self-attention) and which
    have a fixed length (e.g. Mllama's cross-attention over image states)."""

    follows_length: tuple[bool, ...]
    fixed_lengths: tuple[int, ...]

    @classmethod
    def probe(
        cls, model: Any, batch_size: int, length: int, model_kwargs: Mapping[str, Any]
    ) -> tuple[_CacheLayout | None, str]:
        """Find the layout by building two caches of different lengths.

        Returns ``(layout, "")`` or ``(None, reason)`` when a layer is not a
        plain static layer (sliding window, linear attention...), whose state
        cannot be moved between caches as a block.
        """
        from transformers.cache_utils import StaticLayer

        short = _build_static_cache(model, batch_size, length, model_kwargs)
        long = _build_static_cache(model, batch_size, length + 1, model_kwargs)
        kinds = {type(layer).__name__ for layer in short.layers if type(layer) is not StaticLayer}
        if kinds:
            return (
                None,
                f"the static cache has {', '.join(sorted(kinds))} layers (only plain static layers are supported)",
            )
        follows = tuple(
            a.max_cache_len != b.max_cache_len
            for a, b in zip(short.layers, long.layers, strict=True)
        )
        fixed = tuple(
            0 if f else a.max_cache_len for f, a in zip(follows, short.layers, strict=True)
        )
        return cls(follows, fixed), ""


def _copy_cache_into(src: Any, dst: Any, bucket: int) -> None:
    """Copy a prefilled cache into the leading corner (rows, positions) of ``dst``.

    ``dst`` layers are allocated on first use with the same per-row shapes
    as ``src`` and ``bucket`` rows (their length is their own). Every tensor attribute of a
    layer (keys, values, the filled length) is copied, not only keys/values.
    """
    import torch

    for src_layer, dst_layer in zip(src.layers, dst.layers, strict=True):
        if not src_layer.is_initialized:
            continue
        if not dst_layer.is_initialized:
            empty_k = src_layer.keys.new_empty(
                (bucket, src_layer.keys.shape[1], 0, src_layer.keys.shape[-1])
            )
            empty_v = src_layer.values.new_empty(
                (bucket, src_layer.values.shape[1], 0, src_layer.values.shape[-1])
            )
            dst_layer.lazy_initialization(empty_k, empty_v)
        for name, value in vars(src_layer).items():
            if not isinstance(value, torch.Tensor):
                continue
            target = getattr(dst_layer, name)
            if value.ndim == 0:
                target.copy_(value)
                continue
            corner = tuple(slice(0, n) for n in value.shape)
            target[corner].copy_(value)


def _cache_lag(cache: Any, layout: _CacheLayout, filled: Sequence[bool], expected: int) -> str:
    """What is wrong with a decode cache that should now hold ``expected`` positions ("" if nothing).

    Every decode step writes one position into each self-attention layer. A
    layer that holds another count was not given the step's keys and values
    (a model that took its cache from elsewhere, a renamed input): the
    tokens decoded on it are wrong, though nothing raised.
    """
    for index, layer in enumerate(cache.layers):
        if not (layout.follows_length[index] and filled[index]):
            continue
        held = int(layer.get_seq_length())
        if held != expected:
            return f"layer {index} holds {held} positions after decoding, expected {expected}"
    return ""


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


# -- decoders -----------------------------------------------------------------


@dataclass
class _StepPlan:
    """What a decode step feeds the model besides the token and the cache."""

    batch_size: int
    position_key: str | None
    position_ids: Any  # [..., B, 1] for the first decode step, or None
    passes_mask: bool
    constants: dict[str, Any]  # other step inputs, constant over steps

    def signature(self, bucket: int) -> tuple:
        import torch

        def describe(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                per_row = value.ndim > 0 and value.shape[0] == self.batch_size
                shape = tuple(value.shape[1:]) if per_row else tuple(value.shape)
                return ("tensor", per_row, shape, str(value.dtype), str(value.device))
            return ("value", repr(value))

        pos = (
            None
            if self.position_ids is None
            else tuple(self.position_ids.shape[:-2]) + tuple(self.position_ids.shape[-1:])
        )
        consts = tuple(sorted((k, describe(v)) for k, v in self.constants.items()))
        return (bucket, self.position_key, pos, self.passes_mask, consts)


class _StaticState:
    """Fixed buffers, KV cache and captured graphs for one bucket and input layout."""

    def __init__(
        self,
        model: Any,
        plan: _StepPlan,
        bucket: int,
        capacity: int,
        vocab: int,
        cache: Any,
        eos: Sequence[int],
        device: Any,
        banned_ids: Sequence[int] = (),
    ) -> None:
        import torch

        self.model = model
        self.cache_key = cache_input_name()
        self.bucket = bucket
        self.capacity = capacity
        self.cache = cache
        self.position_key = plan.position_key
        self.passes_mask = plan.passes_mask
        self.tokens = torch.zeros((bucket, 1), dtype=torch.long, device=device)
        self.positions = None
        if plan.position_ids is not None:
            shape = list(plan.position_ids.shape)
            shape[-2] = bucket
            self.positions = torch.zeros(shape, dtype=plan.position_ids.dtype, device=device)
        self.mask = torch.ones((bucket, capacity), dtype=torch.long, device=device)
        self.constants: dict[str, Any] = {}
        self.row_constants: set[str] = set()
        for key, value in plan.constants.items():
            if isinstance(value, torch.Tensor):
                shape = list(value.shape)
                if shape and shape[0] == plan.batch_size:
                    shape[0] = bucket
                    self.row_constants.add(key)
                self.constants[key] = torch.zeros(shape, dtype=value.dtype, device=value.device)
            else:
                self.constants[key] = value
        self.finished = torch.zeros(bucket, dtype=torch.bool, device=device)
        self.out_tokens = torch.zeros((bucket, capacity), dtype=torch.long, device=device)
        self.out_logprobs = torch.zeros((bucket, capacity), dtype=torch.float32, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.noise = torch.ones((bucket, vocab), dtype=torch.float32, device=device)
        self.temperature = torch.ones((), dtype=torch.float32, device=device)
        self.top_k = torch.zeros((), dtype=torch.long, device=device)
        self.top_p = torch.ones((), dtype=torch.float32, device=device)
        self.eos = torch.tensor(sorted(eos) or [-1], dtype=torch.long, device=device)
        self.pad = torch.zeros((), dtype=torch.long, device=device)
        self.banned = _banned_mask(banned_ids, vocab, device)
        self.graphs: dict[str, Any] = {}
        self.graph_failures: dict[str, str] = {}
        self.mode = "greedy"

    # ---------------------------------------------------------------- loading
    def load(
        self,
        *,
        prefill_cache: Any,
        plan: _StepPlan,
        prompt_mask: Any,
        first_tokens: Any,
        first_logprobs: Any,
        pad_id: int,
        params: SamplingParams,
    ) -> None:
        """Copy one call's prefill state into the fixed buffers (never reallocating them)."""
        rows, length = prompt_mask.shape
        self.cache.reset()
        _copy_cache_into(prefill_cache, self.cache, self.bucket)
        self.mask.fill_(1)
        self.mask[:rows, :length].copy_(prompt_mask)
        if self.positions is not None:
            batch_dim = self.positions.ndim - 2
            self.positions.narrow(batch_dim, 0, rows).copy_(plan.position_ids)
            if rows < self.bucket:
                filler = plan.position_ids.narrow(batch_dim, 0, 1)
                self.positions.narrow(batch_dim, rows, self.bucket - rows).copy_(
                    filler.expand_as(self.positions.narrow(batch_dim, rows, self.bucket - rows))
                )
        for key, value in plan.constants.items():
            buffer = self.constants[key]
            if key in self.row_constants:
                buffer[:rows].copy_(value)
                if rows < self.bucket:
                    buffer[rows:].copy_(value[:1].expand_as(buffer[rows:]))
            elif hasattr(buffer, "copy_"):
                buffer.copy_(value)
        self.pad.fill_(pad_id)
        self.finished.fill_(True)
        self.finished[:rows] = (first_tokens[:, None] == self.eos).any(-1)
        self.tokens.fill_(pad_id)
        self.tokens[:rows, 0] = first_tokens
        self.out_tokens.fill_(pad_id)
        self.out_logprobs.zero_()
        self.out_tokens[:rows, 0] = first_tokens
        self.out_logprobs[:rows, 0] = first_logprobs
        self.step.fill_(1)
        self.temperature.fill_(params.logprob_temperature)
        self.top_k.fill_(params.top_k)
        self.top_p.fill_(params.top_p)
        self.mode = sampling_mode(params)

    # ------------------------------------------------------------------ step
    def model_inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {"input_ids": self.tokens, self.cache_key: self.cache}
        if self.passes_mask:
            inputs["attention_mask"] = self.mask
        if self.positions is not None:
            inputs[self.position_key] = self.positions
        inputs.update(self.constants)
        return inputs

    def decode_step(self) -> None:
        """One decode step on the fixed buffers; every update is in place."""
        import torch

        outputs = self.model(**self.model_inputs(), return_dict=True)
        logits = outputs.logits[:, -1].float()
        tokens, logprobs = sample_tokens(
            logits,
            mode=self.mode,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            noise=self.noise,
            banned=self.banned,
        )
        tokens = torch.where(self.finished, self.pad, tokens)
        logprobs = logprobs.masked_fill(self.finished, 0.0)
        column = self.step.view(1, 1).expand(self.bucket, 1)
        self.out_tokens.scatter_(1, column, tokens[:, None])
        self.out_logprobs.scatter_(1, column, logprobs[:, None])
        self.finished |= (tokens[:, None] == self.eos).any(-1)
        self.tokens.copy_(tokens[:, None])
        if self.positions is not None:
            self.positions.add_(1)
        self.step.add_(1)


class _StaticDecoder:
    """Runs decode steps of a loaded :class:`_StaticState`, through a graph when it can."""

    def __init__(self, state: _StaticState, rows: int, generator: Any, *, use_graphs: bool) -> None:
        self.state = state
        self.rows = rows
        self.generator = generator
        self.use_graphs = use_graphs

    @property
    def finished(self) -> Any:
        return self.state.finished

    @property
    def out_tokens(self) -> Any:
        return self.state.out_tokens

    @property
    def out_logprobs(self) -> Any:
        return self.state.out_logprobs

    def _draw_noise(self) -> None:
        if self.state.mode != "greedy":
            self.state.noise.exponential_(generator=self.generator)

    def run(self, steps: int) -> None:
        state = self.state
        mode = state.mode
        done = 0
        if (
            self.use_graphs
            and mode not in state.graphs
            and mode not in state.graph_failures
            and steps >= 2
        ):
            # Warm up on a side stream with real steps (allocator, cuBLAS
            # workspaces), then capture. Capturing executes nothing, so the
            # state is exactly where the warm-up left it.
            import torch

            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._draw_noise()
                    state.decode_step()
            torch.cuda.current_stream().wait_stream(side)
            done = 2
            self._capture(mode)
        graph = state.graphs.get(mode) if self.use_graphs else None
        for _ in range(steps - done):
            self._draw_noise()
            if graph is not None:
                graph.replay()
            else:
                state.decode_step()

    def _capture(self, mode: str) -> None:
        import torch

        state = self.state
        graph = torch.cuda.CUDAGraph()
        try:
            # A private memory pool per graph: graphs of different buckets and
            # modes may then be replayed in any order.
            with torch.cuda.graph(graph):
                state.decode_step()
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
            where = traceback.extract_tb(exc.__traceback__)
            origin = f" at {where[-1].filename}:{where[-1].lineno}" if where else ""
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{origin}"
            state.graph_failures[mode] = reason
            logger.warning(
                "static generation: CUDA graph capture failed for batch bucket %d (%s mode): %s; decoding eagerly",
                state.bucket,
                mode,
                reason,
            )
            torch.cuda.synchronize()
            return
        state.graphs[mode] = graph


class _GenericDecoder:
    """The universal fallback: ``generate``'s own loop, one eager step at a time."""

    def __init__(
        self,
        model: Any,
        model_kwargs: dict[str, Any],
        input_ids: Any,
        first_tokens: Any,
        first_logprobs: Any,
        params: SamplingParams,
        eos: Sequence[int],
        pad_id: int,
        generator: Any,
        banned_ids: Sequence[int] = (),
    ) -> None:
        import torch

        self.model = model
        self.kwargs = model_kwargs
        rows = input_ids.shape[0]
        device = input_ids.device
        self.params = params
        self.mode = sampling_mode(params)
        self.generator = generator
        self.eos = torch.tensor(sorted(eos) or [-1], dtype=torch.long, device=device)
        self.pad = torch.tensor(pad_id, dtype=torch.long, device=device)
        self.temperature = torch.tensor(
            params.logprob_temperature, dtype=torch.float32, device=device
        )
        self.top_k = torch.tensor(params.top_k, dtype=torch.long, device=device)
        self.top_p = torch.tensor(params.top_p, dtype=torch.float32, device=device)
        self.banned_ids = tuple(banned_ids)
        self._banned_cache: tuple[Any] | None = None  # (mask or None,) once the vocabulary size is seen
        self.ids = torch.cat([input_ids, first_tokens[:, None]], dim=1)
        self.out_tokens = torch.full(
            (rows, params.max_new_tokens), pad_id, dtype=torch.long, device=device
        )
        self.out_logprobs = torch.zeros(
            (rows, params.max_new_tokens), dtype=torch.float32, device=device
        )
        self.out_tokens[:, 0] = first_tokens
        self.out_logprobs[:, 0] = first_logprobs
        self.finished = (first_tokens[:, None] == self.eos).any(-1)
        self.t = 1

    def run(self, steps: int) -> None:
        import torch

        for _ in range(steps):
            inputs = self.model.prepare_inputs_for_generation(
                self.ids, next_sequence_length=1, **self.kwargs
            )
            outputs = self.model(**inputs, return_dict=True)
            self.kwargs = self.model._update_model_kwargs_for_generation(
                outputs, self.kwargs, is_encoder_decoder=False
            )
            logits = outputs.logits[:, -1].float()
            noise = None
            if self.mode != "greedy":
                noise = torch.empty_like(logits).exponential_(generator=self.generator)
            tokens, logprobs = sample_tokens(
                logits,
                mode=self.mode,
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                noise=noise,
                banned=self._banned(logits),
            )
            tokens = torch.where(self.finished, self.pad, tokens)
            self.out_tokens[:, self.t] = tokens
            self.out_logprobs[:, self.t] = logprobs.masked_fill(self.finished, 0.0)
            self.finished |= (tokens[:, None] == self.eos).any(-1)
            self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
            self.t += 1

    def _banned(self, logits: Any) -> Any:
        if self._banned_cache is None:
            self._banned_cache = (_banned_mask(self.banned_ids, logits.shape[-1], logits.device),)
        return self._banned_cache[0]


# -- the backend ----------------------------------------------------------------


class StaticGenerationBackend(GenerationBackend):
    """Prefill with the model's forward, decode on a static cache (CUDA graphs on GPU).

    Args:
        model: Any generative model loadable through the Auto classes.
        processor: Its processor or tokenizer.
        config: :class:`StaticBackendConfig`; keyword overrides of its fields
            may be passed instead (``use_cuda_graphs=False``...).
        synced_gpus: Keep stepping until every process is done. Needed when
            ZeRO-3 weights are *not* gathered for generation and several
            processes run, since each forward then takes part in collective
            gathers; detected automatically when left ``None``.
    """

    name = "static"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        config: StaticBackendConfig | None = None,
        synced_gpus: bool | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(model, processor)
        if config is None:
            config = StaticBackendConfig(**overrides)
        elif overrides:
            raise ValueError("pass either config or keyword overrides, not both")
        for method in ("prepare_inputs_for_generation", "_update_model_kwargs_for_generation"):
            if not callable(getattr(model, method, None)):
                raise ValueError(
                    f"the static backend needs a Hugging Face generative model (with {method}); "
                    f"got {type(model).__name__}"
                )
        self.config = config
        self.synced_gpus = synced_gpus
        #: ``suppressed_ids``: image/video placeholder ids, never sampled.
        self.tokenizer, self.eos_ids, self.suppressed_ids = batch_sampling_tokens(model, processor)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.cache_key = cache_input_name()
        self._states: OrderedDict[tuple, _StaticState] = OrderedDict()
        self._weights_key: tuple | None = None
        self._generators: dict[str, Any] = {}
        self._phase_depth = 0
        #: Why a faster path was not taken (each logged once), oldest first.
        self.fallback_reasons: list[str] = []
        #: Which decoder ran the last call: "graph", "static-eager", "generic" or "hf".
        self.last_decoder: str | None = None
        #: The ``hf`` backend every call goes to once this one cannot be trusted.
        self._hf: GenerationBackend | None = None
        if not config.allow_untested_transformers and (reason := untested_transformers_reason()):
            self._hand_over_to_hf(reason)

    # --------------------------------------------------------------- lifecycle
    @contextlib.contextmanager
    def rollout_phase(self) -> Iterator[None]:
        """Caches and graphs built in a phase are freed when it ends (see
        :attr:`StaticBackendConfig.release_after_phase`): under ZeRO-3 the
        gathered weights they point at are released then, and otherwise the
        memory goes back to training."""
        self._phase_depth += 1
        try:
            yield
        finally:
            self._phase_depth -= 1
            if self._phase_depth == 0 and self.config.release_after_phase:
                self.release()

    def update_weights(self, model: Any) -> None:
        """The backend shares the module; graphs are re-checked against the weights' storage at every call."""
        self.model = model
        if self._hf is not None:
            self._hf.update_weights(model)

    def release(self) -> None:
        """Drop every KV cache and captured graph."""
        self._states.clear()
        self._weights_key = None

    def close(self) -> None:
        self.release()

    # ------------------------------------------------------------------ helpers
    def _hand_over_to_hf(self, reason: str) -> None:
        """Send this and every later call to the ``hf`` backend, saying why once."""
        from trainers.generation.hf import HFGenerationBackend

        self._note(f"{reason}; generating with hf instead")
        self.release()
        self._hf = HFGenerationBackend(
            self.model, self.processor, synced_gpus=bool(self.synced_gpus)
        )

    def _note(self, reason: str) -> None:
        """Log a fallback reason once and keep it in :attr:`fallback_reasons`."""
        if reason not in self.fallback_reasons:
            logger.warning("static generation: %s", reason)
            self.fallback_reasons.append(reason)

    def _device(self) -> Any:
        import torch

        device = getattr(self.model, "device", None)
        if isinstance(device, torch.device):
            return device
        return next(self.model.parameters()).device

    def _weights_partitioned(self) -> bool:
        """ZeRO-3 parameters that are not gathered (each forward gathers them)."""
        return any(
            getattr(p, "ds_id", None) is not None and p.data.numel() == 0
            for p in self.model.parameters()
        )

    def _check_weights(self) -> None:
        """Forget graphs whose weights moved (a ZeRO-3 gather, a reload)."""
        key = tuple((p.data_ptr(), tuple(p.shape)) for p in self.model.parameters())
        key += tuple((b.data_ptr(), tuple(b.shape)) for b in self.model.buffers())
        if key != self._weights_key:
            self.release()
            self._weights_key = key

    def _generator(self, device: Any, seed: int | None) -> Any:
        import torch

        generator = self._generators.get(str(device))
        if generator is None:
            generator = torch.Generator(device=device)
            self._generators[str(device)] = generator
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    def _synced(self) -> bool:
        if self.synced_gpus is not None:
            return self.synced_gpus
        import torch.distributed as dist

        return (
            dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
            and self._weights_partitioned()
        )

    # -------------------------------------------------------------- generation
    def generate(self, inputs: Mapping[str, Any], params: SamplingParams) -> Generation:
        import torch

        if self._hf is None:
            model = self.model
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    rows = self._generate(inputs, params)
            finally:
                model.train(was_training)
            if rows is not None:
                token_rows, logprob_rows = rows
                return generation_from_rows(
                    self.tokenizer, token_rows, logprob_rows, self.eos_ids, params.stop_strings
                )
        assert self._hf is not None  # set by _generate when it gave up on the call
        self.last_decoder = "hf"
        return self._hf.generate(inputs, params)

    def _model_kwargs(
        self, inputs: Mapping[str, Any], device: Any
    ) -> tuple[Any, dict[str, Any], Any]:
        """``generate``'s model kwargs for these inputs (positions, mask, logits_to_keep)."""
        import torch

        model = self.model
        kwargs = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()
        }
        input_ids = kwargs.pop("input_ids")
        if input_ids.ndim != 2 or input_ids.shape[0] == 0:
            raise ValueError(
                f"input_ids must be a non-empty [batch, length] tensor, got shape {tuple(input_ids.shape)}"
            )
        prompt_mask = kwargs.get("attention_mask")
        if prompt_mask is None:
            prompt_mask = torch.ones_like(input_ids)
            kwargs["attention_mask"] = prompt_mask
        if prompt_mask.ndim != 2 or prompt_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must be 2D and shaped like input_ids")
        if bool((prompt_mask[:, -1] == 0).any()):
            raise ValueError(
                "prompts must be left-padded (the last position of every row must be a real token)"
            )
        parameters = set(inspect.signature(model.forward).parameters)
        if "position_ids" in parameters and kwargs.get("position_ids") is None:
            kwargs["position_ids"] = model._prepare_position_ids_for_generation(input_ids, kwargs)
        if bool((prompt_mask == 1).all()):
            kwargs["attention_mask"] = None  # as generate does: no padding, no mask
        if "logits_to_keep" in parameters and "logits_to_keep" not in kwargs:
            kwargs["logits_to_keep"] = 1
        kwargs["use_cache"] = True
        return input_ids, kwargs, prompt_mask

    def _plan_static_step(
        self, input_ids: Any, kwargs: Mapping[str, Any]
    ) -> tuple[_StepPlan | None, str]:
        """The decode-step inputs, from two consecutive steps of the model's own preparation.

        ``prepare_inputs_for_generation`` is asked for decode steps 1 and 2
        (on an empty dynamic cache, so no mask is built); the step can be run
        on fixed buffers when only the token, the positions (by +1) and the
        attention mask change between them.
        """
        import torch
        from transformers import Cache, DynamicCache

        model = self.model
        rows = input_ids.shape[0]
        probe = dict(kwargs)
        probe[self.cache_key] = DynamicCache(config=model.config.get_text_config(decoder=True))
        probe = model._update_model_kwargs_for_generation({}, probe, is_encoder_decoder=False)
        dummy = torch.full((rows, 1), self.pad_id, dtype=input_ids.dtype, device=input_ids.device)
        ids_1 = torch.cat([input_ids, dummy], dim=1)
        step_1 = model.prepare_inputs_for_generation(ids_1, next_sequence_length=1, **dict(probe))
        probe_2 = model._update_model_kwargs_for_generation(
            {}, dict(probe), is_encoder_decoder=False
        )
        step_2 = model.prepare_inputs_for_generation(
            torch.cat([ids_1, dummy], dim=1), next_sequence_length=1, **probe_2
        )
        if set(step_1) != set(step_2):
            return None, f"decode steps take different inputs ({sorted(set(step_1) ^ set(step_2))})"
        position_key = "position_ids" if step_1.get("position_ids") is not None else None
        positions = None
        if position_key is not None:
            positions = step_1[position_key]
            if positions.ndim < 2 or positions.shape[-1] != 1 or positions.shape[-2] != rows:
                return (
                    None,
                    f"decode-step position ids have an unexpected shape {tuple(positions.shape)}",
                )
            if not torch.equal(step_2[position_key] - positions, torch.ones_like(positions)):
                return None, "decode-step position ids do not advance by one per token"
        mask = step_1.get("attention_mask")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.ndim != 2):
            return None, "the model prepares a decode attention mask that is not a 2D padding mask"
        constants: dict[str, Any] = {}
        for key, value in step_1.items():
            if key in _STEP_OWNED_KEYS or key == position_key or key == "position_ids":
                continue
            if isinstance(value, Cache):
                return None, f"the decode step takes a cache under {key!r}, not {self.cache_key!r}"
            other = step_2[key]
            if isinstance(value, torch.Tensor):
                if (
                    not isinstance(other, torch.Tensor)
                    or value.shape != other.shape
                    or not torch.equal(value, other)
                ):
                    return None, f"the decode-step input {key!r} changes from step to step"
            elif value is not other and value != other:
                return None, f"the decode-step input {key!r} changes from step to step"
            constants[key] = value
        return _StepPlan(rows, position_key, positions, "attention_mask" in step_1, constants), ""

    def _prefill(self, input_ids: Any, kwargs: dict[str, Any], cache: Any) -> Any:
        kwargs[self.cache_key] = cache
        inputs = self.model.prepare_inputs_for_generation(
            input_ids, is_first_iteration=True, **kwargs
        )
        return self.model(**inputs, return_dict=True)

    def _generate(
        self, inputs: Mapping[str, Any], params: SamplingParams
    ) -> tuple[list[list[int]], list[list[float]]] | None:
        """Token and log-prob rows, or None when the call must be redone by ``hf``."""

        device = self._device()
        input_ids, kwargs, prompt_mask = self._model_kwargs(inputs, device)
        rows, length = input_ids.shape
        cfg = self.config
        partitioned = self._weights_partitioned()
        use_graphs = (
            cfg.use_cuda_graphs if cfg.use_cuda_graphs is not None else device.type == "cuda"
        )
        if use_graphs and device.type != "cuda":
            self._note(
                f"CUDA graphs need a CUDA device (the model is on {device.type}); decoding eagerly"
            )
            use_graphs = False
        if use_graphs and partitioned:
            self._note(
                "ZeRO-3 weights are not gathered, so each forward gathers them and cannot be captured; decoding eagerly"
            )
            use_graphs = False

        plan, reason = (
            (None, "static_decode is off")
            if not cfg.static_decode
            else self._plan_static_step(input_ids, kwargs)
        )
        layout = None
        if plan is not None:
            layout, reason = _CacheLayout.probe(self.model, rows, length, kwargs)
        generator = self._generator(device, params.seed)

        if plan is None or layout is None:
            if cfg.static_decode:
                self._note(f"{reason}; using the generic eager decode loop")
            from transformers import DynamicCache

            outputs = self._prefill(
                input_ids,
                kwargs,
                DynamicCache(config=self.model.config.get_text_config(decoder=True)),
            )
            kwargs = self.model._update_model_kwargs_for_generation(
                outputs, kwargs, is_encoder_decoder=False
            )
            first, first_lp = self._sample_first(outputs, params, generator)
            decoder: Any = _GenericDecoder(
                self.model,
                kwargs,
                input_ids,
                first,
                first_lp,
                params,
                self.eos_ids,
                self.pad_id,
                generator,
                banned_ids=sorted(self.suppressed_ids),
            )
            self.last_decoder = "generic"
        else:
            prefill_cache = _build_static_cache(self.model, rows, length, kwargs)
            outputs = self._prefill(input_ids, kwargs, prefill_cache)
            first, first_lp = self._sample_first(outputs, params, generator)
            pad = cfg.pad_to_buckets if cfg.pad_to_buckets is not None else use_graphs
            bucket = cfg.bucket_for(rows) if pad else rows
            if use_graphs:
                self._check_weights()
            # Layers the prefill left empty (Mllama's cross-attention without
            # images) must stay empty in the decode cache: a different state.
            filled = tuple(layer.is_initialized for layer in prefill_cache.layers)
            state = self._state_for(
                plan,
                layout,
                filled,
                bucket,
                length + params.max_new_tokens,
                outputs.logits.shape[-1],
                kwargs,
                device,
            )
            state.load(
                prefill_cache=prefill_cache,
                plan=plan,
                prompt_mask=prompt_mask,
                first_tokens=first,
                first_logprobs=first_lp,
                pad_id=self.pad_id,
                params=params,
            )
            del prefill_cache, kwargs[self.cache_key]  # the decode cache holds a copy
            decoder = _StaticDecoder(state, rows, generator, use_graphs=use_graphs)
            self.last_decoder = "static-eager"
        del outputs

        steps = self._decode_loop(decoder, rows, params)
        if isinstance(decoder, _StaticDecoder):
            state = decoder.state
            if problem := _cache_lag(state.cache, layout, filled, length + steps - 1):
                self._hand_over_to_hf(
                    f"the static KV cache did not follow the decode steps ({problem}; "
                    f"transformers {_transformers_version()})"
                )
                return None
            if state.graphs.get(state.mode) is not None:
                self.last_decoder = "graph"
            for mode, failure in state.graph_failures.items():
                self._note(f"CUDA graph capture failed ({mode} mode): {failure}; decoding eagerly")
        tokens = decoder.out_tokens[:rows, :steps].tolist()
        logprobs = decoder.out_logprobs[:rows, :steps].tolist()
        return tokens, logprobs

    def _sample_first(
        self, outputs: Any, params: SamplingParams, generator: Any
    ) -> tuple[Any, Any]:
        import torch

        logits = outputs.logits[:, -1].float()
        device = logits.device
        noise = (
            None if params.greedy else torch.empty_like(logits).exponential_(generator=generator)
        )
        return sample_tokens(
            logits,
            mode=sampling_mode(params),
            temperature=torch.tensor(params.logprob_temperature, device=device),
            top_k=torch.tensor(params.top_k, device=device),
            top_p=torch.tensor(params.top_p, device=device),
            noise=noise,
            banned=_banned_mask(sorted(self.suppressed_ids), logits.shape[-1], device),
        )

    def _state_for(
        self,
        plan: _StepPlan,
        layout: _CacheLayout,
        filled: tuple[bool, ...],
        bucket: int,
        needed: int,
        vocab: int,
        kwargs: Mapping[str, Any],
        device: Any,
    ) -> _StaticState:
        """A state for this bucket and input layout with room for ``needed`` positions, reused when possible."""
        key = plan.signature(bucket) + (
            layout.fixed_lengths,
            layout.follows_length,
            filled,
            vocab,
            tuple(sorted(self.eos_ids)),
            tuple(sorted(self.suppressed_ids)),
        )
        state = self._states.get(key)
        if state is not None and state.capacity >= needed:
            self._states.move_to_end(key)
            return state
        if state is not None:
            del self._states[key]
        while len(self._states) >= self.config.max_cached_states:
            self._states.popitem(last=False)
        multiple = self.config.cache_len_multiple
        capacity = multiple * math.ceil(needed / multiple)
        cache = _build_static_cache(self.model, bucket, capacity, kwargs)
        state = _StaticState(
            self.model, plan, bucket, capacity, vocab, cache, self.eos_ids, device, sorted(self.suppressed_ids)
        )
        self._states[key] = state
        return state

    def _decode_loop(self, decoder: Any, rows: int, params: SamplingParams) -> int:
        """Step until every row is finished or ``max_new_tokens``; return the steps taken."""
        import torch

        interval = self.config.stop_check_interval
        stops = params.stop_strings
        margin = (
            max((len(s) for s in stops), default=0) + 8
        )  # tokens of overlap between text windows
        synced = self._synced()
        checked = 0
        t = 1
        while True:
            done = self._check(decoder, rows, stops, checked, t, margin)
            checked = t
            if synced:
                import torch.distributed as dist

                flag = torch.tensor([1 if done else 0], device=decoder.finished.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                done = bool(flag.item())
            if done or t >= params.max_new_tokens:
                return t
            steps = min(interval, params.max_new_tokens - t)
            decoder.run(steps)
            t += steps

    def _check(
        self, decoder: Any, rows: int, stops: Sequence[str], checked: int, t: int, margin: int
    ) -> bool:
        """Host check: mark rows whose text reached a stop string; are all rows done?"""
        import torch

        finished = decoder.finished[:rows].cpu()
        if stops and not bool(finished.all()):
            start = max(0, checked - margin)
            window = decoder.out_tokens[:rows, start:t].cpu().tolist()
            hits = []
            for row, ids in enumerate(window):
                if finished[row]:
                    continue
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if any(s in text for s in stops):
                    hits.append(row)
            if hits:
                index = torch.tensor(hits, dtype=torch.long)
                finished[index] = True
                decoder.finished.index_fill_(0, index.to(decoder.finished.device), True)
        return bool(finished.all())
