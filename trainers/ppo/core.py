"""PPO math for multi-turn LLM/VLM training, as pure tensor functions.

Nothing here knows about models, tokenizers or environments: every function
takes tensors and returns tensors, so the PPO loop reads top to bottom and each
piece of the algorithm can be checked by value in a unit test.

Conventions shared by all functions:

* A *step* is one env turn: one model answer (a whole generated sequence) and
  the one reward the verifier gives for it. Rollout buffers are laid out
  ``[num_envs, num_steps]`` -- time is the **last** dimension. Any number of
  leading dimensions works; ``[num_steps]`` alone is one env.
* Per-token tensors are ``[batch, seq_len]`` over the generated completion;
  ``weights`` (or ``mask``) is a float tensor of the same shape that is ``0``
  on padding. For the paper's action log-probability it holds ``0.5`` on
  thought tokens and ``1.0`` on answer tokens (see
  :func:`trainers.common.spans.batch_completion_token_weights`).
* Masked-out positions may hold anything, including ``-inf`` or ``nan``
  log-probabilities from padding: they are removed with :func:`torch.where`,
  never multiplied by zero, so they cannot leak into results or gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "AllReduce",
    "PolicyLossOutput",
    "ValueLossOutput",
    "cosine_schedule_with_warmup",
    "entropy_from_logits",
    "explained_variance",
    "gae",
    "kl_penalty",
    "masked_mean",
    "masked_mean_var",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "normalize_advantages",
    "policy_loss",
    "token_logprobs",
    "value_loss",
]

#: Rows of logits processed at once by the chunked functions. A chunk of 128
#: rows of a 128k vocabulary is 64 MiB in float32, small next to the model.
DEFAULT_CHUNK_ROWS = 128

#: Sums a tensor over every process of a run (``torch.distributed.all_reduce``
#: in a function); the statistics that take one are then those of all processes.
AllReduce = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------
# Masked reductions
# --------------------------------------------------------------------------


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask`` where ``mask != 0`` and exactly ``0`` elsewhere."""
    return torch.where(mask != 0, x * mask.to(x.dtype), 0.0)


def masked_sum(x: Tensor, mask: Tensor | None = None, dim: int | None = None) -> Tensor:
    """Sum of ``x * mask``; where ``mask == 0`` nothing of ``x`` is read (it may be ``nan``)."""
    if mask is not None:
        x = _masked(x, mask)
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: int | None = None) -> Tensor:
    """Weighted mean ``sum(x * mask) / sum(mask)``.

    An empty mask gives ``0`` rather than ``nan``: a minibatch without valid
    tokens then adds nothing to the loss instead of poisoning its gradient.
    """
    if mask is None:
        return x.mean() if dim is None else x.mean(dim)
    weights = torch.where(mask != 0, mask.to(x.dtype), 0.0)
    total = weights.sum() if dim is None else weights.sum(dim)
    safe_total = torch.where(total != 0, total, 1.0)
    return masked_sum(x, mask, dim) / safe_total


