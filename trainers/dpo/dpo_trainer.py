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

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from trainers.common.compute import count_parameters, init_tokens_of, rl_flops
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.inputs import IGNORE_INDEX, encode_for_sft
from trainers.common.modeling import is_vision_config, load_model_and_processor
from trainers.dpo.dpo_config import GengymDPOConfig
from trainers.pairs.build import (
    load_training_pairs,
    longest_pairs,
    pair_conversations,
    sampling_gflops,
)
from trainers.pairs.config import PairsConfig

# Run plumbing shared with SFT (same engine settings, logging and model writing).
from trainers.sft.sft_trainer import (
    FINAL_DIR,
    SNAPSHOT_DIR,
    ModelWriter,
    _is_main_process,
    _jsonl_callback,
    _lora_config,
    _tensorboard_callback,
    _use_bf16,
    _use_cuda,
    deepspeed_settings,
    keep_last_labelled_run,
    max_images_per_example,
)

logger = logging.getLogger(__name__)

#: Pairs (the longest by text) encoded before training to catch overlong ones early.
PREFLIGHT_PAIRS = 4


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
        chosen, rejected, images = zip(*(pair_conversations(row) for row in rows), strict=True)
        all_images = [list(i) for i in images] * 2
        batch = encode_for_sft(
            self.processor,
            list(chosen) + list(rejected),
            all_images if any(all_images) else None,
            max_length=self.max_length,
            padding_side="right",
        )
        # In a chat-format revision prompt, earlier answers are assistant turns
        # too; only the final answer is the completion being compared.
        labels = keep_last_labelled_run(batch.pop("labels"))
        batch["completion_mask"] = (labels != IGNORE_INDEX).long()
        return dict(batch)


# -- the trainer ------------------------------------------------------------------


class GengymDPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` fed by :class:`PreferenceCollator`, logging the paper's compute axis.

    Trained tokens are counted by the ``Trainer`` itself
    (``include_num_input_tokens_seen="non_padding"``: the attention mask of
    every micro-batch, chosen and rejected rows, summed over all processes,
    restored on resume).

    Args:
        num_params: ``N``.
        init_tokens: ``D_init``, tokens that produced the starting checkpoint.
        extra_gflops: Compute spent before training that the run should
            carry (sampling model-made pairs).
        *args, **kwargs: Those of ``trl.DPOTrainer``.
    """

    def __init__(
        self, *args: Any, num_params: int, init_tokens: int = 0, extra_gflops: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.num_params = num_params
        self.init_tokens = init_tokens
        self.extra_gflops = extra_gflops

    def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        # The collator renders and encodes each pair itself (never truncating),
        # so TRL's text tokenisation pass is skipped.
        return dataset

    @property
    def train_tokens(self) -> int:
        """``D_DPO`` so far: non-padding tokens of chosen and rejected sequences, all processes."""
        return int(self.state.num_input_tokens_seen)

    @property
    def gflops(self) -> float:
        """``6 N (D_init + D_DPO) + 2 N D_ref`` (``D_ref = D_DPO``) in units of 10^9, plus ``extra_gflops``."""
        flops = rl_flops(self.num_params, self.init_tokens, self.train_tokens, self.train_tokens)
        return flops / 1e9 + self.extra_gflops

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs["compute/train_tokens"] = float(self.train_tokens)
            logs["compute/gflops"] = self.gflops
        super().log(logs, start_time)


class _SnapshotCallback(TrainerCallback):
    """Writes a loadable model at each of ``snapshot_steps``."""

    def __init__(self, writer: ModelWriter, folder: Path, steps: Sequence[int]) -> None:
        self.writer = writer
        self.folder = folder
        self.steps = set(steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.writer.write(self.folder / f"step-{state.global_step:06d}")


# -- the run ----------------------------------------------------------------------


def _pairs_config(config: GengymDPOConfig) -> PairsConfig | None:
    if config.dataset or not config.env_id:
        return None
    return PairsConfig(
        env_id=config.env_id,
        num_pairs=config.num_pairs,
        seed=config.data_seed,
        env_kwargs=dict(config.env_kwargs),
        variant=config.variant,
        prompt_format=config.prompt_format,
        revision_share=config.revision_share,
        progress_bar=config.progress_bar,
    )


def _trl_config(config: GengymDPOConfig, *, learning_rate: float, bf16: bool, use_cuda: bool) -> DPOConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return DPOConfig(
        output_dir=config.output_dir,
        seed=config.seed,
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        weight_decay=config.weight_decay,
        adam_epsilon=config.adam_eps,
        max_grad_norm=config.max_grad_norm,
        bf16=bf16,
        use_cpu=not use_cuda,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=not config.progress_bar,
        dataloader_num_workers=config.dataloader_num_workers,
        # Pairs go to the collator untouched: no TRL tokenisation, no truncation.
        remove_unused_columns=False,
        max_length=None,
        precompute_ref_log_probs=False,
        include_num_input_tokens_seen="non_padding",
        deepspeed=deepspeed_settings(config),  # reads deepspeed / offload_* like SFT's config
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
    try:
        return _train(config)
    finally:
        # TRL's settings switch on ZeRO-3 loading for the whole process; later
        # from_pretrained calls (evaluation, PPO in the same process) must load
        # whole models again.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def _train(config: GengymDPOConfig) -> Path:
    output_dir = Path(config.output_dir)
    main = _is_main_process()

    # 1. data
    dataset, env_id = load_training_pairs(
        dataset=config.dataset, env_id=config.env_id, generate=_pairs_config(config), progress=config.progress_bar and main
    )
    has_images = max_images_per_example(dataset) > 0

    # 2. the model's kind, from its config alone
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read a model config at {config.model!r}: {err}") from err
    is_vision = is_vision_config(model_config)
    if is_vision is None:
        raise ConfigError(
            f"{config.model!r} ({type(model_config).__name__}) is neither an image-text-to-text nor a causal LM "
            "model; gengym trains generative models only"
        )
    if has_images and not is_vision:
        raise ConfigError(
            f"{config.model!r} is a text-only model but the pairs of {env_id or config.dataset} hold images; "
            "train it on the env's text mode (e.g. GeneralPoints-L-v0) or use a vision-language model"
        )
    if not is_vision:
        dataset = dataset.remove_columns("images")  # TRL takes an images column as a VLM dataset
    chat_template = None
    if config.chat_template_file:
        try:
            chat_template = Path(config.chat_template_file).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read chat_template_file {config.chat_template_file!r}: {err}") from err

    # 3. TRL settings before the models (ZeRO-3 partitions while loading)
    use_cuda = _use_cuda(config)
    bf16 = _use_bf16(config, use_cuda)
    if config.deepspeed != "none":
        from trainers.common.engine import init_distributed

        init_distributed(None if use_cuda else "gloo")
    learning_rate = config.resolved_learning_rate(has_images)
    trl_config = _trl_config(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda)

    # 4. models. Full fine-tuning without DeepSpeed keeps fp32 weights (small
    # learning rates are below bf16's resolution); the reference matches the
    # policy. With LoRA, TRL scores the reference with the adapters off.
    keep_fp32 = config.deepspeed == "none" and not config.lora
    dtype = torch.bfloat16 if bf16 and not keep_fp32 else torch.float32
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
    for index in longest_pairs(dataset, PREFLIGHT_PAIRS):
        try:
            collator([dataset[index]])
        except ValueError as err:
            raise ConfigError(f"pair {index} cannot be encoded: {err}") from err
    num_params = count_parameters(model)
    extra_gflops = sampling_gflops(config.dataset) if config.dataset else 0.0

    # 5. training
    writer = ModelWriter(
        config,  # type: ignore[arg-type]  # reads model, lora, deepspeed, trust_remote_code like SFT's config
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
    callbacks = [
        _jsonl_callback(output_dir),
        _SnapshotCallback(writer, output_dir / SNAPSHOT_DIR, config.snapshot_steps),
    ]
    if config.tensorboard:
        callbacks.append(_tensorboard_callback(output_dir / "tensorboard"))
    trainer = GengymDPOTrainer(
        model=model,
        ref_model=reference,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=_lora_config(config) if config.lora else None,  # type: ignore[arg-type]
        callbacks=callbacks,
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
        extra_gflops=extra_gflops,
    )
    writer.trainer = trainer  # type: ignore[assignment]
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "gengym_dpo_config.json").write_text(json.dumps(config_to_dict(config), indent=2))
    resume_from = None
    if config.resume:
        from transformers.trainer_utils import get_last_checkpoint

        resume_from = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume_from is None:
            logger.warning("resume requested but no checkpoint in %s; starting fresh", output_dir)
    trainer.train(resume_from_checkpoint=resume_from)

    # 6. output
    return writer.write(output_dir / FINAL_DIR)
