"""Tests for trainers.ppo.core: the PPO math, checked by value."""

from __future__ import annotations

import doctest
import math
import random
import threading

import pytest
import torch

from trainers.ppo import core
from trainers.ppo.core import (
    cosine_schedule_with_warmup,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    normalize_advantages,
    policy_loss,
    token_logprobs,
    value_loss,
)


def test_doctests():
    result = doctest.testmod(core)
    assert result.attempted >= 3 and result.failed == 0


# --------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------


def reference_gae(rewards, values, terminated, truncated, last_values, bootstrap, gamma, lam):
    """Plain-Python GAE, one env row at a time, written from the definitions."""
    advantages = []
    for env in range(len(rewards)):
        row = [0.0] * len(rewards[env])
        horizon = len(rewards[env])
        following = 0.0  # advantage of the next step of the same episode
        for t in reversed(range(horizon)):
            if terminated[env][t]:
                next_value, ended = 0.0, True
            elif truncated[env][t]:
                next_value, ended = bootstrap[env][t], True
            elif t == horizon - 1:
                next_value, ended = last_values[env], False
            else:
                next_value, ended = values[env][t + 1], False
            delta = rewards[env][t] + gamma * next_value - values[env][t]
            following = delta + (0.0 if ended else gamma * lam * following)
            row[t] = following
        advantages.append(row)
    return advantages


def _gae_lists(**kw):
    tensors = {k: torch.tensor(v) for k, v in kw.items() if k not in ("gamma", "lam")}
    adv, ret = gae(
        tensors["rewards"],
        tensors["values"],
        tensors["terminated"],
        tensors["truncated"],
        tensors["last_values"],
        tensors.get("bootstrap_values"),
        gamma=kw.get("gamma", 0.9),
        lam=kw.get("lam", 0.95),
    )
    return adv.tolist(), ret.tolist()


def test_gae_termination_does_not_bootstrap():
    adv, ret = _gae_lists(
        rewards=[[0.0, 5.0]],
        values=[[1.0, 2.0]],
        terminated=[[False, True]],
        truncated=[[False, False]],
        last_values=[100.0],  # must be ignored: the episode ended
    )
    # delta_1 = 5 - 2 = 3; delta_0 = 0 + 0.9 * 2 - 1 = 0.8; A_0 = 0.8 + 0.855 * 3
    assert adv[0] == pytest.approx([3.365, 3.0])
    assert ret[0] == pytest.approx([4.365, 5.0])


def test_gae_truncation_bootstraps_from_final_observation():
    adv, ret = _gae_lists(
        rewards=[[0.0, -1.0]],
        values=[[1.0, 2.0]],
        terminated=[[False, False]],
        truncated=[[False, True]],
        last_values=[100.0],  # belongs to the next episode: must be ignored
        bootstrap_values=[[-50.0, 4.0]],  # only read at truncated steps
    )
    # delta_1 = -1 + 0.9 * 4 - 2 = 0.6; delta_0 = 0.8; A_0 = 0.8 + 0.855 * 0.6
    assert adv[0] == pytest.approx([1.313, 0.6])
    assert ret[0] == pytest.approx([2.313, 2.6])


def test_gae_continuing_episode_bootstraps_from_last_values():
    adv, _ = _gae_lists(
        rewards=[[0.0, -1.0]],
        values=[[1.0, 2.0]],
        terminated=[[False, False]],
        truncated=[[False, False]],
        last_values=[4.0],
    )
    assert adv[0] == pytest.approx([1.313, 0.6])  # same numbers as the truncated case


def test_gae_is_cut_at_episode_boundaries():
    common = dict(rewards=[[-1.0, 5.0]], values=[[1.0, 2.0]], last_values=[3.0])
    # Episode ends (terminated) at step 0; step 1 starts a new episode.
    adv, _ = _gae_lists(terminated=[[True, False]], truncated=[[False, False]], **common)
    assert adv[0] == pytest.approx([-2.0, 5.7])  # delta_0 = -1 - 1; delta_1 = 5 + 2.7 - 2
    # Truncated at step 0: bootstrap from the final observation, still no carry-over.
    adv, _ = _gae_lists(
        terminated=[[False, False]],
        truncated=[[True, False]],
        bootstrap_values=[[10.0, 0.0]],
        **common,
    )
    assert adv[0] == pytest.approx([7.0, 5.7])  # -1 + 9 - 1


