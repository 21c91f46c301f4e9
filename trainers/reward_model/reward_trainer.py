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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import RewardConfig, RewardTrainer

from gengym_core.run_safety import output_lock, replace_folder
from trainers.common.compute import TRAINING_RECORD, count_parameters, init_tokens_of, sft_flops
from trainers.common.hf_trainer_support import (
    FINAL_DIR,
    ComputeLoggingMixin,
    gathered_parameters,
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
from trainers.common.modeling import get_tokenizer, load_model_and_processor
from trainers.pairs.build import (
    chosen_then_rejected,
    load_pairs_for_model,
    longest_pairs,
    sampling_gflops,
)
from trainers.reward_model.modeling import (
    RewardModel,
    encode_for_scoring,
    new_reward_model,
    save_reward_model,
)
from trainers.reward_model.reward_config import GengymRewardModelConfig

#: Pairs (the longest by text) encoded before training to catch overlong ones early.
PREFLIGHT_PAIRS = 4
#: The run's settings in ``output_dir``.
SETTINGS_FILE = "gengym_reward_model_config.json"


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
        conversations, images = chosen_then_rejected(rows)
        return dict(encode_for_scoring(self.processor, conversations, images, max_length=self.max_length))


class GengymRewardTrainer(ComputeLoggingMixin, RewardTrainer):
    """TRL's ``RewardTrainer`` on a :class:`RewardModel`, logging its compute.

    Args:
        num_params: ``N_RM`` (backbone and head).
        init_tokens: ``D_init`` of the backbone checkpoint.
        *args, **kwargs: Those of ``trl.RewardTrainer``.
    """

    def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        # The collator renders and encodes each pair itself (never truncating).
        return dataset

    @property
    def gflops(self) -> float:
        """``6 N_RM (D_init + D_RM)`` in units of 10^9 (``D_RM``: :attr:`train_tokens`)."""
        return sft_flops(self.num_params, self.init_tokens, self.train_tokens) / 1e9

    @property
    def train_gflops(self) -> float:
        """``6 N_RM D_RM`` in units of 10^9: this run's own training."""
        return sft_flops(self.num_params, 0, self.train_tokens) / 1e9


def _trl_config(config: GengymRewardModelConfig, *, bf16: bool, use_cuda: bool) -> RewardConfig:
    """TRL's settings for this run; creating it sets up DeepSpeed (ZeRO-3 loading)."""
    return RewardConfig(
        **trl_training_kwargs(config, learning_rate=config.learning_rate, bf16=bf16, use_cuda=use_cuda),
        center_rewards_coefficient=config.center_rewards_coefficient or None,
    )


def train_reward_model(config: GengymRewardModelConfig) -> Path:
    """Train a reward model on env pairs; return the final reward-model folder.

    Raises:
        ConfigError: Settings that cannot work (checked before any weights
            load), or a pair longer than ``max_length``.
    """
    config.validate()
    config.check_runnable()
    with output_lock(config.output_dir), reset_zero3_loading():
        return _train(config)


def _train(config: GengymRewardModelConfig) -> Path:
    output_dir = Path(config.output_dir)
    run = start_run(config, output_dir, SETTINGS_FILE)  # no checkpoints: a new run (refused over an earlier one)
    chat_template = read_chat_template(config.chat_template_file)  # a bad path fails before any work

    # 1. data, and 2. the backbone's kind, from its config alone
    dataset, env_id, has_images, _ = load_pairs_for_model(
        config,
        not_generative="gengym builds reward models on generative backbones",
        text_only_hint="use a vision-language backbone or the env's text mode",
    )

    # 3. TRL settings before the model (ZeRO-3 partitions while loading)
    use_cuda, bf16 = prepare_engine(config)
    trl_config = _trl_config(config, bf16=bf16, use_cuda=use_cuda)

    # 4. model: the backbone (fp32 weights without DeepSpeed, as in SFT) and a
    # head drawn from a seeded stream, the same on every process.
    dtype = training_dtype(bf16, deepspeed=config.deepspeed, lora=False)
    loaded = load_model_and_processor(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code, chat_template=chat_template
    )
    processor = loaded.processor
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = new_reward_model(loaded.model, head_hidden=config.head_hidden)
    collator = RewardCollator(processor, config.max_length)
    preflight_encoding(collator, dataset, longest_pairs(dataset, PREFLIGHT_PAIRS), what="pair")
    num_params = count_parameters(model)

    # 5. training
    trainer = GengymRewardTrainer(
        model=model,
        args=trl_config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=get_tokenizer(processor),
        callbacks=training_callbacks(config, output_dir),
        num_params=num_params,
        init_tokens=init_tokens_of(config.model),
    )
    write_run_settings(output_dir, SETTINGS_FILE, config)
    train_or_finish(trainer, run)

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
    model: RewardModel = trainer.accelerator.unwrap_model(trainer.model)
    with gathered_parameters(trainer, model, zero3=zero3, loaded=model.backbone):
        if trainer.accelerator.is_main_process:  # built beside its place and renamed in: whole or absent
            replace_folder(directory, lambda building: _save(model, building, processor, record))
    trainer.accelerator.wait_for_everyone()


def _save(model: RewardModel, directory: Path, processor: Any, record: dict) -> None:
    save_reward_model(model, directory, processor=processor, record=record)
    (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
