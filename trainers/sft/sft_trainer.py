"""Supervised fine-tuning on oracle data: TRL's ``SFTTrainer``, extended through its hooks.

:func:`train_sft` reads top to bottom:

1. **data** -- verified oracle examples, generated from the env
   (:mod:`trainers.data.oracle`) or read from a ``gengym data`` folder;
2. **checks** -- the model's kind (vision-language or text) is read from its
   config alone and matched against the data, so a wrong pairing fails
   before any weights are loaded;
3. **TRL settings** -- TRL's ``SFTConfig`` is built *before* the model, so
   that under ZeRO-3 ``from_pretrained`` partitions the weights as it loads
   them (a model larger than one device never exists whole);
4. **model** -- any checkpoint through the Auto classes
   (:func:`trainers.common.modeling.load_model_and_processor`), optionally
   with LoRA adapters (peft, handed to TRL);
5. **training** -- TRL's loop, logging, checkpointing, DeepSpeed and peft,
   with gengym's own collator (:class:`SFTCollator`): the loss covers only
   the assistant's tokens, images are encoded by the model's own processor,
   and a sequence longer than ``max_length`` stops the run with a message
   instead of being truncated through its image tokens;
6. **output** -- ``output_dir/final``: the model (merged, for LoRA) in
   safetensors, its processor or tokenizer with the chat template, and
   ``gengym_training.json``, the compute record the PPO trainer reads to
   place its own run on the paper's FLOPs axis.

Why not TRL's own collators: TRL's vision collator truncates at
``max_length`` (which can cut image tokens) and, for prompt-completion data,
does not extend Mllama's ``cross_attention_mask``;
:func:`trainers.common.inputs.encode_for_sft` handles every family and never
truncates. So the dataset goes to TRL untouched (``skip_prepare_dataset``,
``remove_unused_columns=False``) and the collator does the encoding.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from trainers.common.compute import TRAINING_RECORD, count_parameters, init_tokens_of, sft_flops
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.engine_config import DEEPSPEED_CONFIG_DIR
from trainers.common.inputs import IGNORE_INDEX, encode_for_sft
from trainers.common.modeling import forget_load_renames, is_vision_config, load_model_and_processor
from trainers.data.oracle import OracleDataConfig, build_oracle_dataset, clean_messages
from trainers.sft.sft_config import GengymSFTConfig

logger = logging.getLogger(__name__)

#: The final model's folder inside ``output_dir``.
FINAL_DIR = "final"
#: Folder of the ``snapshot_steps`` models inside ``output_dir`` (``step-NNNNNN``).
SNAPSHOT_DIR = "snapshots"
#: Examples (the longest by text) encoded before training to catch sequences
#: over ``max_length`` early; the collator still checks every batch.
PREFLIGHT_EXAMPLES = 4


# -- the collator ----------------------------------------------------------------


def keep_last_labelled_run(labels: torch.Tensor) -> torch.Tensor:
    """Labels with only each row's last run of labelled positions kept.

    Assistant turns are separated by (unlabelled) user turns, so each
    assistant answer is one run of labelled positions, and the last run is
    the final answer. In a revision dialogue that is the verified
    correction; the rejected attempt before it stays context, so the model
    is not taught to make the mistake.

    Example:
        >>> keep_last_labelled_run(torch.tensor([[-100, 5, 6, -100, 7, 8, -100]])).tolist()
        [[-100, -100, -100, -100, 7, 8, -100]]
    """
    labelled = labels != IGNORE_INDEX
    previous = torch.nn.functional.pad(labelled[:, :-1], (1, 0), value=False)
    starts = labelled & ~previous
    positions = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
    last_start = torch.where(starts, positions, torch.full_like(positions, -1)).max(dim=1, keepdim=True).values
    return labels.masked_fill(positions < last_start, IGNORE_INDEX)


class SFTCollator:
    """Turns dataset rows (``messages``, ``images``) into a training batch.

    Args:
        processor: The model's processor (VLM) or tokenizer (text LM).
        max_length: Longest allowed row; longer rows raise ``ValueError``.
        train_on: ``"last_turn"`` (loss on the final assistant answer only)
            or ``"all_turns"``.
    """

    def __init__(self, processor: Any, max_length: int | None, train_on: str = "last_turn") -> None:
        if train_on not in ("last_turn", "all_turns"):
            raise ValueError(f"train_on must be 'last_turn' or 'all_turns', got {train_on!r}")
        self.processor = processor
        self.max_length = max_length
        self.train_on = train_on

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        conversations = [clean_messages(example["messages"]) for example in examples]
        images = [list(example.get("images") or []) for example in examples]
        batch = encode_for_sft(
            self.processor,
            conversations,
            images if any(images) else None,
            max_length=self.max_length,
            padding_side="right",
        )
        if self.train_on == "last_turn":
            batch["labels"] = keep_last_labelled_run(batch["labels"])
        return dict(batch)


# -- the trainer ------------------------------------------------------------------


class GengymSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` that also logs the paper's compute axis.

    Trained tokens are counted by the ``Trainer`` itself
    (``include_num_input_tokens_seen="non_padding"``: the attention mask of
    every micro-batch, summed over all processes, saved in the trainer state
    and so restored on resume); this subclass only turns the count into
    ``compute/...`` metrics.

    Args:
        num_params: ``N`` of the compute formula.
        init_tokens: ``D_init``, tokens that produced the starting checkpoint.
        *args, **kwargs: Those of ``trl.SFTTrainer``.
    """

    def __init__(self, *args: Any, num_params: int, init_tokens: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_params = num_params
        self.init_tokens = init_tokens

    @property
    def train_tokens(self) -> int:
        """``D_SFT`` so far: non-padding tokens passed forward and backward, all processes."""
        return int(self.state.num_input_tokens_seen)

    @property
    def gflops(self) -> float:
        """``6 N (D_init + D_SFT)`` in units of 10^9."""
        return sft_flops(self.num_params, self.init_tokens, self.train_tokens) / 1e9

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs["compute/train_tokens"] = float(self.train_tokens)
            logs["compute/gflops"] = self.gflops
        super().log(logs, start_time)


def _jsonl_callback(output_dir: Path) -> Any:
    """A callback that writes every log record to ``metrics.jsonl`` (main process only)."""
    from transformers import TrainerCallback

    from trainers.common.metrics import MetricsLogger

    class JsonlMetricsCallback(TrainerCallback):
        def __init__(self) -> None:
            self.logger: MetricsLogger | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.logger = MetricsLogger(output_dir, tensorboard=False)
                self.logger.truncate_after(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.logger is not None and logs:
                self.logger.log(state.global_step, dict(logs))

    return JsonlMetricsCallback()


def _tensorboard_callback(log_dir: Path) -> Any:
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return callback


# -- data -------------------------------------------------------------------------


def load_training_data(config: GengymSFTConfig, *, progress: bool = True) -> tuple[Any, str]:
    """The training examples and the env id they come from.

    Returns:
        ``(dataset, env_id)``: a ``datasets.Dataset`` with ``messages`` and
        ``images`` columns, and the env id (``""`` for a folder without an
        ``env_id`` column and none configured).

    Raises:
        ConfigError: An unreadable or malformed data folder, data of another
            env than ``env_id``, or settings the env refuses.
    """
    if not config.dataset:
        data_config = OracleDataConfig(
            env_id=config.env_id,
            num_examples=config.num_examples,
            seed=config.data_seed,
            env_kwargs=dict(config.env_kwargs),
            variant=config.variant,
            multi_turn=config.multi_turn,
        )
        try:
            dataset = build_oracle_dataset(data_config, progress=progress)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"cannot generate oracle data for {config.env_id}: {err}") from err
        return dataset, config.env_id

    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(config.dataset)
    except (FileNotFoundError, OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read a dataset at {config.dataset!r} (expected a folder written by `gengym data` or "
            f"Dataset.save_to_disk): {err}"
        ) from err
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise ConfigError(f"{config.dataset} holds splits {list(dataset)} but no 'train' split")
        dataset = dataset["train"]
    if not isinstance(dataset, Dataset) or "messages" not in dataset.column_names:
        raise ConfigError(f"{config.dataset}: expected a dataset with a 'messages' column (and 'images')")
    if len(dataset) == 0:
        raise ConfigError(f"{config.dataset} holds no examples")
    if "images" not in dataset.column_names:
        dataset = dataset.add_column("images", [[] for _ in range(len(dataset))])
    env_ids = sorted(set(dataset["env_id"])) if "env_id" in dataset.column_names else []
    if config.env_id and env_ids and env_ids != [config.env_id]:
        raise ConfigError(
            f"env_id is {config.env_id!r} but {config.dataset} holds data of {', '.join(env_ids)}; "
            "leave env_id empty or name the dataset's env"
        )
    env_id = config.env_id or (env_ids[0] if len(env_ids) == 1 else "")
    return dataset, env_id


def max_images_per_example(dataset: Any) -> int:
    """Most images in one example, read from the Arrow column without decoding any image."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(dataset.data.column("images"))
    largest = pc.max(lengths).as_py()
    return int(largest or 0)


def has_revision_dialogues(dataset: Any) -> bool:
    """Whether any example has more than one assistant turn."""
    return any(sum(m["role"] == "assistant" for m in row) > 1 for row in dataset["messages"])


def check_examples(dataset: Any) -> None:
    """Check every example's structure before training (data folders are untrusted input).

    Each conversation must be a list of ``user``/``assistant``/``system``
    messages that ends with an assistant answer, and hold as many image
    placeholders as the row has images.

    Raises:
        ConfigError: Naming the first malformed row and what is wrong.
    """
    import pyarrow.compute as pc

    image_counts = pc.list_value_length(dataset.data.column("images")).to_pylist()
    for row, (messages, images) in enumerate(zip(dataset["messages"], image_counts, strict=True)):
        try:
            if not isinstance(messages, list) or not messages:
                raise ValueError("no messages")
            placeholders = 0
            for message in messages:
                if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                    raise ValueError(f"a message needs a role of system, user or assistant: {message!r:.80}")
                content = message.get("content")
                if isinstance(content, list):
                    placeholders += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
                elif not isinstance(content, str):
                    raise ValueError(f"content must be text or a list of parts: {content!r:.80}")
            if messages[-1]["role"] != "assistant":
                raise ValueError("the conversation must end with the assistant's answer")
            if placeholders != (images or 0):
                raise ValueError(f"{placeholders} image placeholders but {images or 0} images")
        except ValueError as err:
            raise ConfigError(f"training example {row} is malformed: {err}") from None


def _preflight_lengths(collator: SFTCollator, dataset: Any) -> None:
    """Encode the examples with the most text first, so a too-long one fails before training.

    Within one dataset the images have one size, so the longest text makes
    the longest sequence; the collator still checks every batch.
    """
    sizes = [len(json.dumps(messages)) for messages in dataset.data.column("messages").to_pylist()]
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i])[:PREFLIGHT_EXAMPLES]:
        try:
            collator([dataset[index]])
        except ValueError as err:
            raise ConfigError(f"training example {index} cannot be encoded: {err}") from err


# -- model and engine -------------------------------------------------------------


def _use_cuda(config: GengymSFTConfig) -> bool:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=auto or cpu")
    return config.device != "cpu" and torch.cuda.is_available()


def _use_bf16(config: GengymSFTConfig, use_cuda: bool) -> bool:
    if config.dtype == "bfloat16":
        return True
    return config.dtype == "auto" and use_cuda and torch.cuda.is_bf16_supported()


def deepspeed_settings(config: GengymSFTConfig) -> dict[str, Any] | None:
    """The DeepSpeed config dict for ``config.deepspeed``, from the shipped files.

    ``"auto"`` values in the files are filled in by the ``Trainer`` from its
    own settings (batch sizes, clipping, precision, bucket sizes from the
    model's hidden size). Offloading adds the CPU placement and, for the
    optimizer, DeepSpeed's own AdamW (built on first use), the optimizer that
    works on offloaded states.
    """
    if config.deepspeed == "none":
        return None
    settings = json.loads((DEEPSPEED_CONFIG_DIR / f"{config.deepspeed}.json").read_text())
    zero = settings["zero_optimization"]
    pin = torch.cuda.is_available()
    if config.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
        settings["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return settings


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _lora_config(config: GengymSFTConfig) -> Any:
    from peft import LoraConfig

    targets = config.lora_target_modules.strip()
    target_modules: str | list[str] = (
        targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    )
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )


def _trl_config(config: GengymSFTConfig, *, learning_rate: float, bf16: bool, use_cuda: bool) -> SFTConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return SFTConfig(
        output_dir=config.output_dir,
        seed=config.seed,
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
        # The dataset goes to the collator untouched: no TRL tokenisation, no truncation.
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        include_num_input_tokens_seen="non_padding",
        deepspeed=deepspeed_settings(config),
    )


# -- the run ----------------------------------------------------------------------


def train_sft(config: GengymSFTConfig) -> Path:
    """Fine-tune ``config.model`` on oracle data; return the final checkpoint folder.

    Raises:
        ConfigError: Settings that cannot work (checked before any weights
            are loaded), or a training sequence longer than ``max_length``
            (checked on the longest examples before training starts).
    """
    config.validate()
    config.check_runnable()
    try:
        return _train(config)
    finally:
        # TRL's settings switch on ZeRO-3 loading for the whole process; later
        # `from_pretrained` calls (evaluation, PPO in the same process) must
        # load whole models again.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def _train(config: GengymSFTConfig) -> Path:
    output_dir = Path(config.output_dir)
    main = _is_main_process()

    # 1. data
    dataset, env_id = load_training_data(config, progress=config.progress_bar and main)
    check_examples(dataset)
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
            "model; gengym fine-tunes generative models only"
        )
    if has_images and not is_vision:
        raise ConfigError(
            f"{config.model!r} is a text-only model but the data of {env_id or config.dataset} hold images; "
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

    # 3. TRL settings before the model (ZeRO-3 partitions while loading)
    use_cuda = _use_cuda(config)
    bf16 = _use_bf16(config, use_cuda)
    if config.deepspeed != "none":
        # DeepSpeed reads the world size when ZeRO-3 loading starts, before the
        # Trainer would set up processes: start them here (and as one process
        # when the run was started without a launcher).
        from trainers.common.engine import init_distributed

        init_distributed(None if use_cuda else "gloo")
    learning_rate = config.resolved_learning_rate(has_images)
    trl_config = _trl_config(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda)

    # 4. model. Full fine-tuning without DeepSpeed keeps fp32 weights (bf16 only
    # in autocast): an lr of 1e-6 is below bf16's resolution for most weights,
    # so bf16 weights would not move. DeepSpeed keeps its own fp32 master copy,
    # and LoRA's frozen base needs no precision for updates.
    keep_fp32 = config.deepspeed == "none" and not config.lora
    dtype = torch.bfloat16 if bf16 and not keep_fp32 else torch.float32
    loaded = load_model_and_processor(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code, chat_template=chat_template
    )
    model, processor = loaded.model, loaded.processor
    collator = SFTCollator(processor, config.max_length, config.train_on)
    _preflight_lengths(collator, dataset)
    num_params = count_parameters(model)

    # 5. training
    writer = ModelWriter(
        config,
        processor=processor,
        dtype=dtype,
        record={
            "method": "sft",
            "env_id": env_id,
            "base_model": config.model,
            "num_params": num_params,
            "examples": len(dataset),
            "dataset": config.dataset or None,
            "multi_turn": has_revision_dialogues(dataset),
            "lora": bool(config.lora),
            "learning_rate": learning_rate,
        },
    )
    callbacks = [_jsonl_callback(output_dir), _SnapshotCallback(writer, output_dir / SNAPSHOT_DIR)]
    if config.tensorboard:
        callbacks.append(_tensorboard_callback(output_dir / "tensorboard"))
    trainer = GengymSFTTrainer(
        model=model,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=_lora_config(config) if config.lora else None,
        callbacks=callbacks,
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
    )
    writer.trainer = trainer
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "gengym_sft_config.json").write_text(json.dumps(config_to_dict(config), indent=2))
    resume_from = None
    if config.resume:
        from transformers.trainer_utils import get_last_checkpoint

        resume_from = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume_from is None:
            logger.warning("resume requested but no checkpoint in %s; starting fresh", output_dir)
    trainer.train(resume_from_checkpoint=resume_from)

    # 6. output
    return writer.write(output_dir / FINAL_DIR)


class ModelWriter:
    """Writes loadable models of the run: the final one and snapshots along the way.

    Each folder gets the model (LoRA merged into its base), the processor or
    tokenizer with the chat template, and ``gengym_training.json`` with the
    compute spent up to that point. Every process calls :meth:`write` (ZeRO-3
    gathers collectively); only the main process writes files.

    Args:
        config: The run's settings.
        processor: The model's processor or tokenizer.
        dtype: Dtype the base model was loaded in (for LoRA merges).
        record: Fixed fields of the compute record.
    """

    def __init__(self, config: GengymSFTConfig, *, processor: Any, dtype: torch.dtype, record: dict[str, Any]):
        self.config = config
        self.processor = processor
        self.dtype = dtype
        self.record = record
        self.trainer: GengymSFTTrainer | None = None

    def write(self, directory: Path) -> Path:
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("ModelWriter.trainer is not set")
        if trainer.accelerator.is_main_process and directory.exists():
            shutil.rmtree(directory)  # a snapshot left by an interrupted run is rewritten whole
        save_trained_model(trainer, directory, zero3=self.config.deepspeed == "zero3")
        if trainer.accelerator.is_main_process:
            if self.config.lora:
                _merge_lora(self.config, directory, dtype=self.dtype)
            self.processor.save_pretrained(str(directory))
            record = {
                **self.record,
                "init_tokens": trainer.init_tokens,
                "train_tokens": trainer.train_tokens,
                "gflops": trainer.gflops,
                "steps": int(trainer.state.global_step),
            }
            (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
        trainer.accelerator.wait_for_everyone()
        return directory


class _SnapshotCallback(TrainerCallback):
    """Writes a loadable model at each of ``config.snapshot_steps``."""

    def __init__(self, writer: ModelWriter, folder: Path) -> None:
        self.writer = writer
        self.folder = folder
        self.steps = set(writer.config.snapshot_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.writer.write(self.folder / f"step-{state.global_step:06d}")


def save_trained_model(trainer: SFTTrainer, directory: Path, *, zero3: bool) -> None:
    """Write the trained model (or adapter) to ``directory`` with its own ``save_pretrained``.

    Under ZeRO-3 the parameters are gathered once (one full copy of the
    weights per process for the duration of the save); ZeRO-2 keeps whole
    parameters on every process.

    Weight names: see :func:`trainers.common.modeling.forget_load_renames`.
    """
    import contextlib

    model = trainer.accelerator.unwrap_model(trainer.model)
    gather: Any = contextlib.nullcontext()
    if zero3 and trainer.is_deepspeed_enabled:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
        forget_load_renames(model)
    with gather:
        if trainer.accelerator.is_main_process:
            directory.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(directory), safe_serialization=True)
    trainer.accelerator.wait_for_everyone()


def _merge_lora(config: GengymSFTConfig, final: Path, *, dtype: torch.dtype) -> None:
    """Replace the adapter in ``final`` by the base model with the adapter merged in.

    The PPO trainer and ``from_pretrained`` then load ``final`` like any
    checkpoint. The base model is loaded afresh on this (main) process, outside
    any ZeRO-3 partitioning, which works the same whatever engine trained the
    adapter; the adapter alone is kept in ``final/adapter``.
    """
    from peft import PeftModel
    from transformers.integrations import deepspeed as hf_deepspeed

    adapter_dir = final / "adapter"
    adapter_dir.mkdir(exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):
        if (final / name).exists():
            shutil.move(str(final / name), str(adapter_dir / name))
    # Load the base whole, on this process only: switch ZeRO-3 loading off
    # meanwhile (a snapshot is written mid-run, when training still needs it).
    weak = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    active = weak() if weak is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        base = load_model_and_processor(config.model, dtype=dtype, trust_remote_code=config.trust_remote_code).model
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(final), safe_serialization=True)
    finally:
        if active is not None:
            hf_deepspeed.set_hf_deepspeed_config(active)