def test_gae_termination_wins_over_truncation():
    adv, _ = _gae_lists(
        rewards=[[1.0]],
        values=[[0.5]],
        terminated=[[True]],
        truncated=[[True]],
        last_values=[9.0],
        bootstrap_values=[[9.0]],
    )
    assert adv[0] == pytest.approx([0.5])


def test_gae_matches_reference_loop_on_random_buffers():
    rng = random.Random(0)
    for _ in range(20):
        num_envs, horizon = rng.randint(1, 4), rng.randint(1, 12)
        gamma, lam = rng.uniform(0.5, 1.0), rng.uniform(0.0, 1.0)
        rewards = [[rng.uniform(-3, 5) for _ in range(horizon)] for _ in range(num_envs)]
        values = [[rng.uniform(-2, 2) for _ in range(horizon)] for _ in range(num_envs)]
        boot = [[rng.uniform(-2, 2) for _ in range(horizon)] for _ in range(num_envs)]
        term = [[rng.random() < 0.2 for _ in range(horizon)] for _ in range(num_envs)]
        trunc = [[rng.random() < 0.2 for _ in range(horizon)] for _ in range(num_envs)]
        last = [rng.uniform(-2, 2) for _ in range(num_envs)]
        expected = reference_gae(rewards, values, term, trunc, last, boot, gamma, lam)
        adv, ret = _gae_lists(
            rewards=rewards,
            values=values,
            terminated=term,
            truncated=trunc,
            last_values=last,
            bootstrap_values=boot,
            gamma=gamma,
            lam=lam,
        )
        for env in range(num_envs):
            assert adv[env] == pytest.approx(expected[env], abs=1e-5)
            assert ret[env] == pytest.approx(
                [a + v for a, v in zip(expected[env], values[env], strict=True)], abs=1e-5
            )


def test_gae_leading_dimensions_and_dtype():
    torch.manual_seed(0)
    shape = (2, 3, 5)
    rewards, values, boot = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    term, trunc = torch.rand(shape) < 0.2, torch.rand(shape) < 0.2
    last = torch.randn(shape[:-1])
    adv, ret = gae(rewards, values.half(), term, trunc, last, boot)
    flat_adv, _ = gae(
        rewards.reshape(6, 5),
        values.half().reshape(6, 5),
        term.reshape(6, 5),
        trunc.reshape(6, 5),
        last.reshape(6),
        boot.reshape(6, 5),
    )
    assert adv.dtype == torch.float32 and ret.shape == shape
    assert torch.allclose(adv.reshape(6, 5), flat_adv)
    single, _ = gae(rewards[0, 0], values[0, 0], term[0, 0], trunc[0, 0], last[0, 0], boot[0, 0])
    assert torch.allclose(single, gae(rewards, values, term, trunc, last, boot)[0][0, 0])


def test_gae_rejects_bad_inputs():
    r = torch.zeros(1, 3)
    no = torch.zeros(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="bootstrap_values"):
        gae(r, r, no, torch.tensor([[False, True, False]]), torch.zeros(1))
    with pytest.raises(ValueError, match="last_values"):
        gae(r, r, no, no, torch.zeros(3))
    with pytest.raises(ValueError, match="values"):
        gae(r, torch.zeros(1, 2), no, no, torch.zeros(1))
    with pytest.raises(ValueError, match="bootstrap_values"):
        gae(r, r, no, no, torch.zeros(1), torch.zeros(3))


# --------------------------------------------------------------------------
# Masked helpers and advantage normalisation
# --------------------------------------------------------------------------


