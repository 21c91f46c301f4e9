"""Generation through Hugging Face ``model.generate``.

The reference backend: whatever ``generate`` supports for a model (images,
cross-attention masks, rope deltas), this backend supports, because it hands
the processor's inputs to ``generate`` unchanged. It is also the slowest: each
decode step launches thousands of small kernels from Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.common.modeling import eos_token_ids, get_tokenizer
from trainers.generation.base import (
    Generation,
    GenerationBackend,
    SamplingParams,
    generation_from_rows,
    placeholder_token_ids,
)


class HFGenerationBackend(GenerationBackend):
    """Samples with ``model.generate``; log-probs from the returned raw logits."""

    name = "hf"

    def __init__(self, model: Any, processor: Any, *, synced_gpus: bool = False) -> None:
        """Args:
            model: The policy (any ``generate``-capable model).
            processor: Its processor or tokenizer.
            synced_gpus: Keep every process stepping until all are done; needed
                when ZeRO-3 weights are *not* gathered for generation, since
                each forward then takes part in collective gathers.
        """
        super().__init__(model, processor)
        self.synced_gpus = synced_gpus
        self.tokenizer = get_tokenizer(processor)
        self.eos_ids = set(eos_token_ids(model, processor))
        #: Image/video placeholder ids, never sampled (see :func:`placeholder_token_ids`).
        self.suppressed_ids = placeholder_token_ids(model, processor) - self.eos_ids
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; batched generation needs one")

    def generate(self, inputs: Mapping[str, Any], params: SamplingParams) -> Generation:
        import torch

        prompt_len = inputs["input_ids"].shape[1]
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids) or None,
        )
        if self.synced_gpus:
            kwargs["synced_gpus"] = True
        if self.suppressed_ids:
            kwargs["suppress_tokens"] = sorted(self.suppressed_ids)
        if not params.greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop_strings:
            kwargs.update(stop_strings=list(params.stop_strings), tokenizer=self.tokenizer)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=_rng_devices(inputs)):
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                out = self.model.generate(**inputs, **kwargs)
        finally:
            self.model.train(was_training)
        new_ids = out.sequences[:, prompt_len:]
        logits = torch.stack(out.logits, dim=1).float()  # [B, T, V], raw
        logprobs = torch.log_softmax(logits / params.logprob_temperature, dim=-1)
        token_lp = logprobs.gather(-1, new_ids[:, : logits.shape[1], None]).squeeze(-1)
        return generation_from_rows(self.tokenizer, new_ids.tolist(), token_lp.tolist(), self.eos_ids, params.stop_strings)


def _rng_devices(inputs: Mapping[str, Any]) -> list[Any]:
    """CUDA devices whose RNG state sampling touches (none on CPU)."""
    device = inputs["input_ids"].device
    return [device] if device.type == "cuda" else []
