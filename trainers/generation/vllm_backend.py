"""Generation through vLLM (optional extra: ``pip install vllm``).

vLLM is the choice for large runs on several GPUs: paged attention,
continuous batching, tensor parallelism and its own CUDA graphs. It keeps its
own copy of the weights, so this backend copies the training module's
weights into the engine at the start of the first rollout phase after the
weights changed (the PPO trainer calls
:meth:`VLLMGenerationBackend.update_weights` after every update; it only
marks them stale). The PPO trainer enters its ZeRO-3 gather before the
rollout phase, so the copy reads whole tensors once per phase; it refuses
LoRA and ``gather_for_generation: false`` with this backend before loading
anything, since the copy needs the full, gathered weights under their own
names.

Scope and limits, honestly stated:

* Prompts are passed as token ids (left padding stripped). Image inputs are
  refused with a clear error: the backend interface hands over processed
  pixel tensors, while vLLM wants the raw images and runs its own processor.
  Use ``static`` for VLMs.
* The engine runs in the training process (vLLM's "colocate" layout), and
  reaches the model through ``llm_engine.model_executor.driver_worker``;
  vLLM versions without that path raise a clear error at the first weight
  sync. This module is importable without vLLM; the test suite only checks
  the not-installed path, since vLLM does not install on a CPU machine.
* Log-probs: vLLM reports the log-prob of each sampled token; with
  temperature 1 (or greedy) that is ``log_softmax(logits)`` as everywhere
  else; at other temperatures vLLM's own definition applies. The PPO loop
  recomputes old log-probs with a teacher-forced forward anyway.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

from trainers.common.modeling import eos_token_ids, get_tokenizer
from trainers.generation.base import (
    Generation,
    GenerationBackend,
    SamplingParams,
    generation_from_rows,
)

#: Processor outputs that carry images; vLLM cannot take them pre-processed.
_IMAGE_KEYS = ("pixel_values", "pixel_values_videos", "image_grid_thw", "cross_attention_mask")


def vllm_available() -> bool:
    """Whether the ``vllm`` package can be imported here."""
    return importlib.util.find_spec("vllm") is not None


class VLLMGenerationBackend(GenerationBackend):
    """Samples with an in-process vLLM engine that mirrors the policy's weights.

    Args:
        model: The training policy (a Hugging Face model saved at
            ``model.name_or_path``, which vLLM loads once for its layout).
        processor: Its processor or tokenizer.
        gpu_memory_utilization: Share of GPU memory vLLM may take (the rest
            stays with training when both share a GPU).
        tensor_parallel_size: GPUs vLLM shards the model over.
        enable_sleep_mode: Let vLLM free its memory between rollout phases.
        **engine_kwargs: Passed on to ``vllm.LLM``.

    Raises:
        ImportError: vLLM is not installed.
        ValueError: The model has no checkpoint path for vLLM to load.
    """

    name = "vllm"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        gpu_memory_utilization: float = 0.3,
        tensor_parallel_size: int = 1,
        enable_sleep_mode: bool = True,
        **engine_kwargs: Any,
    ) -> None:
        if not vllm_available():
            raise ImportError(
                "the 'vllm' generation backend needs vLLM, which is not installed: "
                "`pip install vllm` on a CUDA machine, or choose generation_backend 'static' or 'hf'"
            )
        super().__init__(model, processor)
        path = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
        if not path:
            raise ValueError(
                "vLLM loads the model from its checkpoint directory; save the policy first"
            )
        import vllm

        self.tokenizer = get_tokenizer(processor)
        self.eos_ids = set(eos_token_ids(model, processor))
        self.enable_sleep_mode = enable_sleep_mode
        self.llm = vllm.LLM(
            model=str(path),
            tokenizer=str(path),
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_sleep_mode=enable_sleep_mode,
            **engine_kwargs,
        )
        self._stale = True

    @contextlib.contextmanager
    def rollout_phase(self) -> Iterator[None]:
        """Wake the engine, copy fresh weights if an update happened, sleep afterwards."""
        if self.enable_sleep_mode and hasattr(self.llm, "wake_up"):
            self.llm.wake_up()
        try:
            if self._stale:
                self._sync_weights()
            yield
        finally:
            if self.enable_sleep_mode and hasattr(self.llm, "sleep"):
                self.llm.sleep(level=1)

    def update_weights(self, model: Any) -> None:
        """Mark the engine's weights stale; they are copied at the next rollout phase."""
        self.model = model
        self._stale = True

    def _sync_weights(self) -> None:
        try:
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        except AttributeError as exc:
            raise RuntimeError(
                "this vLLM version exposes no in-process model to copy weights into "
                "(llm_engine.model_executor.driver_worker.model_runner); use a vLLM version "
                "that supports colocated training, or the 'static' backend"
            ) from exc
        state = self.model.state_dict()
        runner.model.load_weights(weights=((name, tensor) for name, tensor in state.items()))
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        self._stale = False

    def generate(self, inputs: Mapping[str, Any], params: SamplingParams) -> Generation:
        import vllm

        if any(inputs.get(key) is not None for key in _IMAGE_KEYS):
            raise ValueError(
                "the vllm backend takes text prompts only (it would need the raw images, not processed "
                "pixel tensors); use the 'static' backend for vision-language models"
            )
        ids = inputs["input_ids"].tolist()
        masks = (
            inputs["attention_mask"].tolist() if inputs.get("attention_mask") is not None else None
        )
        prompts = []
        for i, row in enumerate(ids):
            kept = (
                row if masks is None else [tok for tok, m in zip(row, masks[i], strict=True) if m]
            )
            prompts.append({"prompt_token_ids": kept})
        sampling = vllm.SamplingParams(
            n=1,
            max_tokens=params.max_new_tokens,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            seed=params.seed,
            stop_token_ids=sorted(self.eos_ids),
            stop=list(params.stop_strings) or None,
            include_stop_str_in_output=True,
            logprobs=0,
        )
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        token_rows, logprob_rows = [], []
        for out in outputs:
            completion = out.outputs[0]
            row = list(completion.token_ids)
            row_lp = [
                float(step[tok].logprob)
                for tok, step in zip(row, completion.logprobs or [], strict=False)
            ]
            token_rows.append(row)
            logprob_rows.append(row_lp + [0.0] * (len(row) - len(row_lp)))
        return generation_from_rows(self.tokenizer, token_rows, logprob_rows, self.eos_ids, params.stop_strings)

    def close(self) -> None:
        self.llm = None