def test_masked_reductions_by_hand():
    x = torch.tensor([[1.0, 2.0, float("-inf")], [4.0, float("nan"), 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
    assert masked_sum(x, mask).item() == pytest.approx(1 + 2 + 2 + 6)
    assert masked_sum(x, mask, dim=-1).tolist() == pytest.approx([3.0, 8.0])
    assert masked_mean(x, mask).item() == pytest.approx(11 / 3.5)
    assert masked_mean(x, mask, dim=-1).tolist() == pytest.approx([1.5, 8 / 1.5])
    keep = mask != 0
    assert masked_var(x, keep).item() == pytest.approx(
        torch.tensor([1.0, 2.0, 4.0, 6.0]).var().item()
    )
    assert masked_var(x, keep, unbiased=False).item() == pytest.approx(
        torch.tensor([1.0, 2.0, 4.0, 6.0]).var(unbiased=False).item()
    )
    # An empty mask gives 0, not nan.
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    assert masked_var(torch.tensor([3.0]), None).item() == 0.0


def test_masked_mean_gradient_ignores_garbage_positions():
    x = torch.tensor([1.0, 2.0, float("inf")], requires_grad=True)
    masked_mean(x, torch.tensor([1.0, 1.0, 0.0])).backward()
    assert x.grad.tolist() == [0.5, 0.5, 0.0]


def test_normalize_advantages_per_buffer():
    torch.manual_seed(1)
    adv = torch.randn(4, 8) * 3 + 2
    mask = torch.rand(4, 8) > 0.3
    out = normalize_advantages(adv, mask)
    kept = out[mask]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (out[~mask] == 0).all()
    expected = (adv[mask] - adv[mask].mean()) / adv[mask].std()
    assert torch.allclose(kept, expected, atol=1e-5)
    # Degenerate buffers: constant or a single entry map to zero, never inf/nan.
    assert torch.allclose(normalize_advantages(torch.full((5,), 7.0)), torch.zeros(5), atol=1e-3)
    assert normalize_advantages(torch.tensor([3.0])).tolist() == [0.0]


def threads_all_reduce(n: int):
    """``torch.distributed.all_reduce``'s sum for ``n`` threads standing in for ``n`` processes."""
    lock = threading.Lock()
    state = {"sum": None}
    added = threading.Barrier(n, timeout=30)  # a failing thread breaks the barrier instead of hanging the rest
    read = threading.Barrier(n, action=lambda: state.update(sum=None), timeout=30)

    def all_reduce(x):
        with lock:
            state["sum"] = x.clone() if state["sum"] is None else state["sum"] + x
        added.wait()
        total = state["sum"].clone()
        read.wait()
        return total

    return all_reduce


def run_as_processes(fn, shards):
    """``fn(shard, all_reduce)`` on every shard at once, as a multi-process run would; results in order."""
    all_reduce = threads_all_reduce(len(shards))
    results = [None] * len(shards)

    def work(k):
        results[k] = fn(shards[k], all_reduce)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(shards))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in results), "a stand-in process failed"
    return results


def test_advantages_are_normalised_alike_in_one_and_in_several_processes():
    """One formula (unbiased variance of the whole buffer) whether the buffer sits in one
    process or is split over three, as a multi-process run splits it."""
    torch.manual_seed(0)
    data = torch.randn(3, 4, 6) * 2.5 + 1.0
    whole = normalize_advantages(data)
    assert torch.allclose(whole, (data - data.mean()) / data.std(), atol=1e-5)
    split = run_as_processes(lambda shard, reduce: normalize_advantages(shard, all_reduce=reduce), list(data))
    assert torch.allclose(torch.stack(split), whole, atol=1e-6)
    # The same with masks, and with a process whose entries are all masked out.
    mask = torch.rand(3, 4, 6) > 0.4
    mask[2] = False
    whole = normalize_advantages(data, mask)
    split = run_as_processes(lambda s, reduce: normalize_advantages(s[0], s[1], all_reduce=reduce),
                             list(zip(data, mask, strict=True)))
    assert torch.allclose(torch.stack(split), whole, atol=1e-6)
    assert torch.allclose(whole[mask], (data[mask] - data[mask].mean()) / data[mask].std(), atol=1e-5)


def test_explained_variance_by_value():
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # Errors [0, 0, 0, 1]: variance 0.1875 against the targets' 1.25 (both without Bessel; it cancels).
    assert explained_variance(torch.tensor([1.0, 2.0, 3.0, 3.0]), targets).item() == pytest.approx(1 - 0.1875 / 1.25)
    assert explained_variance(targets.clone(), targets).item() == 1.0
    assert explained_variance(torch.full((4,), 2.5), targets).item() == pytest.approx(0.0)
    assert explained_variance(torch.full((4,), 9.0), targets).item() == pytest.approx(0.0)  # a constant offset
    assert explained_variance(-targets, targets).item() == pytest.approx(1 - 4.0)
    assert math.isnan(explained_variance(targets, torch.full((4,), 3.0)).item())  # nothing to explain
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert explained_variance(torch.tensor([1.0, 2.0, 3.0, -50.0]), targets, mask).item() == 1.0
    torch.manual_seed(1)
    values, returns = torch.randn(2, 8), torch.randn(2, 8)
    split = run_as_processes(lambda s, reduce: explained_variance(s[0], s[1], all_reduce=reduce),
                             list(zip(values, returns, strict=True)))
    whole = explained_variance(values, returns)
    assert all(math.isclose(x.item(), whole.item(), rel_tol=1e-5) for x in split)


def test_masked_whiten_without_shift_keeps_mean():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = masked_whiten(x, shift_mean=False)
    assert out.mean().item() == pytest.approx(2.5)
    assert (out - 2.5).std().item() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------
# Policy loss
# --------------------------------------------------------------------------

# Four sequences of three tokens; the third token is padding (weight 0). The
# sequence log-ratio is 0.5 * d0 + 1.0 * d1 with d = new - old.
WEIGHTS = torch.tensor([[0.5, 1.0, 0.0]] * 4)
OLD = torch.tensor([[-1.0, -2.0, 0.0]] * 4)


def _new_logprobs(seq_log_ratios, thought_share=0.3):
    """New log-probs whose weighted log-ratio to OLD is each of ``seq_log_ratios``."""
    rows = []
    for lr in seq_log_ratios:
        d0 = thought_share * lr / 0.5
        d1 = (1 - thought_share) * lr
        rows.append([-1.0 + d0, -2.0 + d1, float("-inf")])  # padding holds garbage
    return torch.tensor(rows, requires_grad=True)


def test_policy_loss_sequence_level_clipping_by_hand():
    ratios = [1.05, 1.2, 0.8, 0.95]
    adv = torch.tensor([1.0, 2.0, -1.0, -3.0])
    new = _new_logprobs([math.log(r) for r in ratios])
    out = policy_loss(new, OLD, adv, WEIGHTS, clip=0.1)
    # per sequence: max(-A r, -A clip(r, 0.9, 1.1))
    expected = [
        -1.0 * 1.05,  # inside the clip range
        -2.0 * 1.1,  # A > 0, r above 1 + c: clipped (no gain for moving further)
        max(0.8, 0.9),  # A < 0, r below 1 - c: clipped
        3.0 * 0.95,  # A < 0, inside
    ]
    assert out.loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    kl = sum((r - 1) - math.log(r) for r in ratios) / 4
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-4)
    assert not out.clip_fraction.requires_grad and not out.approx_kl.requires_grad

    out.loss.backward()
    grad = new.grad
    # Clipped sequences get no gradient at all; padding never does.
    assert torch.all(grad[1] == 0) and torch.all(grad[2] == 0)
    assert torch.all(grad[:, 2] == 0)
    # Unclipped ones: d loss / d logp_t = -A * r * w_t / B.
    for i in (0, 3):
        expected_grad = -adv[i] * ratios[i] * WEIGHTS[i, :2] / 4
        assert torch.allclose(grad[i, :2], expected_grad, rtol=1e-5)


