"""DPO on env preference pairs: TRL's ``DPOTrainer``, extended through its hooks.

:func:`train_dpo` reads top to bottom, like :func:`trainers.sft.sft_trainer.train_sft`:

1. **data** -- preference pairs, built from the env (:mod:`trainers.pairs`,
   each replayed through the verifier) or read from a ``gengym pairs`` folder;
2. **checks** -- the model's kind (vision-language or text) is read from its
   config alone and matched against the pairs, before any weights load;
3. **TRL settings** -- built *before* the models, so that under ZeRO-3 the
   policy and the reference are partitioned while they load;
4. **models** -- the policy through the Auto classes and a frozen reference
   copy of the same checkpoint (with LoRA, the policy with its adapters off);
5. **training** -- TRL's DPO loss, logging, checkpointing, DeepSpeed and
   peft, fed by gengym's own collator (:class:`PreferenceCollator`);
6. **output** -- ``output_dir/final`` like SFT: the model (merged, for LoRA),
   its processor, and ``gengym_training.json`` with the compute spent.

Why an own collator: TRL's vision preference collator truncates at
``max_length`` (which can cut image tokens) and does not extend Mllama's
``cross_attention_mask`` over the answers. :class:`PreferenceCollator` renders
each whole conversation (prompt + chosen, prompt + rejected) with the
model's own template and processor through
:func:`~trainers.common.inputs.encode_for_sft`, which never truncates and
makes every per-token input (Mllama's mask included) for the full sequence;
the tokens it labels as the final assistant answer are DPO's completion.
The batch is laid out as TRL's loss expects: chosen rows, then rejected rows.

Compute (the x axis of the paper's plots), documented in ``docs/methods.md``::

    X_DPO = 6 N (D_init + D_DPO) + 2 N D_ref,   D_ref = D_DPO

``D_DPO`` counts the non-padding tokens of every chosen and every rejected
sequence (prompt included, so a pair's prompt counts twice), passed forward
and backward through the policy; the frozen reference runs one forward pass
over the same tokens (``D_ref``), which is the ``2 N`` term. With LoRA the
reference is the same network with adapters off, so ``N`` is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl import DPOConfig, DPOTrainer

from gengym_core.run_safety import output_lock
from trainers.common.compute import count_parameters, init_tokens_of, rl_flops
from trainers.common.hf_trainer_support import (
    FINAL_DIR,
    ComputeLoggingMixin,
    ModelWriter,
    lora_config,
    preflight_encoding,
    prepare_engine,
    read_chat_template,
    reset_zero3_loading,
    start_run,
    train_or_finish,
    training_callbacks,
    training_dtype,
    trl_training_kwargs,
    write_run_settings,
)
from trainers.common.inputs import IGNORE_INDEX, encode_for_sft
from trainers.common.modeling import load_model_and_processor
from trainers.dpo.dpo_config import GengymDPOConfig
from trainers.pairs.build import (
    chosen_then_rejected,
    load_pairs_for_model,
    longest_pairs,
    sampling_gflops,
)
from trainers.sft.sft_trainer import keep_last_labelled_run

#: Pairs (the longest by text) encoded before training to catch overlong ones early.
PREFLIGHT_PAIRS = 4
#: The run's settings in ``output_dir`` (a resumed run must keep them).
SETTINGS_FILE = "gengym_dpo_config.json"


# -- the collator ----------------------------------------------------------------


class PreferenceCollator:
    """Turns pair rows (``prompt``, ``chosen``, ``rejected``, ``images``) into a DPO batch.

    Returns ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on the
    tokens of the final assistant answer) and the processor's image tensors,
    with the ``B`` chosen conversations first and the ``B`` rejected ones
    after them, right-padded.

    Args:
        processor: The model's processor (VLM) or tokenizer (text LM).
        max_length: Longest allowed sequence; longer ones raise ``ValueError``.
    """

    def __init__(self, processor: Any, max_length: int | None) -> None:
        self.processor = processor
        self.max_length = max_length

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        conversations, images = chosen_then_rejected(rows)
        batch = encode_for_sft(
            self.processor, conversations, images, max_length=self.max_length, padding_side="right"
        )
        # In a chat-format revision prompt, earlier answers are assistant turns
        # too; only the final answer is the completion being compared.
        labels = keep_last_labelled_run(batch.pop("labels"))
        batch["completion_mask"] = (labels != IGNORE_INDEX).long()
        return dict(batch)


# -- the trainer ------------------------------------------------------------------


class GengymDPOTrainer(ComputeLoggingMixin, DPOTrainer):
    """TRL's ``DPOTrainer`` fed by :class:`PreferenceCollator`, logging the paper's compute axis.

    :attr:`train_tokens` (``D_DPO``) counts chosen and rejected rows alike.

    Args:
        num_params: ``N``.
        init_tokens: ``D_init``, tokens that produced the starting checkpoint.
        extra_gflops: Compute spent before training that the run should
            carry (sampling model-made pairs).
        *args, **kwargs: Those of ``trl.DPOTrainer``.
    """

    def __init__(self, *args: Any, extra_gflops: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra_gflops = extra_gflops

    def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        # The collator renders and encodes each pair itself (never truncating),
        # so TRL's text tokenisation pass is skipped.
        return dataset

    @property
    def gflops(self) -> float:
        """``6 N (D_init + D_DPO) + 2 N D_ref`` (``D_ref = D_DPO``) in units of 10^9, plus ``extra_gflops``."""
        flops = rl_flops(self.num_params, self.init_tokens, self.train_tokens, self.train_tokens)
        return flops / 1e9 + self.extra_gflops


# -- the run ----------------------------------------------------------------------


def _trl_config(config: GengymDPOConfig, *, learning_rate: float, bf16: bool, use_cuda: bool) -> DPOConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return DPOConfig(
        **trl_training_kwargs(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        precompute_ref_log_probs=False,
    )


def train_dpo(config: GengymDPOConfig) -> Path:
    """Train ``config.model`` with DPO on env pairs; return the final checkpoint folder.

    Raises:
        ConfigError: Settings that cannot work (checked before any weights
            load), or a pair longer than ``max_length`` (checked on the
            longest pairs before training starts).
    """
    config.validate()
    config.check_runnable()
    with output_lock(config.output_dir), reset_zero3_loading():
        return _train(config)


def _train(config: GengymDPOConfig) -> Path:
    output_dir = Path(config.output_dir)
    chat_template = read_chat_template(config.chat_template_file)  # a bad path fails before any work

    # 0. the run folder: a new run, a resumed one, or one that is already complete
    run = start_run(config, output_dir, SETTINGS_FILE)
    if run.finished is not None:
        return run.finished

    # 1. data, and 2. the model's kind, from its config alone
    dataset, env_id, has_images, is_vision = load_pairs_for_model(
        config,
        not_generative="gengym trains generative models only",
        text_only_hint="train it on the env's text mode (e.g. GeneralPoints-L-v0) or use a vision-language model",
    )
    if not is_vision:
        dataset = dataset.remove_columns("images")  # TRL takes an images column as a VLM dataset

    # 3. TRL settings before the models (ZeRO-3 partitions while loading)
    use_cuda, bf16 = prepare_engine(config)
    learning_rate = config.resolved_learning_rate(has_images)
    trl_config = _trl_config(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda)

    # 4. models, with the precision of training_dtype; the reference matches the
    # policy. With LoRA, TRL scores the reference with the adapters off.
    dtype = training_dtype(bf16, deepspeed=config.deepspeed, lora=config.lora)
    loaded = load_model_and_processor(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code, chat_template=chat_template
    )
    model, processor = loaded.model, loaded.processor
    reference = None
    if not config.lora:
        reference = load_model_and_processor(
            config.model, dtype=dtype, trust_remote_code=config.trust_remote_code
        ).model
    collator = PreferenceCollator(processor, config.max_length)
    preflight_encoding(collator, dataset, longest_pairs(dataset, PREFLIGHT_PAIRS), what="pair")
    num_params = count_parameters(model)
    extra_gflops = sampling_gflops(config.dataset) if config.dataset else 0.0

    # 5. training
    writer = ModelWriter(
        config,
        processor=processor,
        dtype=dtype,
        record={
            "method": "dpo",
            "env_id": env_id,
            "base_model": config.model,
            "num_params": num_params,
            "pairs": len(dataset),
            "dataset": config.dataset or None,
            "beta": config.beta,
            "loss_type": config.loss_type,
            "lora": bool(config.lora),
            "learning_rate": learning_rate,
            "pair_sampling_gflops": extra_gflops,
            "compute_formula": "6 N (D_init + D_DPO) + 2 N D_ref, D_ref = D_DPO (+ pair sampling)",
        },
    )
    trainer = GengymDPOTrainer(
        model=model,
        ref_model=reference,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(config) if config.lora else None,
        callbacks=training_callbacks(config, output_dir, writer),
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
        extra_gflops=extra_gflops,
    )
    writer.trainer = trainer
    write_run_settings(output_dir, SETTINGS_FILE, config)
    train_or_finish(trainer, run)

    # 6. output
    return writer.write(output_dir / FINAL_DIR)
