"""Generation through Hugging Face ``model.generate``.

The reference backend: whatever ``generate`` supports for a model (images,
cross-attention masks, rope deltas), this backend supports, because it hands
the processor's inputs to ``generate`` unchanged. It is also the slowest: each
decode step launches thousands of small kernels from Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.generation.base import Generation, GenerationBackend, SamplingParams, cut_at_stop


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends generation for this model.

    The generation config may list several (chat models often end turns with
    a token other than the tokenizer's EOS); the tokenizer's own EOS counts too.
    """
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, getattr(tokenizer, "eos_token_id", None)):
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else value)
    return ids


def tokenizer_of(processor: Any) -> Any:
    """The tokenizer inside a processor, or the processor if it is one."""
    return getattr(processor, "tokenizer", processor)


class HFGenerationBackend(GenerationBackend):
    """Samples with ``model.generate``; log-probs from the returned raw logits."""

    name = "hf"

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__(model, processor)
        self.tokenizer = tokenizer_of(processor)
        self.eos_ids = eos_token_ids(model, self.tokenizer)
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
        ids_list, texts, reasons, lps = [], [], [], []
        for row, row_lp in zip(new_ids.tolist(), token_lp.tolist(), strict=True):
            n, text, reason = cut_at_stop(self.tokenizer, row, self.eos_ids, params.stop_strings)
            ids_list.append(row[:n])
            lps.append(row_lp[:n])
            texts.append(text)
            reasons.append(reason)
        return Generation(token_ids=ids_list, texts=texts, finish_reasons=reasons, logprobs=lps)


def _rng_devices(inputs: Mapping[str, Any]) -> list[Any]:
    """CUDA devices whose RNG state sampling touches (none on CPU)."""
    device = inputs["input_ids"].device
    return [device] if device.type == "cuda" else []