def test_policy_loss_other_side_of_the_clip_keeps_gradient():
    # Outside the range on the side where the unclipped term is larger: PPO's
    # pessimistic bound keeps it, so the gradient still flows.
    ratios = [0.8, 1.2]
    adv = torch.tensor([1.0, -1.0])
    new = _new_logprobs([math.log(r) for r in ratios])
    out = policy_loss(new, OLD[:2], adv, WEIGHTS[:2], clip=0.1)
    assert out.loss.item() == pytest.approx((-0.8 + 1.2) / 2, rel=1e-5)
    assert out.clip_fraction.item() == 0.0
    out.loss.backward()
    assert torch.all(new.grad[:, :2] != 0)


def test_policy_loss_at_the_clip_boundary_and_at_ratio_one():
    new = _new_logprobs([math.log(1.1), 0.0])
    adv = torch.tensor([2.0, -0.5])
    out = policy_loss(new, OLD[:2], adv, WEIGHTS[:2], clip=0.1)
    # At r = 1 + c both terms are equal: same value either way, and not counted as clipped.
    assert out.loss.item() == pytest.approx((-2.0 * 1.1 + 0.5) / 2, rel=1e-5)
    assert out.clip_fraction.item() == 0.0
    # Before any update (new == old) the loss is -mean(A) and the KL is 0.
    same = policy_loss(OLD[:2].clone(), OLD[:2], adv, WEIGHTS[:2], clip=0.1)
    assert same.loss.item() == pytest.approx(-0.75)
    assert same.approx_kl.item() == 0.0


