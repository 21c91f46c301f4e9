"""Supervised fine-tuning on oracle data: TRL's ``SFTTrainer``, extended through its hooks.

:func:`train_sft` reads top to bottom:

1. **data** -- verified oracle examples, generated from the env
   (:mod:`trainers.data.oracle`) or read from a ``gengym data`` folder;
2. **checks** -- the model's kind (vision-language or text) is read from its
   config alone and matched against the data, so a wrong pairing fails
   before any weights are loaded (and, for generated data, before more than
   one example is made);
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer

from gengym_core.run_safety import output_lock
from trainers.common.compute import count_parameters, init_tokens_of, sft_flops
from trainers.common.config import ConfigError
from trainers.common.hf_trainer_support import (
    FINAL_DIR,
    ComputeLoggingMixin,
    ModelWriter,
    check_model_kind,
    is_main_process,
    lora_config,
    max_images_per_example,
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
from trainers.data.oracle import (
    OracleDataConfig,
    build_oracle_dataset,
    clean_messages,
    image_placeholders,
    iter_oracle_examples,
)
from trainers.sft.sft_config import GengymSFTConfig

#: Examples (the longest by text) encoded before training to catch sequences
#: over ``max_length`` early; the collator still checks every batch.
PREFLIGHT_EXAMPLES = 4
#: The run's settings in ``output_dir`` (a resumed run must keep them).
SETTINGS_FILE = "gengym_sft_config.json"


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


class GengymSFTTrainer(ComputeLoggingMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` that also logs the paper's compute axis (``compute/...`` metrics).

    Args:
        num_params: ``N`` of the compute formula.
        init_tokens: ``D_init``, tokens that produced the starting checkpoint.
        *args, **kwargs: Those of ``trl.SFTTrainer``.
    """

    @property
    def gflops(self) -> float:
        """``6 N (D_init + D_SFT)`` in units of 10^9 (``D_SFT``: :attr:`train_tokens`)."""
        return sft_flops(self.num_params, self.init_tokens, self.train_tokens) / 1e9


# -- data -------------------------------------------------------------------------


def _oracle_data_config(config: GengymSFTConfig, num_examples: int | None = None) -> OracleDataConfig:
    return OracleDataConfig(
        env_id=config.env_id,
        num_examples=num_examples or config.num_examples,
        seed=config.data_seed,
        env_kwargs=dict(config.env_kwargs),
        variant=config.variant,
        multi_turn=config.multi_turn,
    )


def generated_data_have_images(config: GengymSFTConfig) -> bool:
    """Whether the oracle data ``config`` would generate hold images, from their first example alone.

    Making that one verified example also checks the env id, variant and
    env kwargs, so a wrong setting fails at once rather than after all the
    data are generated.

    Raises:
        ConfigError: Settings the env refuses (or an env whose oracle fails).
    """
    try:
        first = next(iter_oracle_examples(_oracle_data_config(config, num_examples=1)))
    except (ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(f"cannot generate oracle data for {config.env_id}: {err}") from err
    return len(first["images"]) > 0


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
        try:
            dataset = build_oracle_dataset(_oracle_data_config(config), progress=progress)
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
            placeholders = image_placeholders(messages)
            if messages[-1]["role"] != "assistant":
                raise ValueError("the conversation must end with the assistant's answer")
            if placeholders != (images or 0):
                raise ValueError(f"{placeholders} image placeholders but {images or 0} images")
        except ValueError as err:
            raise ConfigError(f"training example {row} is malformed: {err}") from None


def _longest_examples(dataset: Any) -> list[int]:
    """The examples with the most text, longest first.

    Within one dataset the images have one size, so the longest text makes
    the longest sequence.
    """
    sizes = [len(json.dumps(messages)) for messages in dataset.data.column("messages").to_pylist()]
    return sorted(range(len(sizes)), key=lambda i: -sizes[i])[:PREFLIGHT_EXAMPLES]


def _trl_config(config: GengymSFTConfig, *, learning_rate: float, bf16: bool, use_cuda: bool) -> SFTConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return SFTConfig(
        **trl_training_kwargs(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda),
        # The dataset goes to the collator untouched: no TRL tokenisation, no truncation.
        dataset_kwargs={"skip_prepare_dataset": True},
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
    with output_lock(config.output_dir), reset_zero3_loading():
        return _train(config)


def _train(config: GengymSFTConfig) -> Path:
    output_dir = Path(config.output_dir)

    # 0. the run folder: a new run, a resumed one, or one that is already complete
    run = start_run(config, output_dir, SETTINGS_FILE)
    if run.finished is not None:
        return run.finished

    # 1. data: a folder is read now; generated data are first tried on one
    # example, so that a wrong env setting or a model that cannot take the
    # images fails before the whole set is generated
    progress = config.progress_bar and is_main_process()
    dataset, env_id = None, config.env_id
    if config.dataset:
        dataset, env_id = load_training_data(config, progress=progress)
        check_examples(dataset)
        has_images = max_images_per_example(dataset) > 0
    else:
        has_images = generated_data_have_images(config)

    # 2. the model's kind, from its config alone
    is_vision = check_model_kind(
        config.model,
        trust_remote_code=config.trust_remote_code,
        has_images=has_images,
        data=f"the data of {env_id or config.dataset}",
        not_generative="gengym fine-tunes generative models only",
        text_only_hint="train it on the env's text mode (e.g. GeneralPoints-L-v0) or use a vision-language model",
    )
    if dataset is None:
        dataset, env_id = load_training_data(config, progress=progress)
        check_examples(dataset)
    if not is_vision:
        dataset = dataset.remove_columns("images")  # TRL takes an images column as a VLM dataset
    chat_template = read_chat_template(config.chat_template_file)

    # 3. TRL settings before the model (ZeRO-3 partitions while loading)
    use_cuda, bf16 = prepare_engine(config)
    learning_rate = config.resolved_learning_rate(has_images)
    trl_config = _trl_config(config, learning_rate=learning_rate, bf16=bf16, use_cuda=use_cuda)

    # 4. model (fp32 weights for full fine-tuning without DeepSpeed: see training_dtype)
    dtype = training_dtype(bf16, deepspeed=config.deepspeed, lora=config.lora)
    loaded = load_model_and_processor(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code, chat_template=chat_template
    )
    model, processor = loaded.model, loaded.processor
    collator = SFTCollator(processor, config.max_length, config.train_on)
    preflight_encoding(collator, dataset, _longest_examples(dataset), what="training example")
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
    trainer = GengymSFTTrainer(
        model=model,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(config) if config.lora else None,
        callbacks=training_callbacks(config, output_dir, writer),
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
    )
    writer.trainer = trainer
    write_run_settings(output_dir, SETTINGS_FILE, config)
    train_or_finish(trainer, run)

    # 6. output
    return writer.write(output_dir / FINAL_DIR)
