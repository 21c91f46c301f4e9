"""Tests for trainers.common.compute: the paper's FLOPs formula and its inputs."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from trainers.common import compute
from trainers.common.compute import (
    ComputeTracker,
    count_parameters,
    count_tokens,
    rl_flops,
    sft_flops,
)


def test_doctests():
    result = doctest.testmod(compute)
    assert result.attempted >= 3 and result.failed == 0


def test_formulas_by_hand():
    # An 11B model, 2M initial SFT tokens, 5M more SFT tokens:
    # 6 * 11e9 * 7e6 = 4.62e17 FLOPs.
    assert sft_flops(11_000_000_000, 2_000_000, 5_000_000) == 462_000_000_000_000_000
    # RL: 6 * 11e9 * (2e6 + 3e6) + 2 * 11e9 * 4e6 = 3.3e17 + 0.88e17.
    assert rl_flops(11_000_000_000, 2_000_000, 3_000_000, 4_000_000) == 418_000_000_000_000_000
    assert rl_flops(7, 0, 0, 0) == 0
    assert rl_flops(7, 1, 0, 0) == sft_flops(7, 1, 0) == 42
    assert rl_flops(7, 0, 0, 3) == 42  # forward-only tokens cost a third


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_formulas_reject_bad_counts(bad):
    with pytest.raises(ValueError):
        sft_flops(bad, 0, 0)
    with pytest.raises(ValueError):
        rl_flops(1, 0, 0, bad)


def test_count_tokens_from_masks():
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert count_tokens(mask) == 5
    assert count_tokens(mask.bool()) == 5
    assert count_tokens([[1, 0], [1, 1], [0, 0]]) == 3
    assert count_tokens([True, False, True]) == 2


class _TiedLM(nn.Module):
    def __init__(self, vocab: int = 10, width: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)  # 40
        self.body = nn.Linear(width, width)  # 20
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied: counted once


def test_count_parameters_tied_frozen_and_excluded():
    model = _TiedLM()
    assert count_parameters(model) == 60
    model.body.requires_grad_(False)
    assert count_parameters(model) == 60
    assert count_parameters(model, trainable_only=True) == 40

    class WithReference(nn.Module):
        def __init__(self):
            super().__init__()
            self.policy = _TiedLM()
            self.reference = _TiedLM()

    both = WithReference()
    assert count_parameters(both) == 120
    assert count_parameters(both, exclude=[both.reference]) == 60


def test_count_parameters_uses_zero3_full_sizes():
    model = nn.Linear(3, 2)  # 8 parameters
    partitioned = nn.Parameter(torch.empty(0))
    partitioned.ds_numel = 1000  # what DeepSpeed ZeRO-3 leaves on a rank
    model.register_parameter("sharded", partitioned)
    assert count_parameters(model) == 1008


def test_count_parameters_matches_a_transformers_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(config)
    assert count_parameters(model) == model.num_parameters()
    # Tied embeddings: the output layer adds nothing on top of the embedding;
    # untied, it adds vocab x hidden = 64 x 16.
    assert model.lm_head.weight is model.model.embed_tokens.weight
    config.tie_word_embeddings = False
    untied = transformers.LlamaForCausalLM(config)
    assert count_parameters(untied) == count_parameters(model) + 64 * 16


def test_tracker_accumulates_and_reports_gflops():
    tracker = ComputeTracker(num_params=2_000_000, init_tokens=1_000)
    assert tracker.flops == 6 * 2_000_000 * 1_000
    tracker.add_buffer_tokens(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))  # 7 forward-only
    tracker.add_buffer_tokens(993)
    for _ in range(4):  # 4 PPO epochs over a 250-token buffer
        tracker.add_train_tokens(250)
    expected = 6 * 2_000_000 * (1_000 + 1_000) + 2 * 2_000_000 * 1_000
    assert tracker.flops == expected == rl_flops(2_000_000, 1_000, 1_000, 1_000)
    assert tracker.gflops == pytest.approx(expected / 1e9)
    assert tracker.metrics() == {
        "compute/gflops": pytest.approx(28.0),
        "compute/train_tokens": 1000.0,
        "compute/buffer_tokens": 1000.0,
    }
    with pytest.raises(ValueError):
        tracker.add_train_tokens(-5)
    with pytest.raises(ValueError):
        ComputeTracker(num_params=-1)


def test_tracker_state_roundtrip_and_validation():
    tracker = ComputeTracker(num_params=10, init_tokens=3)
    tracker.add_train_tokens(4)
    tracker.add_buffer_tokens(5)
    state = tracker.state_dict()
    assert state == {"num_params": 10, "init_tokens": 3, "train_tokens": 4, "buffer_tokens": 5}
    resumed = ComputeTracker(num_params=10)
    resumed.load_state_dict(state)
    assert resumed == tracker and resumed.flops == 6 * 10 * 7 + 2 * 10 * 5
    with pytest.raises(ValueError, match="unknown"):
        resumed.load_state_dict({"evil": 1})
    with pytest.raises(ValueError):
        resumed.load_state_dict({"train_tokens": -1})
    assert resumed == tracker  # a rejected state changes nothing