def test_policy_loss_weights_scale_the_sequence_log_prob():
    # Thought tokens count half: a change of +0.2 on the thought token alone
    # gives ratio exp(0.1), a change on the answer token alone exp(0.2).
    new = torch.tensor([[-0.8, -2.0, 0.0], [-1.0, -1.8, 0.0]])
    out = policy_loss(new, OLD[:2], torch.tensor([1.0, 0.0]), WEIGHTS[:2], clip=1.0)
    assert out.loss.item() == pytest.approx(-math.exp(0.1) / 2, rel=1e-5)


def test_policy_loss_token_level_by_hand():
    old = torch.zeros(2, 3)
    token_ratios = torch.tensor([[1.05, 1.3, 1.0], [0.7, 0.98, 1.0]])
    new = token_ratios.log().clone().requires_grad_(True)
    weights = torch.tensor([[0.5, 1.0, 0.0], [0.5, 1.0, 1.0]])
    adv = torch.tensor([1.0, -2.0])
    out = policy_loss(new, old, adv, weights, clip=0.1, level="token")
    per_token = [
        [0.5 * -1.05, 1.0 * -1.1, 0.0],  # second token clipped (A > 0, r > 1.1)
        [0.5 * 2 * 0.9, 1.0 * 2 * 0.98, 1.0 * 2 * 1.0],  # first clipped (A < 0, r < 0.9)
    ]
    assert out.loss.item() == pytest.approx(sum(map(sum, per_token)) / 5, rel=1e-5)
    assert out.clip_fraction.item() == pytest.approx(2 / 5)
    kl = [(r - 1) - math.log(r) for r in (1.05, 1.3, 0.7, 0.98, 1.0)]
    assert out.approx_kl.item() == pytest.approx(sum(kl) / 5, rel=1e-4)
    out.loss.backward()
    grad = new.grad
    assert grad[0, 1] == 0 and grad[1, 0] == 0 and grad[0, 2] == 0
    assert grad[0, 0].item() == pytest.approx(-1.0 * 1.05 * 0.5 / 5, rel=1e-5)
    assert grad[1, 1].item() == pytest.approx(2.0 * 0.98 * 1.0 / 5, rel=1e-5)


def test_policy_loss_stays_finite_for_huge_log_ratios():
    new = torch.tensor([[400.0, 400.0, 0.0], [-400.0, -400.0, 0.0]], requires_grad=True)
    out = policy_loss(new, OLD[:2], torch.tensor([-1.0, 1.0]), WEIGHTS[:2])
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(new.grad).all()
    assert torch.isfinite(out.approx_kl)


def test_policy_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="level"):
        policy_loss(OLD, OLD, torch.zeros(4), WEIGHTS, level="word")
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(OLD, OLD, torch.zeros(4, 1), WEIGHTS)
    with pytest.raises(ValueError, match="must match"):
        policy_loss(OLD, OLD[:, :2], torch.zeros(4), WEIGHTS)


# --------------------------------------------------------------------------
# Value loss
# --------------------------------------------------------------------------


def test_value_loss_clipping_by_hand():
    new = torch.tensor([1.5, 0.5, 1.05, 3.0], requires_grad=True)
    old = torch.tensor([1.0, 1.0, 1.0, 1.0])
    ret = torch.tensor([2.0, 0.0, 2.0, 2.0])
    out = value_loss(new, old, ret, clip=0.1)
    # 1: clipped to 1.1 -> 0.81 > 0.25 (clip active); 2: clipped 0.9 -> 0.81 > 0.25;
    # 3: inside -> 0.9025 both; 4: moved past the target, unclipped error 1 > 0.81.
    squares = [0.81, 0.81, 0.9025, 1.0]
    assert out.loss.item() == pytest.approx(0.5 * sum(squares) / 4, rel=1e-5)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    out.loss.backward()
    assert new.grad[0] == 0 and new.grad[1] == 0
    assert new.grad[2].item() == pytest.approx((1.05 - 2.0) / 4, rel=1e-5)
    assert new.grad[3].item() == pytest.approx((3.0 - 2.0) / 4, rel=1e-5)


