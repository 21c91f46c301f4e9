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
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "PolicyLossOutput",
    "ValueLossOutput",
    "cosine_schedule_with_warmup",
    "entropy_from_logits",
    "gae",
    "kl_penalty",
    "masked_mean",
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


# --------------------------------------------------------------------------
# Masked reductions
# --------------------------------------------------------------------------


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask`` where ``mask != 0`` and exactly ``0`` elsewhere."""
    return torch.where(mask != 0, x * mask.to(x.dtype), 0.0)


def masked_sum(x: Tensor, mask: Tensor | None = None, dim: int | None = None) -> Tensor:
    """Sum of ``x * mask``; positions where ``mask == 0`` are ignored entirely.

    Args:
        x: Values, any shape.
        mask: Same shape as ``x`` (bool or float weights), or ``None`` for all.
        dim: Dimension to reduce; ``None`` reduces everything.

    Returns:
        The weighted sum (a scalar when ``dim`` is ``None``).
    """
    if mask is not None:
        x = _masked(x, mask)
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: int | None = None) -> Tensor:
    """Weighted mean ``sum(x * mask) / sum(mask)``.

    With a 0/1 mask this is the mean over the kept positions. An empty mask
    gives ``0`` rather than ``nan``: a minibatch without valid tokens then adds
    nothing to the loss instead of poisoning it (and its gradient) with ``nan``.

    Args:
        x: Values, any shape.
        mask: Same shape as ``x`` (bool or float weights), or ``None`` for all.
        dim: Dimension to reduce; ``None`` reduces everything.

    Returns:
        The weighted mean (a scalar when ``dim`` is ``None``).
    """
    if mask is None:
        return x.mean() if dim is None else x.mean(dim)
    weights = torch.where(mask != 0, mask.to(x.dtype), 0.0)
    total = weights.sum() if dim is None else weights.sum(dim)
    safe_total = torch.where(total != 0, total, 1.0)
    return masked_sum(x, mask, dim) / safe_total


def masked_var(x: Tensor, mask: Tensor | None = None, unbiased: bool = True) -> Tensor:
    """Variance of the kept entries of ``x`` (over all dimensions).

    The mask is read as membership (``mask != 0``), not as weights.

    Args:
        x: Values, any shape.
        mask: Same shape as ``x``, or ``None`` for all.
        unbiased: Divide by ``n - 1`` (Bessel's correction) when ``n > 1``.

    Returns:
        A scalar; ``0`` when fewer than two entries (``unbiased``) or none are kept.
    """
    keep = torch.ones_like(x, dtype=torch.bool) if mask is None else mask != 0
    count = keep.sum().to(x.dtype)
    mean = masked_mean(x, keep)
    squares = masked_sum((x - mean) ** 2, keep)
    denom = count - 1 if unbiased else count
    safe = torch.where(denom > 0, denom, 1.0)
    return torch.where(denom > 0, squares / safe, 0.0)


def masked_whiten(
    x: Tensor, mask: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> Tensor:
    """Scale ``x`` to unit variance (and zero mean) over its kept entries.

    Computed as ``(x - mean) * rsqrt(var + eps)``; with ``eps`` inside the
    square root a buffer whose entries are all equal maps to (near) zero instead
    of blowing float rounding noise up by ``1 / eps``.

    Args:
        x: Values, any shape; statistics are taken over all kept entries.
        mask: Same shape as ``x`` (membership: ``mask != 0``), or ``None``.
        shift_mean: If ``False`` the mean is added back (scale only).
        eps: Added to the variance.

    Returns:
        Tensor shaped like ``x``; masked-out entries are ``0``.
    """
    keep = torch.ones_like(x, dtype=torch.bool) if mask is None else mask != 0
    mean = masked_mean(x, keep)
    var = masked_var(x, keep, unbiased=True)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(keep, out, 0.0)


def normalize_advantages(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Normalise advantages to zero mean and unit variance over one buffer.

    The paper normalises per buffer: call this once on the whole rollout
    buffer (all envs and steps of this process) after :func:`gae`, before
    splitting it into minibatches. Statistics are per process; a multi-process
    run that wants global statistics must all-reduce them itself.

    Args:
        advantages: Advantages, any shape (e.g. ``[num_envs, num_steps]``).
        mask: Entries to use (and keep), or ``None`` for all.
        eps: See :func:`masked_whiten`.

    Returns:
        Normalised advantages shaped like the input; masked-out entries ``0``.
    """
    return masked_whiten(advantages, mask, shift_mean=True, eps=eps)


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

    Time runs along the last dimension. Step ``t`` is: observation ``s_t``,
    critic value ``values[..., t] = V(s_t)``, one model answer, reward
    ``rewards[..., t]``, then either the episode goes on with ``s_{t+1}`` as
    the next column, or it ends at ``t`` and the next column is the first step
    of a new episode (auto-reset). How the value of ``s_{t+1}`` is taken:

    * episode goes on, ``t < T - 1``: ``values[..., t + 1]``;
    * episode goes on past the buffer's end (``t = T - 1``): ``last_values``,
      the critic's value of the observation the next rollout continues from;
    * ``truncated[..., t]`` (time limit, verification budget spent): the episode
      was cut, not finished, so the return is bootstrapped from
      ``bootstrap_values[..., t]``, the critic's value of the final observation
      of that episode (the state it was cut in);
    * ``terminated[..., t]`` (success, or any true end of the task): the value
      of what follows is ``0``; no bootstrap. If both flags are set,
      termination wins, as in Gymnasium.

    Advantages never flow across an episode boundary: the recursion
    ``A_t = delta_t + gamma * lam * A_{t+1}`` is cut after every ended step.

    Args:
        rewards: ``[..., T]`` reward of each step.
        values: ``[..., T]`` critic values ``V(s_t)`` recorded at rollout time.
        terminated: ``[..., T]`` bool, episode ended at ``t`` by termination.
        truncated: ``[..., T]`` bool, episode ended at ``t`` by truncation.
        last_values: ``[...]`` value of the observation after the buffer's last
            step (ignored where that step ended its episode).
        bootstrap_values: ``[..., T]``; read only where ``truncated`` (and not
            ``terminated``). May be ``None`` only if nothing was truncated.
        gamma: Discount per turn (paper: 0.9).
        lam: GAE lambda (paper: 0.95).

    Returns:
        ``(advantages, returns)``, both ``[..., T]`` in at least float32;
        ``returns = advantages + values`` is the critic's regression target.

    Raises:
        ValueError: On shape mismatch, or truncated steps without
            ``bootstrap_values``.

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
    """Result of :func:`policy_loss`.

    Attributes:
        loss: Scalar to minimise (has a gradient).
        clip_fraction: Share of samples (sequences, or tokens at token level)
            whose clipped term was strictly the larger one, i.e. whose gradient
            the clip switched off. Detached.
        approx_kl: Estimate of KL(old || new) with the ``(r - 1) - log r``
            form (Schulman's k3; unbiased and never negative), ``r = pi_new /
            pi_old`` of the sampled action. Detached.
    """

    loss: Tensor
    clip_fraction: Tensor
    approx_kl: Tensor


class ValueLossOutput(NamedTuple):
    """Result of :func:`value_loss`.

    Attributes:
        loss: Scalar to minimise (has a gradient).
        clip_fraction: Share of values whose clipped error was strictly larger
            (their gradient is switched off). Detached.
    """

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
    """PPO's clipped surrogate loss for generated sequences.

    Two ways to form the probability ratio:

    * ``level="sequence"`` (default, the paper's choice): the action is the
      whole answer, with log-probability ``log pi(a) = sum_t w_t log pi(x_t)``
      -- with the paper's weights, ``0.5 * (thought tokens) + 1.0 * (answer
      tokens)``. One ratio per sequence,
      ``r = exp(log pi_new(a) - log pi_old(a))``, is clipped, and the loss is
      the mean over sequences of ``max(-A r, -A clip(r, 1 - c, 1 + c))``.
    * ``level="token"``: one ratio per token, ``r_t = exp(log pi_new(x_t) -
      log pi_old(x_t))``, each clipped on its own; token ``t``'s clipped
      objective is scaled by ``w_t`` and the loss is the sum over the batch
      divided by the number of tokens with ``w_t != 0`` (a token-level mean,
      so long answers weigh more than short ones). The weights thus play the
      same role as in the sequence form: they scale each token's gradient.

    ``old_logprobs`` must come from the same kind of forward pass as
    ``new_logprobs`` (teacher-forced over prompt + completion, same dtype and
    temperature) so that the ratio is exactly 1 before the first update;
    log-probs recorded by ``generate`` can differ slightly and would start the
    ratio off 1.

    The log-ratio is clamped to ``[-max_log_ratio, max_log_ratio]`` before
    ``exp`` only to keep the loss finite: ``exp(20)`` is far outside any clip
    range, so the clamp changes nothing while PPO behaves, but a sequence-level
    log-ratio summed over hundreds of tokens could otherwise overflow to
    ``inf`` and turn the gradient into ``nan``.

    Args:
        new_logprobs: ``[B, L]`` per-token log-probs under the current policy
            (with gradient).
        old_logprobs: ``[B, L]`` per-token log-probs recorded at rollout time.
        advantages: ``[B]`` one advantage per sequence (per env turn).
        weights: ``[B, L]`` per-token weights (``0`` on padding).
        clip: PPO clip range ``c`` (paper: 0.1).
        level: ``"sequence"`` or ``"token"``, see above.
        max_log_ratio: Clamp for the log-ratio, see above.

    Returns:
        :class:`PolicyLossOutput` ``(loss, clip_fraction, approx_kl)``.

    Raises:
        ValueError: On shape mismatch or an unknown ``level``.
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
    """PPO's clipped value loss.

    The new value may move at most ``clip`` away from the value recorded at
    rollout time before its error stops pulling it further:
    ``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``.
    Note that ``clip`` is in reward units (paper: 0.1, rewards of size 1-5),
    so with the paper's setting the critic moves slowly.

    Args:
        new_values: ``[B]`` (or any shape) values from the current critic.
        old_values: Values recorded at rollout time, same shape.
        returns: Regression targets (from :func:`gae`), same shape.
        clip: Clip range, or ``None`` for the plain squared error.
        mask: Entries to average over, or ``None`` for all.

    Returns:
        :class:`ValueLossOutput` ``(loss, clip_fraction)``.
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

    With ``d = log pi(x) - log pi_ref(x)``:

    * ``k1 = d``: unbiased, can be negative per token;
    * ``k2 = d^2 / 2``: biased, low variance, never negative;
    * ``k3 = exp(-d) - 1 + d``: unbiased and never negative.

    Sum the result over a sequence for a per-turn penalty, or average it with
    :func:`masked_mean` for a metric.

    Args:
        logprobs: ``[B, L]`` log-probs of the sampled tokens under the policy.
        ref_logprobs: ``[B, L]`` the same tokens under the reference model.
        mask: ``[B, L]``; the estimate is multiplied by it (so weights scale it)
            and is exactly ``0`` where it is ``0``. ``None`` keeps everything.
        kind: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``[B, L]`` per-token estimates.
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
    """Log-probabilities of ``labels`` under ``softmax(logits / temperature)``.

    Computed as ``logit[label] - logsumexp(logits)`` in float32, ``chunk_rows``
    rows at a time, so a full float32 ``log_softmax`` of ``[B, L, vocab]`` is
    never materialised. Gradients flow to ``logits``.

    Pass the sampling temperature when the log-probs enter the PPO ratio, so
    that the ratio is taken for the distribution the actions were sampled
    from.

    Args:
        logits: ``[..., vocab]`` scores predicting each label (already shifted
            so that ``logits[..., i, :]`` predicts ``labels[..., i]``).
        labels: ``[...]`` token ids (int64).
        temperature: Divides the logits; must be positive.
        chunk_rows: Rows per chunk.

    Returns:
        ``[...]`` float32 log-probabilities.
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
    """Entropy of ``softmax(logits / temperature)`` at each position.

    ``H = -sum(p * log p)`` with ``log p = z - logsumexp(z)``, in float32, ``chunk_rows`` rows
    at a time: peak extra memory is a few ``[chunk_rows, vocab]`` float32
    buffers instead of several ``[B, L, vocab]`` ones. Call it under
    ``torch.no_grad()`` when the entropy is only logged; with gradients,
    autograd keeps each chunk's softmax for the backward pass.

    Args:
        logits: ``[..., vocab]``.
        mask: ``[...]``; the entropy is ``0`` where it is ``0``.
        temperature: Divides the logits (use the sampling temperature to get
            the entropy of the distribution actually sampled from).
        chunk_rows: Rows per chunk.

    Returns:
        ``[...]`` float32 entropies in nats.
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

    ``step`` counts optimizer steps from 0 and ``total`` is the number of
    optimizer steps in the *whole run* (PPO iterations x epochs x minibatches),
    so the rate really decays over the run instead of restarting each update.

    * ``step < warmup``: ``(step + 1) / warmup`` -- the first step already
      trains (a multiplier of 0 would waste it) and step ``warmup - 1`` reaches 1.
    * ``warmup <= step <= total``: ``min_ratio + (1 - min_ratio) * (1 +
      cos(pi * p)) / 2`` with ``p = (step - warmup) / (total - warmup)``: 1 at
      the end of warmup, ``min_ratio`` at ``step == total``.
    * ``step > total``: ``min_ratio``.

    Use it with ``torch.optim.lr_scheduler.LambdaLR(opt, lambda s:
    cosine_schedule_with_warmup(s, total, warmup, min_ratio))``.

    Args:
        step: Optimizer steps taken so far (>= 0).
        total: Optimizer steps in the run (>= 1).
        warmup: Warmup steps, ``0 <= warmup <= total``.
        min_ratio: Final multiplier, in ``[0, 1]``.

    Returns:
        The multiplier for the base learning rate.

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
