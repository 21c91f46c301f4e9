"""The models PPO trains, built apart from the loop.

:func:`build_models` loads the policy, its critic (a value head on the
policy's hidden states, or on a separate model), the frozen reference of the
KL penalty, and wraps policy and critic in one
:class:`~trainers.common.engine.TrainEngine`: DeepSpeed ZeRO-3, ZeRO-2 or one
plain device, the same code for all three.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainers.common.compute import count_parameters
from trainers.common.engine import TrainEngine
from trainers.common.engine_config import EngineConfig
from trainers.common.modeling import load_model_and_processor
from trainers.ppo import core
from trainers.ppo.actor_critic import ActorCritic, disable_dropout
from trainers.ppo.ppo_config import PPOConfig
from trainers.ppo.value_head import ValueHead, ValueHeadConfig, load_value_head

logger = logging.getLogger(__name__)


@dataclass
class PPOModels:
    """What :func:`build_models` returns."""

    engine: TrainEngine  # trains engine.module: ActorCritic(policy, value_head, critic_body)
    processor: Any
    dtype: torch.dtype
    reference: Any | None  # a frozen copy of the starting policy, when kl_coef > 0 without LoRA
    lora: bool
    num_params: int  # policy plus a separate critic: N of the paper's compute formula

    def reference_logits(self, inputs: dict[str, Any], num_tokens: int) -> torch.Tensor:
        """``[B, num_tokens, V]`` logits of the starting policy for the last ``num_tokens`` columns.

        With LoRA that is the policy with its adapters switched off (no second copy in memory).
        """
        kwargs = dict(use_cache=False, logits_to_keep=num_tokens + 1)
        if self.lora:
            policy = self.engine.module.policy
            with policy.disable_adapter():
                return policy(**inputs, **kwargs).logits[:, :-1]
        return self.reference(**inputs, **kwargs).logits[:, :-1]


def build_models(cfg: PPOConfig, init_seed: int) -> PPOModels:
    """Load and wrap every model of a run; new weights (LoRA, value head) are drawn from ``init_seed``."""
    use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
    bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and use_cuda and torch.cuda.is_bf16_supported())
    dtype = torch.bfloat16 if bf16 else torch.float32
    engine_cfg = cfg.engine_config(bf16=bf16)
    # The reference loads first: under ZeRO-3 loading it would be partitioned, and nothing gathers it.
    reference = _frozen_reference(cfg, dtype)
    with _partitioned_loading(engine_cfg):
        loaded = load_model_and_processor(cfg.model, dtype=dtype)
        policy, processor = loaded.model, loaded.processor
        if cfg.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            policy.config.use_cache = False
        # The same draws on every process and in a resumed run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            if cfg.lora:
                policy = _add_lora(cfg, policy)
            critic_body = None
            if cfg.critic == "separate":
                critic_body = load_model_and_processor(cfg.critic_model or cfg.model, dtype=dtype).model
            value_head = _value_head(cfg, critic_body if critic_body is not None else policy)
    if cfg.disable_dropout:
        for model in (policy, critic_body):
            if model is not None and disable_dropout(model):
                logger.info("dropout switched off in %s (disable_dropout)", type(model).__name__)

    total_steps = cfg.total_updates * cfg.ppo_epochs * (cfg.batch_size // cfg.minibatch_size)
    warmup = int(cfg.warmup_ratio * total_steps)
    engine = TrainEngine(
        ActorCritic(policy, value_head, critic_body),
        engine_cfg,
        lambda step: core.cosine_schedule_with_warmup(step, total_steps, warmup, cfg.min_lr_ratio),
        device="cuda" if use_cuda else "cpu",
    )
    if reference is not None:
        reference.to(engine.device)
    num_params = count_parameters(engine.module.policy) + (
        count_parameters(critic_body) if critic_body is not None else 0
    )
    return PPOModels(engine, processor, dtype, reference, lora=cfg.lora, num_params=num_params)


@contextlib.contextmanager
def _partitioned_loading(engine_cfg: EngineConfig) -> Iterator[None]:
    """Under ZeRO-3, make ``from_pretrained`` partition weights while loading, so a model
    larger than one device never exists whole anywhere."""
    if engine_cfg.backend != "zero3":
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from trainers.common.engine import deepspeed_config

    hf_config = HfDeepSpeedConfig(deepspeed_config(engine_cfg))  # transformers keeps only a weak reference
    try:
        yield
    finally:
        # Left on, every later from_pretrained in this process (an evaluation,
        # the next run) would build partitioned models that nothing gathers.
        unset_hf_deepspeed_config()
        del hf_config


def _frozen_reference(cfg: PPOConfig, dtype: torch.dtype) -> Any | None:
    """A second, frozen copy of the starting checkpoint for the KL penalty, kept whole."""
    if cfg.kl_coef <= 0 or cfg.lora:  # with LoRA the reference is the policy without adapters
        return None
    reference = load_model_and_processor(cfg.model, dtype=dtype).model
    reference.requires_grad_(False)
    reference.eval()
    return reference


def _add_lora(cfg: PPOConfig, policy: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if cfg.gradient_checkpointing:
        policy.enable_input_require_grads()
    return get_peft_model(
        policy,
        LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets),
    )


def _value_head(cfg: PPOConfig, body: Any) -> ValueHead:
    head = ValueHead.for_model_config(body.config, ValueHeadConfig(hidden=cfg.value_head_hidden))
    # The head saved beside the critic's starting checkpoint (the policy's,
    # unless critic_model is given) was trained on that model's features.
    start_head = Path(cfg.critic_model or cfg.model) / "value_head.safetensors"
    if start_head.is_file():
        head.load_state_dict(load_value_head(start_head).state_dict())
    return head
