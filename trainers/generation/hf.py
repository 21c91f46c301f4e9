"""Generation through Hugging Face ``model.generate``.

The reference backend: whatever ``generate`` supports for a model (images,
cross-attention masks, rope deltas), this backend supports, because it hands
the processor's inputs to ``generate`` unchanged. Only the backend's own
sampling settings apply: the checkpoint's ``generation_config`` extras
(repetition penalty and the like) are hidden from each call. It is also the
slowest: each decode step launches thousands of small kernels from Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from trainers.generation.base import (
    Generation,
    GenerationBackend,
    SamplingParams,
    batch_sampling_tokens,
    generation_from_rows,
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
        #: ``suppressed_ids``: image/video placeholder ids, never sampled.
        self.tokenizer, self.eos_ids, self.suppressed_ids = batch_sampling_tokens(model, processor)

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
            with (
                torch.no_grad(),
                torch.random.fork_rng(devices=_rng_devices(inputs)),
                _only_these_settings(self.model),
            ):
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


@contextlib.contextmanager
def _only_these_settings(model: Any) -> Iterator[None]:
    """Hide the checkpoint's ``generation_config`` for one ``generate`` call.

    ``generate`` fills every setting a call leaves unset from the model's
    ``generation_config``: a checkpoint's ``repetition_penalty``,
    ``no_repeat_ngram_size``, ``min_new_tokens``, ``bad_words_ids``... would
    then reshape the distribution, so the samples would no longer come from
    the tempered softmax whose log-probs PPO scores (nor match ``static``).
    The backend passes every setting it means (EOS, pad, sampling), so the
    call sees a default config instead. peft wrappers generate through their
    base model, whose config is the one swapped.
    """
    from transformers import GenerationConfig

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = getattr(target, "generation_config", None)
    if saved is None:
        yield
        return
    target.generation_config = GenerationConfig()
    try:
        yield
    finally:
        target.generation_config = saved


def _rng_devices(inputs: Mapping[str, Any]) -> list[Any]:
    """CUDA devices whose RNG state sampling touches (none on CPU)."""
    device = inputs["input_ids"].device
    return [device] if device.type == "cuda" else []