def test_value_loss_without_clip_and_with_mask():
    new = torch.tensor([1.5, 0.0], requires_grad=True)
    ret = torch.tensor([2.0, 100.0])
    out = value_loss(new, torch.zeros(2), ret, clip=None, mask=torch.tensor([1.0, 0.0]))
    assert out.loss.item() == pytest.approx(0.125)
    assert out.clip_fraction.item() == 0.0
    with pytest.raises(ValueError):
        value_loss(new, torch.zeros(3), ret)


# --------------------------------------------------------------------------
# KL estimators, log-probs and entropy
# --------------------------------------------------------------------------


def test_kl_estimators_against_closed_forms():
    torch.manual_seed(2)
    p = torch.softmax(torch.randn(7), -1)
    q = torch.softmax(torch.randn(7), -1)
    kl = (p * (p.log() - q.log())).sum().item()
    # Every support element as one "sampled token"; the expectation under p is
    # the p-weighted sum of the per-token estimates.
    logp, logq = p.log().unsqueeze(0), q.log().unsqueeze(0)
    k1 = kl_penalty(logp, logq, kind="k1")
    k2 = kl_penalty(logp, logq, kind="k2")
    k3 = kl_penalty(logp, logq, kind="k3")
    assert (p * k1[0]).sum().item() == pytest.approx(kl, rel=1e-5)
    assert (p * k3[0]).sum().item() == pytest.approx(kl, rel=1e-5)  # k3 is unbiased too
    second_moment = 0.5 * (p * (p.log() - q.log()) ** 2).sum().item()
    assert (p * k2[0]).sum().item() == pytest.approx(second_moment, rel=1e-5)
    assert (k2 >= 0).all() and (k3 >= 0).all() and (k1 < 0).any()
    # For nearby distributions k2's expectation approaches the KL as well.
    q_near = torch.softmax(p.log() + 0.01 * torch.randn(7), -1)
    kl_near = (p * (p.log() - q_near.log())).sum().item()
    k2_near = (p * kl_penalty(logp, q_near.log().unsqueeze(0), kind="k2")[0]).sum().item()
    assert k2_near == pytest.approx(kl_near, rel=0.05)


def test_kl_penalty_mask_and_bad_kind():
    logp = torch.tensor([[-1.0, float("-inf")]])
    ref = torch.tensor([[-2.0, -0.5]])
    for kind in ("k1", "k2", "k3"):
        out = kl_penalty(logp, ref, torch.tensor([[1.0, 0.0]]), kind=kind)
        assert torch.isfinite(out).all() and out[0, 1] == 0
    assert kl_penalty(logp, ref, torch.tensor([[0.5, 0.0]]), kind="k1")[0, 0].item() == 0.5
    with pytest.raises(ValueError, match="kind"):
        kl_penalty(logp, ref, kind="k4")


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_token_logprobs_and_entropy_match_direct_computation(chunk_rows):
    torch.manual_seed(3)
    logits = (torch.randn(2, 5, 11) * 3).requires_grad_(True)
    labels = torch.randint(0, 11, (2, 5))
    got = token_logprobs(logits, labels, chunk_rows=chunk_rows)
    want = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-5)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_want,) = torch.autograd.grad(want.sum(), logits)
    assert torch.allclose(g_got, g_want, atol=1e-5)

    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    ent = entropy_from_logits(logits.detach(), mask, chunk_rows=chunk_rows)
    direct = torch.distributions.Categorical(logits=logits.detach()).entropy()
    assert torch.allclose(ent[mask.bool()], direct[mask.bool()], atol=1e-5)
    assert (ent[~mask.bool()] == 0).all()

    hot = entropy_from_logits(logits.detach(), temperature=0.2, chunk_rows=chunk_rows)
    direct_hot = torch.distributions.Categorical(logits=logits.detach() / 0.2).entropy()
    assert torch.allclose(hot, direct_hot, atol=1e-5)
    lp_hot = token_logprobs(logits.detach(), labels, temperature=0.2, chunk_rows=chunk_rows)
    want_hot = torch.log_softmax(logits.detach() / 0.2, -1).gather(-1, labels.unsqueeze(-1))
    assert torch.allclose(lp_hot, want_hot.squeeze(-1), atol=1e-4)


