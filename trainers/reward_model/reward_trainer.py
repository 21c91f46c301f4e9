"""Reward models on env preference pairs: TRL's ``RewardTrainer``, extended through its hooks.

:func:`train_reward_model` reads top to bottom:

1. **data** -- preference pairs from the env (:mod:`trainers.pairs`) or a
   pairs folder (``gengym pairs``, or any pairs in that format);
2. **checks** -- the backbone's kind (vision-language or text) from its
   config alone, matched against the pairs, before any weights load;
3. **TRL settings** -- built before the model, so ZeRO-3 partitions it while
   it loads;
4. **model** -- the backbone through the Auto classes plus a new scalar head
   (:class:`~trainers.reward_model.modeling.RewardModel`; why not
   ``AutoModelForSequenceClassification``: see that module);
5. **training** -- TRL's Bradley-Terry loss, logging and DeepSpeed, fed by
   :class:`RewardCollator` (chosen conversations, then rejected ones, each
   rendered whole by the model's own template and processor, image tokens
   never truncated);
6. **output** -- ``output_dir/final``: a reward-model folder that PPO loads
   with ``--reward reward-model:PATH``, with ``gengym_training.json``.

Compute of the reward model's own training, recorded like SFT's::

    X_RM = 6 N_RM (D_init + D_RM)

``D_RM`` counts the non-padding tokens of every chosen and rejected
conversation passed forward and backward; ``train_gflops`` in the record is
the ``6 N_RM D_RM`` part alone, the cost that RLHF adds on top of the init
checkpoint (see ``docs/methods.md``). Resumable mid-run checkpoints are not
written (reward-model runs are short); the final folder is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import RewardConfig, RewardTrainer

from trainers.common.compute import TRAINING_RECORD, count_parameters, init_tokens_of, sft_flops
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.modeling import get_tokenizer, is_vision_config, load_model_and_processor
from trainers.pairs.build import (
    load_training_pairs,
    longest_pairs,
    pair_conversations,
    sampling_gflops,
)
from trainers.pairs.config import PairsConfig
from trainers.reward_model.modeling import (
    RewardModel,
    encode_for_scoring,
    new_reward_model,
    save_reward_model,
)
from trainers.reward_model.reward_config import GengymRewardModelConfig

# Run plumbing shared with SFT (same engine settings and logging).
from trainers.sft.sft_trainer import (
    FINAL_DIR,
    _is_main_process,
    _jsonl_callback,
    _tensorboard_callback,
    _use_bf16,
    _use_cuda,
    deepspeed_settings,
    max_images_per_example,
)

#: Pairs (the longest by text) encoded before training to catch overlong ones early.
PREFLIGHT_PAIRS = 4


class RewardCollator:
    """Turns pair rows into a reward-model batch: ``B`` chosen conversations, then ``B`` rejected.

    Args:
        processor: The backbone's processor (VLM) or tokenizer (text LM).
        max_length: Longest allowed conversation; longer ones raise ``ValueError``.
    """

    def __init__(self, processor: Any, max_length: int | None) -> None:
        self.processor = processor
        self.max_length = max_length

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        chosen, rejected, images = zip(*(pair_conversations(row) for row in rows), strict=True)
        all_images = [list(i) for i in images] * 2
        batch = encode_for_scoring(
            self.processor,
            list(chosen) + list(rejected),
            all_images if any(all_images) else None,
            max_length=self.max_length,
        )
        return dict(batch)


class GengymRewardTrainer(RewardTrainer):
    """TRL's ``RewardTrainer`` on a :class:`RewardModel`, logging its compute.

    Args:
        num_params: ``N_RM`` (backbone and head).
        init_tokens: ``D_init`` of the backbone checkpoint.
        *args, **kwargs: Those of ``trl.RewardTrainer``.
    """

    def __init__(self, *args: Any, num_params: int, init_tokens: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_params = num_params
        self.init_tokens = init_tokens

    def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        # The collator renders and encodes each pair itself (never truncating).
        return dataset

    @property
    def train_tokens(self) -> int:
        """``D_RM`` so far: non-padding tokens of chosen and rejected conversations, all processes."""
        return int(self.state.num_input_tokens_seen)

    @property
    def gflops(self) -> float:
        """``6 N_RM (D_init + D_RM)`` in units of 10^9."""
        return sft_flops(self.num_params, self.init_tokens, self.train_tokens) / 1e9

    @property
    def train_gflops(self) -> float:
        """``6 N_RM D_RM`` in units of 10^9: this run's own training."""
        return sft_flops(self.num_params, 0, self.train_tokens) / 1e9

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs["compute/train_tokens"] = float(self.train_tokens)
            logs["compute/gflops"] = self.gflops
        super().log(logs, start_time)


def _pairs_config(config: GengymRewardModelConfig) -> PairsConfig | None:
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


