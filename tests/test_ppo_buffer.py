"""The PPO rollout buffer: fields, shapes, and the order turns are stored and picked in."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trainers.ppo.buffer import RolloutBuffer  # noqa: E402


def prompt(text: str):
    return [{"role": "user", "content": [{"type": "text", "text": text}]}], []


def filled(num_steps: int = 2, num_envs: int = 3, max_new_tokens: int = 4) -> RolloutBuffer:
    buffer = RolloutBuffer.empty(num_steps, num_envs, max_new_tokens, reference=True)
    for t in range(num_steps):
        for i in range(num_envs):
            ids = list(range(10 * t + i + 1, 10 * t + i + 1 + (t + i) % 3))  # lengths 0, 1, 2
            buffer.add(t, i, prompt(f"s{t}e{i}"), ids, f"answer {t} {i}", env_reward=t - i * 0.1,
                       terminated=(t, i) == (0, 1), truncated=(t, i) in {(0, 1), (1, 2)}, info={"verdict": "x"})
    return buffer


def test_fields_and_shapes():
    buffer = filled()
    assert (buffer.num_steps, buffer.num_envs, buffer.size) == (2, 3, 6)
    for name in ("tokens", "masks", "logprobs", "weights", "ref_logprobs"):
        assert getattr(buffer, name).shape == (2, 3, 4), name
    for name in ("values", "env_rewards", "rewards", "terminated", "truncated", "bootstrap_values", "advantages",
                 "returns"):
        assert getattr(buffer, name).shape == (2, 3), name
    assert buffer.last_values.shape == (3,)
    assert buffer.tokens.dtype == torch.long and buffer.terminated.dtype == torch.bool
    assert buffer.env_rewards.dtype == torch.float64 and buffer.env_rewards[1, 1].item() == 1 - 0.1
    assert len(buffer.prompts) == len(buffer.texts) == len(buffer.infos) == 6
    assert RolloutBuffer.empty(2, 3, 4).ref_logprobs is None


def test_answers_are_stored_padded_with_their_masks():
    buffer = filled()
    assert buffer.tokens[1, 1].tolist() == [12, 13, 0, 0] and buffer.masks[1, 1].tolist() == [1, 1, 0, 0]
    assert buffer.masks[0, 0].sum() == 0 and buffer.completion(0) == []
    # Termination wins over truncation, as in Gymnasium.
    assert buffer.terminated.nonzero().tolist() == [[0, 1]]
    assert buffer.truncated.nonzero().tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="does not fit max_new_tokens=4"):
        buffer.add(0, 0, prompt("x"), [1, 2, 3, 4, 5], "long", 0.0, False, False, {})


def test_flat_index_is_the_order_turns_were_taken():
    buffer = filled()
    # Turn k = step * num_envs + env, like cleanrl's reshape(-1).
    assert buffer.texts == [f"answer {t} {i}" for t in range(2) for i in range(3)]
    buffer.values.copy_(torch.arange(6.0).view(2, 3))
    buffer.advantages.copy_(-torch.arange(6.0).view(2, 3))
    batch = buffer.select([4, 0])
    assert batch.prompts == [prompt("s1e1"), prompt("s0e0")]
    assert batch.completions == [[12, 13], []]
    assert batch.values.tolist() == [4.0, 0.0] and batch.advantages.tolist() == [-4.0, -0.0]
    assert batch.logprobs.shape == (2, 4) and batch.ref_logprobs.shape == (2, 4)


def test_scores_are_cut_to_each_answer():
    buffer = filled()
    logprobs = torch.full((2, 3), -1.0)  # a scoring pass pads to its longest answer, with garbage past the end
    weights = torch.tensor([[0.5, 1.0, 7.0], [7.0, 7.0, 7.0]])
    buffer.store_scores([4, 3], logprobs, weights, torch.tensor([0.25, 0.5]), ref_logprobs=logprobs * 2)
    assert buffer.logprobs[1, 1].tolist() == [-1.0, -1.0, 0.0, 0.0]
    assert buffer.weights[1, 1].tolist() == [0.5, 1.0, 0.0, 0.0]
    assert buffer.ref_logprobs[1, 0].tolist() == [-2.0, 0.0, 0.0, 0.0]  # turn 3 (step 1, env 0) has one token
    assert buffer.values[1].tolist() == [0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="never added"):
        RolloutBuffer.empty(1, 1, 1).select([0])
