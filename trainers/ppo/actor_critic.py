"""The policy and its critic as one module, so one engine trains both.

The critic is a value head (an MLP, :class:`~trainers.ppo.value_head.ValueHead`)
on a last hidden state at the *last prompt token*: the position right before
the answer, which has attended to the whole prompt, image tokens included, so
the critic sees exactly what the policy saw. By default the head sits on the
policy's own hidden states (one forward pass gives log-probs and values);
with a separate critic model, the head sits on that model's hidden states.

Inputs follow :func:`trainers.common.inputs.append_completions`: prompts
left-padded to a common length ``P``, then the completions, so the last
prompt token of every row is at column ``P - 1``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.ppo.value_head import ValueHead


class ActorCritic(nn.Module):
    """A causal (vision-)language policy, a value head, optionally a critic body.

    Args:
        policy: Any model loaded through the Auto classes (possibly wrapped by peft).
        value_head: The value MLP.
        critic_body: A separate model whose hidden states feed the value head;
            ``None`` to use the policy's own.
    """

    def __init__(self, policy: nn.Module, value_head: ValueHead, critic_body: nn.Module | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.critic_body = critic_body

    def forward(
        self, inputs: dict[str, Any], prompt_length: int, num_completion_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score completions and value their prompts in one pass.

        Args:
            inputs: Model inputs whose last ``num_completion_tokens`` columns
                are the completions (prompt columns first, left-padded).
            prompt_length: ``P``, the number of prompt columns.
            num_completion_tokens: ``T``.

        Returns:
            ``(logits, values)``: ``[B, T, V]`` logits, where row ``t``
            predicts completion token ``t``, and ``[B]`` float32 values.
        """
        shared = self.critic_body is None
        out = self.policy(
            **inputs,
            use_cache=False,
            output_hidden_states=shared,
            logits_to_keep=num_completion_tokens + 1,
        )
        logits = out.logits[:, :-1]
        if shared:
            last_prompt_hidden = out.hidden_states[-1][:, prompt_length - 1]
        else:
            last_prompt_hidden = self.critic_hidden(_prompt_part(inputs, prompt_length))
        return logits, self.value_head(last_prompt_hidden)

    def values(self, prompt_inputs: dict[str, Any]) -> torch.Tensor:
        """``[B]`` values of left-padded prompts alone (bootstrap states)."""
        if self.critic_body is None:
            out = self.policy(**prompt_inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
            hidden = out.hidden_states[-1][:, -1]
        else:
            hidden = self.critic_hidden(prompt_inputs)
        return self.value_head(hidden)

    def critic_hidden(self, prompt_inputs: dict[str, Any]) -> torch.Tensor:
        assert self.critic_body is not None
        out = self.critic_body(**prompt_inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        return out.hidden_states[-1][:, -1]


def disable_dropout(model: nn.Module) -> int:
    """Zero every dropout rate inside ``model``; return how many were non-zero.

    Rollouts are scored in eval mode and the update runs in train mode (which
    gradient checkpointing needs); with dropout on, the two would be
    different functions and PPO's ratio would be noise before any update.
    Covers ``nn.Dropout`` modules (LoRA's too) and the float rates that
    attention layers keep as attributes and pass to their kernels in train
    mode (``attention_dropout``, ``dropout``...).
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
            continue
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float) and not isinstance(value, bool):
                changed += value > 0
                setattr(module, name, 0.0)
    return int(changed)


def _prompt_part(inputs: dict[str, Any], prompt_length: int) -> dict[str, Any]:
    """The prompt columns of appended inputs (per-token tensors cut, others kept)."""
    ids = inputs["input_ids"]
    batch, length = ids.shape
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 2 and tuple(value.shape[:2]) == (batch, length):
            out[key] = value[:, :prompt_length]
        else:
            out[key] = value
    return out