def _trl_config(config: GengymRewardModelConfig, *, bf16: bool, use_cuda: bool) -> RewardConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return RewardConfig(
        output_dir=config.output_dir,
        seed=config.seed,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        weight_decay=config.weight_decay,
        adam_epsilon=config.adam_eps,
        max_grad_norm=config.max_grad_norm,
        center_rewards_coefficient=config.center_rewards_coefficient or None,
        bf16=bf16,
        use_cpu=not use_cuda,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=not config.progress_bar,
        dataloader_num_workers=config.dataloader_num_workers,
        remove_unused_columns=False,
        max_length=None,
        include_num_input_tokens_seen="non_padding",
        deepspeed=deepspeed_settings(config),  # reads deepspeed / offload_* like SFT's config
    )


def train_reward_model(config: GengymRewardModelConfig) -> Path:
    """Train a reward model on env pairs; return the final reward-model folder.

    Raises:
        ConfigError: Settings that cannot work (checked before any weights
            load), or a pair longer than ``max_length``.
    """
    config.validate()
    config.check_runnable()
    try:
        return _train(config)
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def _train(config: GengymRewardModelConfig) -> Path:
    output_dir = Path(config.output_dir)
    main = _is_main_process()

    # 1. data
    dataset, env_id = load_training_pairs(
        dataset=config.dataset, env_id=config.env_id, generate=_pairs_config(config), progress=config.progress_bar and main
    )
    has_images = max_images_per_example(dataset) > 0

    # 2. the backbone's kind, from its config alone
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read a model config at {config.model!r}: {err}") from err
    is_vision = is_vision_config(model_config)
    if is_vision is None:
        raise ConfigError(
            f"{config.model!r} ({type(model_config).__name__}) is neither an image-text-to-text nor a causal LM "
            "model; gengym builds reward models on generative backbones"
        )
    if has_images and not is_vision:
        raise ConfigError(
            f"{config.model!r} is a text-only model but the pairs of {env_id or config.dataset} hold images; "
            "use a vision-language backbone or the env's text mode"
        )
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
        from trainers.common.engine import init_distributed

        init_distributed(None if use_cuda else "gloo")
    trl_config = _trl_config(config, bf16=bf16, use_cuda=use_cuda)

    # 4. model: the backbone (fp32 weights without DeepSpeed, as in SFT) and a
    # head drawn from a seeded stream, the same on every process.
    dtype = torch.bfloat16 if bf16 and config.deepspeed != "none" else torch.float32
    loaded = load_model_and_processor(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code, chat_template=chat_template
    )
    processor = loaded.processor
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = new_reward_model(loaded.model, head_hidden=config.head_hidden)
    collator = RewardCollator(processor, config.max_length)
    for index in longest_pairs(dataset, PREFLIGHT_PAIRS):
        try:
            collator([dataset[index]])
        except ValueError as err:
            raise ConfigError(f"pair {index} cannot be encoded: {err}") from err
    num_params = count_parameters(model)

    # 5. training
    callbacks = [_jsonl_callback(output_dir)]
    if config.tensorboard:
        callbacks.append(_tensorboard_callback(output_dir / "tensorboard"))
    trainer = GengymRewardTrainer(
        model=model,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=get_tokenizer(processor),
        callbacks=callbacks,
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
    )
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "gengym_reward_model_config.json").write_text(json.dumps(config_to_dict(config), indent=2))
    trainer.train()

    # 6. output
    record = {
        "method": "reward-model",
        "env_id": env_id,
        "base_model": config.model,
        "num_params": num_params,
        "pairs": len(dataset),
        "dataset": config.dataset or None,
        "learning_rate": config.learning_rate,
        "init_tokens": trainer.init_tokens,
        "train_tokens": trainer.train_tokens,
        "gflops": trainer.gflops,
        "train_gflops": trainer.train_gflops,
        "pair_sampling_gflops": sampling_gflops(config.dataset) if config.dataset else 0.0,
        "steps": int(trainer.state.global_step),
        "compute_formula": "6 N_RM (D_init + D_RM); train_gflops = 6 N_RM D_RM",
    }
    final = output_dir / FINAL_DIR
    _write_final(trainer, final, processor=processor, record=record, zero3=config.deepspeed == "zero3")
    return final


def _write_final(trainer: GengymRewardTrainer, directory: Path, *, processor: Any, record: dict, zero3: bool) -> None:
    """Write the reward-model folder; under ZeRO-3 the weights are gathered once for it."""
    import shutil

    from trainers.common.modeling import forget_load_renames

    model: RewardModel = trainer.accelerator.unwrap_model(trainer.model)
    gather: Any = contextlib.nullcontext()
    if zero3 and trainer.is_deepspeed_enabled:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
        forget_load_renames(model.backbone)
    with gather:
        if trainer.accelerator.is_main_process:
            if directory.exists():
                shutil.rmtree(directory)
            save_reward_model(model, directory, processor=processor, record=record)
            (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
    trainer.accelerator.wait_for_everyone()