def test_entropy_bfloat16_logits_and_known_values():
    uniform = torch.zeros(1, 2, 16, dtype=torch.bfloat16)
    assert entropy_from_logits(uniform).tolist()[0] == pytest.approx([math.log(16)] * 2, rel=1e-5)
    peaked = torch.tensor([[[100.0, 0.0, 0.0]]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_from_logits(torch.zeros(0, 4)).shape == (0,)
    with pytest.raises(ValueError):
        entropy_from_logits(uniform, chunk_rows=0)
    with pytest.raises(ValueError):
        token_logprobs(uniform, torch.zeros(1, 3, dtype=torch.long))


# --------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------


def test_cosine_schedule_endpoints_and_shape():
    assert cosine_schedule_with_warmup(0, 100) == 1.0
    assert cosine_schedule_with_warmup(100, 100) == 0.0
    assert cosine_schedule_with_warmup(100, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert cosine_schedule_with_warmup(500, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert cosine_schedule_with_warmup(55, 100, warmup=10) == pytest.approx(0.5)
    # Warmup: linear, reaching 1 at its last step.
    assert [cosine_schedule_with_warmup(s, 100, warmup=4) for s in range(5)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
    ]
    values = [cosine_schedule_with_warmup(s, 50, warmup=5, min_ratio=0.2) for s in range(5, 51)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert cosine_schedule_with_warmup(10, 10, warmup=10) == 0.0


def test_cosine_schedule_drives_an_optimizer_over_the_whole_run():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_schedule_with_warmup(s, 20, warmup=2, min_ratio=0.0)
    )
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5e-6) and lrs[1] == pytest.approx(1e-6)
    assert lrs[-1] < 0.02e-6 and opt.param_groups[0]["lr"] == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(step=0, total=0),
        dict(step=0, total=10, warmup=11),
        dict(step=0, total=10, min_ratio=1.5),
        dict(step=-1, total=10),
    ],
)
def test_cosine_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        cosine_schedule_with_warmup(**kwargs)


# --------------------------------------------------------------------------
# Value head
# --------------------------------------------------------------------------

from trainers.ppo.value_head import (  # noqa: E402
    ValueHead,
    ValueHeadConfig,
    hidden_size_of,
    last_token_hidden,
    last_token_index,
    load_value_head,
    save_value_head,
)


def test_hidden_size_of_text_and_vision_language_configs():
    transformers = pytest.importorskip("transformers")
    configs = {
        64: transformers.LlamaConfig(hidden_size=64, num_attention_heads=4),
        48: transformers.GPT2Config(n_embd=48),  # width named n_embd
        32: transformers.MllamaConfig(
            text_config={
                "hidden_size": 32,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "num_hidden_layers": 2,
                "cross_attention_layers": [1],
            },
            vision_config={"hidden_size": 16, "num_attention_heads": 2},
        ),
        40: transformers.LlavaConfig(
            text_config={"model_type": "llama", "hidden_size": 40, "num_attention_heads": 4},
            vision_config={"model_type": "clip_vision_model", "hidden_size": 24, "num_attention_heads": 2},
        ),
        56: transformers.Qwen2VLConfig(
            text_config={"hidden_size": 56, "num_attention_heads": 4, "num_key_value_heads": 2},
            vision_config={"hidden_size": 8, "embed_dim": 8},
        ),
        72: transformers.Idefics3Config(
            text_config={"model_type": "llama", "hidden_size": 72, "num_attention_heads": 4},
            vision_config={"hidden_size": 12, "num_attention_heads": 2},
        ),
    }
    for expected, config in configs.items():
        assert hidden_size_of(config) == expected, type(config).__name__
        assert ValueHead.for_model_config(config).hidden_size == expected


def test_hidden_size_of_plain_dicts_and_objects():
    # A parsed config.json: the text sub-config wins over the vision one.
    assert hidden_size_of({"vision_config": {"hidden_size": 99}, "text_config": {"hidden_size": 24}}) == 24
    assert hidden_size_of({"model_type": "x", "llm_config": {"hidden_size": 20}}) == 20
    assert hidden_size_of({"language_model": {"d_model": 12}}) == 12

    from types import SimpleNamespace as NS

    assert hidden_size_of(NS(vision={"hidden_size": 7}, text_model=NS(dim=9))) == 9
    assert hidden_size_of(NS(vision=NS(hidden_size=7), other=object())) == 7
    with pytest.raises(ValueError, match="hidden size"):
        hidden_size_of({"vocab_size": 100, "vision_config": {"patch": 3}})
    with pytest.raises(ValueError, match="hidden size"):
        hidden_size_of(object())


def test_last_token_hidden_left_and_right_padding():
    hidden = torch.randn(3, 5, 4)
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(left).tolist() == [4, 4, 4]
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert torch.equal(last_token_hidden(hidden, left), hidden[:, 4])
    picked = last_token_hidden(hidden, right.bool())
    assert torch.equal(picked, torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]]))
    # Prompt part of [left-padded prompt | right-padded completion]: the last prompt token.
    joint_mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]])
    prompt_len = 3
    got = last_token_hidden(hidden[:, :prompt_len], joint_mask[:, :prompt_len])
    assert torch.equal(got, hidden[:, 2])
    with pytest.raises(ValueError, match="no non-padding"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError):
        last_token_hidden(hidden, left[:, :4])


