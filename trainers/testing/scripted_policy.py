"""A scripted policy for smoke runs of TRL's tool loop: real tool calls, no learned model.

A tiny random model never writes a tool call, so a smoke run of
``GRPOTrainer(environment_factory=...)`` would only ever judge silence.
:func:`script_tool_calls` replaces the model's ``generate`` (the forward pass,
log-probs and the update stay the real model's) with a policy that reads the
conversation TRL built so far, finds which episode it is (by the opening
observation of a dataset row), replays the answers already submitted in a
fresh :class:`~gengym_core.session.ChatSession`, and writes the next tool call
in the Qwen2.5 tool-call format: a wrong answer first (so the env's feedback
turn is exercised), then the oracle's answers until the episode ends, then a
plain closing reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gengym_core.session import ChatSession

_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


class ScriptedToolPolicy:
    """What to write next, from the text of the conversation so far.

    Args:
        env_id: The gengym env id of every episode.
        seeds: The reset seeds of the dataset rows (their ``seed`` column).
        env_kwargs: ``gym.make`` keyword arguments of the env.
        end: The text that ends a turn (the chat template's end-of-turn token).
    """

    def __init__(self, env_id: str, seeds: Iterable[int], env_kwargs: Mapping[str, Any] | None = None,
                 end: str = "<|im_end|>") -> None:
        self.session = ChatSession(env_id, images=False, **dict(env_kwargs or {}))
        self.end = end
        self.openings: dict[str, int] = {}
        for seed in seeds:
            self.openings[self.session.reset(seed=int(seed))[0]["content"]] = int(seed)

    def __call__(self, text: str) -> str:
        found = [(text.find(o), o) for o in self.openings if o in text]
        if not found:
            return "I cannot tell which task this is." + self.end
        start, opening = max(found)
        self.session.reset(seed=self.openings[opening])
        submitted = [self._answer(m) for m in _TOOL_CALL.findall(text[start:])]
        for answer in submitted:
            if self.session.done:
                break
            self.session.step(answer)
        core = self.session.env.unwrapped
        if self.session.done:
            return "The episode is over." + self.end
        answer = core.sample_wrong_answer(np.random.default_rng(0)) if not submitted else core.oracle_answer()
        call = json.dumps({"name": "submit_answer", "arguments": {"answer": answer}})
        return f"<tool_call>\n{call}\n</tool_call>{self.end}"

    @staticmethod
    def _answer(payload: str) -> str:
        try:
            return str(json.loads(payload)["arguments"]["answer"])
        except (ValueError, KeyError, TypeError):
            return ""


def script_tool_calls(model: Any, tokenizer: Any, policy: ScriptedToolPolicy) -> Any:
    """Make ``model.generate`` write what ``policy`` says; return the model.

    The replacement takes the batch TRL passes (left-padded ``input_ids``
    and ``attention_mask``) and returns the prompts followed by the scripted
    completions, right-padded with the pad token, as ``generate`` does.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def generate(input_ids, attention_mask=None, **kwargs):
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        completions = []
        for ids, keep in zip(input_ids, mask, strict=True):
            text = tokenizer.decode(ids[keep.bool()], skip_special_tokens=False)
            completions.append(tokenizer(policy(text), add_special_tokens=False)["input_ids"])
        width = max(len(c) for c in completions)
        rows = [c + [pad] * (width - len(c)) for c in completions]
        new = torch.tensor(rows, dtype=input_ids.dtype, device=input_ids.device)
        return torch.cat([input_ids, new], dim=1)

    model.generate = generate
    return model