def masked_mean_var(
    x: Tensor, mask: Tensor | None = None, unbiased: bool = True, all_reduce: AllReduce | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and variance of the kept entries of ``x`` (``mask != 0``), over every process.

    ``all_reduce`` sums a tensor over the processes (``None``: this one only).
    The mean is reduced first, then the squared deviations from it, so several
    processes get exactly the formula one process would apply to all their
    entries, and no large sums of squares cancel. The variance is ``0`` when
    fewer than two entries (``unbiased``) or none are kept.
    """
    keep = torch.ones_like(x, dtype=torch.bool) if mask is None else mask != 0
    sums = torch.stack([torch.where(keep, x, 0.0).sum(), keep.sum().to(x.dtype)])
    if all_reduce is not None:
        sums = all_reduce(sums)
    total, count = sums[0], sums[1]
    mean = total / torch.where(count != 0, count, 1.0)
    squares = torch.where(keep, (x - mean) ** 2, 0.0).sum()
    if all_reduce is not None:
        squares = all_reduce(squares)
    denom = count - 1 if unbiased else count
    var = torch.where(denom > 0, squares / torch.where(denom > 0, denom, 1.0), 0.0)
    return mean, var


def masked_var(x: Tensor, mask: Tensor | None = None, unbiased: bool = True) -> Tensor:
    """Variance of the kept entries of ``x``; see :func:`masked_mean_var`."""
    return masked_mean_var(x, mask, unbiased)[1]


def masked_whiten(
    x: Tensor,
    mask: Tensor | None = None,
    shift_mean: bool = True,
    eps: float = 1e-8,
    all_reduce: AllReduce | None = None,
) -> Tensor:
    """``(x - mean) * rsqrt(var + eps)`` over the kept entries; masked-out entries become ``0``.

    ``eps`` sits inside the square root so that a buffer of equal entries maps
    to (near) zero instead of blowing rounding noise up by ``1 / eps``. With
    ``shift_mean=False`` the mean is added back (scale only).
    """
    keep = torch.ones_like(x, dtype=torch.bool) if mask is None else mask != 0
    mean, var = masked_mean_var(x, keep, unbiased=True, all_reduce=all_reduce)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(keep, out, 0.0)


def normalize_advantages(
    advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8, all_reduce: AllReduce | None = None
) -> Tensor:
    """Advantages at zero mean and unit variance over the whole rollout buffer.

    The paper normalises per buffer: call it once after :func:`gae`, before
    minibatches are drawn. In a multi-process run pass ``all_reduce`` so every
    process uses the statistics of the whole buffer (all processes); one
    process and N processes then apply the same formula (unbiased variance,
    as ``torch.std`` and cleanrl).
    """
    return masked_whiten(advantages, mask, shift_mean=True, eps=eps, all_reduce=all_reduce)


def explained_variance(
    predictions: Tensor, targets: Tensor, mask: Tensor | None = None, all_reduce: AllReduce | None = None
) -> Tensor:
    """``1 - Var[targets - predictions] / Var[targets]``: how much of the return the critic predicts.

    1 is perfect, 0 no better than a constant, negative worse; ``nan`` when
    the targets do not vary (nothing to explain), as in cleanrl.
    """
    _, target_var = masked_mean_var(targets, mask, all_reduce=all_reduce)
    _, error_var = masked_mean_var(targets - predictions, mask, all_reduce=all_reduce)
    return torch.where(target_var > 0, 1 - error_var / torch.where(target_var > 0, target_var, 1.0), math.nan)


# --------------------------------------------------------------------------
# Generalised advantage estimation over env turns
# --------------------------------------------------------------------------


def gae(
    rewards: Tensor,
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_values: Tensor,
    bootstrap_values: Tensor | None = None,
    gamma: float = 0.9,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and returns over the turns of episodes.

    Time is the last dimension; step ``t`` is one answer with reward
    ``rewards[..., t]`` from a state valued ``values[..., t]``. The value of
    the state after it is:

    * the next column's value while the episode goes on;
    * ``last_values`` after the buffer's last column (the state the next
      rollout continues from);
    * ``bootstrap_values[..., t]`` where ``truncated`` (verification budget
      spent: the episode was cut, not finished, so its return goes on from
      the state it was cut in); may be ``None`` only when nothing is truncated;
    * 0 where ``terminated`` (success); termination wins over truncation,
      as in Gymnasium.

    The recursion ``A_t = delta_t + gamma * lam * A_{t+1}`` is cut after every
    ended step, so no advantage crosses an episode boundary. Returns
    ``(advantages, returns)`` in at least float32, ``returns = advantages +
    values`` (the critic's target).

    Example:
        >>> r = torch.tensor([[0.0, 1.0]]); v = torch.tensor([[0.5, 0.5]])
        >>> no = torch.zeros(1, 2, dtype=torch.bool)
        >>> adv, ret = gae(r, v, no, no, last_values=torch.tensor([2.0]), gamma=1.0, lam=1.0)
        >>> adv.tolist(), ret.tolist()
        ([[2.5, 2.5]], [[3.0, 3.0]])
    """
    shape = rewards.shape
    if rewards.dim() < 1:
        raise ValueError("rewards must have a time dimension (the last one)")
    for name, tensor in (("values", values), ("terminated", terminated), ("truncated", truncated)):
        if tensor.shape != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, rewards {tuple(shape)}")
    if last_values.shape != shape[:-1]:
        raise ValueError(
            f"last_values must have shape {tuple(shape[:-1])} (rewards without the time "
            f"dimension), got {tuple(last_values.shape)}"
        )
    dtype = torch.promote_types(values.dtype, torch.float32)
    rewards, values, last_values = rewards.to(dtype), values.to(dtype), last_values.to(dtype)
    term = terminated.to(torch.bool)
    trunc = truncated.to(torch.bool) & ~term

    next_values = torch.cat([values[..., 1:], last_values.unsqueeze(-1)], dim=-1)
    if bootstrap_values is not None:
        if bootstrap_values.shape != shape:
            raise ValueError(
                f"bootstrap_values has shape {tuple(bootstrap_values.shape)}, rewards {tuple(shape)}"
            )
        next_values = torch.where(trunc, bootstrap_values.to(dtype), next_values)
    elif bool(trunc.any()):
        raise ValueError(
            "some steps are truncated but no bootstrap_values were given: pass the critic's "
            "value of each truncated episode's final observation"
        )
    next_values = torch.where(term, 0.0, next_values)
    deltas = rewards + gamma * next_values - values
    carry = (~(term | trunc)).to(dtype) * (gamma * lam)

    advantages = torch.empty_like(deltas)
    running = torch.zeros(shape[:-1], dtype=dtype, device=values.device)
    for t in range(shape[-1] - 1, -1, -1):
        running = deltas[..., t] + carry[..., t] * running
        advantages[..., t] = running
    return advantages, advantages + values


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


class PolicyLossOutput(NamedTuple):
    """Result of :func:`policy_loss`; the two statistics are detached."""

    loss: Tensor
    #: Share of samples (answers, or tokens) whose gradient the clip switched off.
    clip_fraction: Tensor
    #: KL(old || new) estimated as ``(r - 1) - log r`` (k3: unbiased, never negative).
    approx_kl: Tensor


class ValueLossOutput(NamedTuple):
    """Result of :func:`value_loss`; ``clip_fraction`` (values whose gradient the clip switched off) is detached."""

    loss: Tensor
    clip_fraction: Tensor


def policy_loss(
    new_logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    weights: Tensor,
    clip: float = 0.1,
    level: Literal["sequence", "token"] = "sequence",
    max_log_ratio: float = 20.0,
) -> PolicyLossOutput:
    """PPO's clipped surrogate ``max(-A r, -A clip(r, 1 - c, 1 + c))`` for generated answers.

    ``level="sequence"`` (the paper's): the action is the whole answer, with
    ``log pi(a) = sum_t w_t log pi(x_t)`` (``w`` = 0.5 on thought tokens, 1 on
    the answer), one ratio per answer, mean over answers. ``level="token"``:
    one ratio per token, each token's term scaled by ``w_t``, divided by the
    number of tokens with ``w_t != 0``.

    ``old_logprobs`` must come from the same kind of teacher-forced pass as
    ``new_logprobs`` (log-probs recorded by ``generate`` differ slightly), so
    the first ratio is exactly 1. The log-ratio is clamped to
    ``+-max_log_ratio`` only so a sum over hundreds of tokens cannot overflow
    ``exp`` into a ``nan`` gradient; ``exp(20)`` is far outside any clip.

    Shapes: ``new_logprobs``, ``old_logprobs``, ``weights`` ``[B, L]`` (weights
    0 on padding); ``advantages`` ``[B]``, one per turn.
    """
    if new_logprobs.shape != old_logprobs.shape or new_logprobs.shape != weights.shape:
        raise ValueError(
            f"new_logprobs {tuple(new_logprobs.shape)}, old_logprobs "
            f"{tuple(old_logprobs.shape)} and weights {tuple(weights.shape)} must match"
        )
    if advantages.shape != new_logprobs.shape[:1]:
        raise ValueError(
            f"advantages must be [batch] = {tuple(new_logprobs.shape[:1])}, got "
            f"{tuple(advantages.shape)}"
        )
    dtype = torch.promote_types(new_logprobs.dtype, torch.float32)
    new_logprobs, old_logprobs = new_logprobs.to(dtype), old_logprobs.to(dtype)
    weights, advantages = weights.to(dtype), advantages.to(dtype)

    if level == "sequence":
        new_seq = masked_sum(new_logprobs, weights, dim=-1)
        old_seq = masked_sum(old_logprobs, weights, dim=-1)
        log_ratio = (new_seq - old_seq).clamp(-max_log_ratio, max_log_ratio)
        adv = advantages
        keep = None
    elif level == "token":
        log_ratio = torch.where(weights != 0, new_logprobs - old_logprobs, 0.0)
        log_ratio = log_ratio.clamp(-max_log_ratio, max_log_ratio)
        adv = advantages.unsqueeze(-1)
        keep = weights != 0
    else:
        raise ValueError(f"level must be 'sequence' or 'token', got {level!r}")

    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
    per_sample = torch.maximum(unclipped, clipped)
    with torch.no_grad():
        was_clipped = (clipped > unclipped).to(dtype)
        kl = (ratio - 1.0) - log_ratio

    if keep is None:
        loss = per_sample.mean()
        clip_fraction = was_clipped.mean()
        approx_kl = kl.mean()
    else:
        count = keep.sum().clamp(min=1).to(dtype)
        loss = masked_sum(per_sample, weights) / count
        clip_fraction = masked_mean(was_clipped, keep)
        approx_kl = masked_mean(kl, keep)
    return PolicyLossOutput(loss, clip_fraction.detach(), approx_kl.detach())


def value_loss(
    new_values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    clip: float | None = 0.1,
    mask: Tensor | None = None,
) -> ValueLossOutput:
    """PPO's clipped value loss, ``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, +-c) - R)^2))``.

    ``clip`` (``None``: plain squared error) is in reward units: with the
    paper's 0.1 and rewards of size 1-5 the critic moves slowly. ``mask``
    picks the entries averaged over (``None``: all).
    """
    if new_values.shape != old_values.shape or new_values.shape != returns.shape:
        raise ValueError(
            f"new_values {tuple(new_values.shape)}, old_values {tuple(old_values.shape)} "
            f"and returns {tuple(returns.shape)} must match"
        )
    dtype = torch.promote_types(new_values.dtype, torch.float32)
    new_values, old_values, returns = new_values.to(dtype), old_values.to(dtype), returns.to(dtype)
    unclipped = (new_values - returns) ** 2
    if clip is None:
        return ValueLossOutput(
            0.5 * masked_mean(unclipped, mask), torch.zeros((), dtype=dtype, device=new_values.device)
        )
    moved = old_values + (new_values - old_values).clamp(-clip, clip)
    clipped = (moved - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(dtype), mask)
    return ValueLossOutput(loss, clip_fraction)


def kl_penalty(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor | None = None,
    kind: Literal["k1", "k2", "k3"] = "k1",
) -> Tensor:
    """Per-token estimators of KL(pi || pi_ref) for tokens sampled from ``pi``.

    With ``d = log pi(x) - log pi_ref(x)``: ``k1 = d`` (unbiased, can be
    negative), ``k2 = d^2 / 2`` (biased, low variance), ``k3 = exp(-d) - 1 + d``
    (unbiased and never negative). The estimate is scaled by ``mask`` and
    exactly 0 where it is 0.
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} must match"
        )
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    keep = None if mask is None else mask != 0
    diff = logprobs.to(dtype) - ref_logprobs.to(dtype)
    if keep is not None:  # padding may hold -inf; never let it reach exp()
        diff = torch.where(keep, diff, 0.0)
    if kind == "k1":
        estimate = diff
    elif kind == "k2":
        estimate = 0.5 * diff**2
    elif kind == "k3":
        estimate = torch.expm1(-diff) + diff
    else:
        raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")
    return estimate if mask is None else _masked(estimate, mask)


# --------------------------------------------------------------------------
# Log-probs and entropy from logits, in chunks
# --------------------------------------------------------------------------


def _check_chunk(chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")


def token_logprobs(
    logits: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Tensor:
    """Float32 log-probabilities of ``labels`` under ``softmax(logits / temperature)``.

    ``logits[..., i, :]`` predicts ``labels[..., i]``. Computed as ``logit[label]
    - logsumexp`` ``chunk_rows`` rows at a time, so a float32 ``log_softmax``
    of ``[B, L, vocab]`` never exists. Pass the sampling temperature when the
    result enters the PPO ratio: the ratio is then taken for the distribution
    the answer was sampled from.
    """
    _check_chunk(chunk_rows)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be labels {tuple(labels.shape)} plus a vocab dimension"
        )
    flat = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1, 1).to(torch.long)
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        rows = flat[start : start + chunk_rows].float()
        if temperature != 1.0:
            rows = rows / temperature
        picked = rows.gather(-1, flat_labels[start : start + chunk_rows]).squeeze(-1)
        pieces.append(picked - torch.logsumexp(rows, dim=-1))
    if not pieces:
        return torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    return torch.cat(pieces).reshape(labels.shape)


def entropy_from_logits(
    logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Tensor:
    """Float32 entropy (nats) of ``softmax(logits / temperature)`` at each position; 0 where ``mask`` is 0.

    Chunked like :func:`token_logprobs`: peak extra memory is a few
    ``[chunk_rows, vocab]`` buffers. Call it under ``torch.no_grad()`` when the
    entropy is only logged.
    """
    _check_chunk(chunk_rows)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    flat = logits.reshape(-1, logits.shape[-1])
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        rows = flat[start : start + chunk_rows].float()
        if temperature != 1.0:
            rows = rows / temperature
        # -sum(p * log p) with log p = z - logsumexp(z): unlike the algebraically
        # equal logsumexp(z) - sum(p * z), it does not subtract two large numbers
        # for peaked (e.g. low-temperature) distributions.
        logp = rows - torch.logsumexp(rows, dim=-1, keepdim=True)
        pieces.append((-(torch.exp(logp) * logp).sum(-1)).clamp(min=0.0))
    if not pieces:
        out = torch.zeros(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    else:
        out = torch.cat(pieces).reshape(logits.shape[:-1])
    if mask is not None:
        if mask.shape != out.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must be logits without vocab {tuple(out.shape)}")
        out = torch.where(mask != 0, out, 0.0)
    return out


# --------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------


def cosine_schedule_with_warmup(
    step: int, total: int, warmup: int = 0, min_ratio: float = 0.0
) -> float:
    """Learning-rate multiplier: linear warmup, then cosine decay to ``min_ratio``.

    ``step`` counts optimizer steps and ``total`` those of the *whole run*
    (updates x epochs x minibatches), so the rate decays over the run instead
    of restarting every update. Warmup gives ``(step + 1) / warmup`` (the first
    step already trains); past ``total`` the multiplier stays ``min_ratio``.

    Example:
        >>> [round(cosine_schedule_with_warmup(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if not 0 <= warmup <= total:
        raise ValueError(f"warmup must be in [0, total={total}], got {warmup}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return min_ratio
    progress = (step - warmup) / (total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