def test_value_head_init_dtype_and_output():
    torch.manual_seed(0)
    head = ValueHead(32)
    assert all(p.dtype == torch.float32 for p in head.parameters())
    # Huge, badly scaled hidden states (as some LMs produce) still give small
    # first values thanks to the input LayerNorm and the small output init.
    hidden = torch.randn(64, 32) * 300 + 50
    values = head(hidden.to(torch.bfloat16))
    assert values.shape == (64,) and values.dtype == torch.float32
    assert values.abs().max().item() < 0.1
    assert values.std().item() > 0  # not a constant: it depends on the input
    bf16_head = ValueHead(32, ValueHeadConfig(hidden=0, dtype="bfloat16"))
    assert bf16_head(hidden).dtype == torch.float32
    assert sum(isinstance(m, torch.nn.Linear) for m in bf16_head.net) == 1
    with pytest.raises(ValueError):
        head(torch.randn(2, 31))
    for bad in (dict(hidden=-1), dict(dtype="int8"), dict(init_scale=float("nan"))):
        with pytest.raises(ValueError):
            ValueHeadConfig(**bad)
    with pytest.raises(ValueError):
        ValueHead(0)


def test_value_head_learns_and_passes_gradient_to_the_trunk():
    torch.manual_seed(0)
    trunk_out = torch.randn(128, 16, requires_grad=True)
    targets = trunk_out.detach()[:, 0] * 2 - trunk_out.detach()[:, 1]
    head = ValueHead(16, ValueHeadConfig(hidden=32))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = value_loss(head(trunk_out), torch.zeros(128), targets, clip=None).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert trunk_out.grad is not None and trunk_out.grad.abs().sum() > 0


def test_value_head_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    head = ValueHead(12, ValueHeadConfig(hidden=6, layer_norm=False, init_scale=1.0))
    path = tmp_path / "value_head.safetensors"
    save_value_head(head, path)
    loaded = load_value_head(path)
    x = torch.randn(5, 12)
    assert torch.equal(loaded(x), head(x))
    assert loaded.config == head.config and loaded.hidden_size == 12


class _Boom:
    """Unpickling this would flip a flag: a loader that unpickles would be caught."""

    triggered = False

    def __reduce__(self):
        return (_trigger, ())


def _trigger():
    _Boom.triggered = True
    return {}


def test_value_head_load_rejects_foreign_files_without_unpickling(tmp_path):
    from safetensors.torch import save_file

    pickled = tmp_path / "pickled.pt"
    torch.save({"net.0.weight": _Boom()}, pickled)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_value_head(pickled)
    assert not _Boom.triggered

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a readable"):
        load_value_head(garbage)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a gengym value head"):
        load_value_head(foreign)

    head = ValueHead(4, ValueHeadConfig(hidden=3))
    meta = {"format": "gengym-value-head", "format_version": "1", "hidden_size": "4"}
    tensors = {k: v.contiguous() for k, v in head.state_dict().items()}
    bad_cases = {
        "extra_field": {**meta, "config": '{"hidden": 3, "evil": 1}'},
        "wrong_shape": {**meta, "config": '{"hidden": 5}'},
        "bad_json": {**meta, "config": "{hidden"},
        "bad_size": {**meta, "hidden_size": "four", "config": "{}"},
    }
    for name, metadata in bad_cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        with pytest.raises(ValueError, match="do not fit"):
            load_value_head(path)
