"""Multi-turn PPO with a value head, for any Hugging Face VLM or text LM.

Read it top to bottom, like cleanrl's ``ppo.py``: :meth:`PPOTrainer.train`
runs, for every update,

1. **rollout** -- ``num_envs`` envs per process answer ``num_steps`` turns each.
   Prompts are built with the model's own chat template, answers sampled in
   one batch by a swappable generation backend, and every answer is stepped
   through its env: a wrong answer continues the episode with the verifier's
   feedback (sequential revision), success or the verify budget ends it.
   Every turn is one PPO step with its own reward.
2. **scoring** -- one teacher-forced pass over prompt + answer gives the old
   per-token log-probs and the critic's value at the last prompt token.
   Tokens before the answer key weigh 0.5, answer tokens 1 (the paper's
   thought scaling, located from decoded text, no token ids).
3. **advantages** -- GAE over the turns of each episode, bootstrapping from
   the critic when an episode is truncated but not when it terminates, then
   normalised over the buffer.
4. **optimisation** -- ``ppo_epochs`` passes of clipped surrogate + clipped
   value loss over shuffled minibatches, micro-batched with padding and
   gradient accumulation, through a :class:`~trainers.common.engine.TrainEngine`
   (DeepSpeed ZeRO-3 by default, ZeRO-2, or one plain device: same code).
5. **logging and checkpoints** -- metrics to JSONL and TensorBoard, a
   resumable checkpoint every ``save_every`` updates.

Every random stream (env resets, sampling, minibatch order) is derived from
``(seed, rank, update, ...)``, so a resumed run replays exactly what an
uninterrupted one would have done: the update counter is the whole RNG and
env state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gengym_core.chat import Message
from trainers.common.compute import (
    TRAINING_RECORD,
    ComputeTracker,
    count_parameters,
    init_tokens_of,
)
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.engine import TrainEngine
from trainers.common.inputs import append_completions, cast_floating_inputs, encode_prompts
from trainers.common.metrics import MetricsLogger, truncate_jsonl
from trainers.common.modeling import (
    eos_token_ids,
    forget_load_renames,
    get_tokenizer,
    load_model_and_processor,
)
from trainers.common.prompting import turn_prompt
from trainers.common.spans import answer_keys_for, batch_completion_token_weights
from trainers.generation import make_backend
from trainers.generation.base import SamplingParams
from trainers.ppo import core
from trainers.ppo.actor_critic import ActorCritic, disable_dropout
from trainers.ppo.ppo_config import PPOConfig, latest_checkpoint
from trainers.ppo.value_head import ValueHead, ValueHeadConfig, load_value_head, save_value_head
from trainers.rewards import RewardFunction, Turn, make_reward_function

logger = logging.getLogger(__name__)


@dataclass
class TurnRecord:
    """One answered turn in the rollout buffer."""

    env_index: int
    step: int
    messages: list[Message]
    images: list[np.ndarray]
    completion_ids: list[int]
    text: str
    env_reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    bootstrap_prompt: tuple[list[Message], list[np.ndarray]] | None = None
    # Filled in by scoring:
    old_logprobs: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    value: float = 0.0
    reward: float = 0.0
    advantage: float = 0.0
    ret: float = 0.0


@dataclass
class RolloutStats:
    """What the finished episodes of one rollout looked like."""

    returns: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    step_correct: list[bool] = field(default_factory=list)
    recognition: list[bool] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)


class PPOTrainer:
    """Trains a policy (and its critic) with PPO on a gengym env.

    Args:
        config: All settings; see :class:`~trainers.ppo.ppo_config.PPOConfig`.
        reward_fn: Scores each turn; default: the reward spec in the config
            (the env's verifier unless told otherwise).
    """

    def __init__(self, config: PPOConfig, reward_fn: RewardFunction | None = None) -> None:
        config.validate()
        config.check_runnable()  # env, checkpoints, devices, backend: all before any weights load
        self.config = cfg = config
        self.output_dir = Path(cfg.output_dir)

        # -- processes and devices
        self.rank, self.world_size = 0, 1
        if cfg.deepspeed != "none":
            from trainers.common.engine import init_distributed

            self.rank, _, self.world_size = init_distributed()
        self.is_main = self.rank == 0
        use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
        bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and use_cuda and torch.cuda.is_bf16_supported())
        self.dtype = torch.bfloat16 if bf16 else torch.float32

        # -- envs: cheap, and they tell us whether images are needed
        from gengym_core.registry import make

        self.envs = [make(cfg.env_id, **cfg.env_kwargs) for _ in range(cfg.num_envs)]

        # -- models (the frozen reference first: it must not be partitioned)
        self.reference = self._make_reference_copy()
        engine_cfg = cfg.engine_config(bf16=bf16)
        self._ds_hf_config = None
        if cfg.deepspeed == "zero3":
            # Makes from_pretrained partition weights while loading, so a model
            # larger than one device's memory never exists whole anywhere.
            from transformers.integrations import HfDeepSpeedConfig

            from trainers.common.engine import deepspeed_config

            self._ds_hf_config = HfDeepSpeedConfig(deepspeed_config(engine_cfg))
        loaded = load_model_and_processor(cfg.model, dtype=self.dtype)
        policy, self.processor = loaded.model, loaded.processor
        self.tokenizer = get_tokenizer(self.processor)
        self.eos_ids = eos_token_ids(policy, self.processor)
        if cfg.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            policy.config.use_cache = False
        # New weights (LoRA adapters, the value head) are drawn from a seeded
        # stream, identical on every process and in a resumed run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(cfg.seed, 0, 0, 0, 3))
            if cfg.lora:
                policy = self._add_lora(policy)
            critic_body = None
            if cfg.critic == "separate":
                critic_body = load_model_and_processor(cfg.critic_model or cfg.model, dtype=self.dtype).model
            if self._ds_hf_config is not None:
                # Loading is done. Leaving the global flag on would make every later
                # from_pretrained in this process (an evaluation, the next run)
                # build partitioned models that nothing gathers.
                from transformers.integrations.deepspeed import unset_hf_deepspeed_config

                unset_hf_deepspeed_config()
                self._ds_hf_config = None
            if cfg.disable_dropout:
                for model in (policy, critic_body):
                    if model is not None and disable_dropout(model):
                        logger.info("dropout switched off in %s (disable_dropout)", type(model).__name__)
            head_source = critic_body if critic_body is not None else policy
            value_head = ValueHead.for_model_config(head_source.config, ValueHeadConfig(hidden=cfg.value_head_hidden))
            # The head saved beside the critic's starting checkpoint (the policy's,
            # unless a separate critic_model is given) was trained on its features.
            start_head = Path(cfg.critic_model or cfg.model) / "value_head.safetensors"
            if start_head.is_file():
                value_head.load_state_dict(load_value_head(start_head).state_dict())
        if cfg.kl_coef > 0 and cfg.lora:
            self.reference = policy  # adapters switched off when scoring the reference
        module = ActorCritic(policy, value_head, critic_body)

        # -- engine and schedule
        updates_left = cfg.total_updates
        steps_per_update = cfg.ppo_epochs * (cfg.batch_size // cfg.minibatch_size)
        total_steps = updates_left * steps_per_update
        warmup = int(cfg.warmup_ratio * total_steps)
        device = "cuda" if use_cuda else "cpu"
        self.engine = TrainEngine(
            module,
            engine_cfg,
            lambda step: core.cosine_schedule_with_warmup(step, total_steps, warmup, cfg.min_lr_ratio),
            device=device,
        )
        self.device = self.engine.device
        if self.reference is not None and not cfg.lora:
            self.reference.to(self.device)
        synced = cfg.deepspeed == "zero3" and not cfg.gather_for_generation and self.world_size > 1
        backend_kwargs = {"synced_gpus": True} if synced and cfg.generation_backend == "hf" else {}
        self.backend = make_backend(cfg.generation_backend, self.engine.module.policy, self.processor, **backend_kwargs)
        self.answer_keys = (cfg.answer_key,) if cfg.answer_key else answer_keys_for(cfg.env_id)
        self.sampling = SamplingParams(
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k
        )

        # -- bookkeeping
        num_params = count_parameters(self.engine.module.policy) + (
            count_parameters(critic_body) if critic_body is not None else 0
        )
        self.compute = ComputeTracker(num_params=num_params, init_tokens=init_tokens_of(cfg.model))
        # A reward model or judge charges its own forward passes to the tracker.
        self.reward_fn = (
            reward_fn if reward_fn is not None
            else make_reward_function(cfg.reward, compute=self.compute, **cfg.reward_options())
        )
        self.metrics = MetricsLogger(self.output_dir, tensorboard=cfg.tensorboard, enabled=self.is_main)
        self.start_update = 0
        if cfg.resume:
            self._resume()
        if self.start_update == 0:
            # A fresh start (check_runnable refused one over an earlier run's
            # checkpoints): records of a run killed before its first checkpoint go.
            self.metrics.truncate_after(0)
            self._truncate_samples_after(0)
            if self.is_main:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                (self.output_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))

    # ================================================================== loop
    def train(self) -> Path:
        """Run the remaining updates; return the directory of the final policy."""
        from tqdm.auto import tqdm

        cfg = self.config
        bar = tqdm(
            range(self.start_update, cfg.total_updates),
            initial=self.start_update,
            total=cfg.total_updates,
            desc="ppo",
            unit="update",
            disable=not self.is_main,
        )
        for update in bar:
            t0 = time.perf_counter()
            turns, last_values, stats, rollout_tokens = self.rollout(update)
            t1 = time.perf_counter()
            self.compute_advantages(turns, last_values)
            train_stats = self.optimize(turns, update)
            # Backends holding their own copy of the weights (vllm) refresh it
            # before the next rollout; those sharing the module need nothing.
            self.backend.update_weights(self.engine.module.policy)
            t2 = time.perf_counter()
            metrics = self._update_metrics(turns, stats, train_stats, rollout_tokens, t1 - t0, t2 - t1)
            self.metrics.log(update + 1, metrics)
            self._log_samples(update + 1, turns)
            bar.set_postfix(progress_postfix(metrics), refresh=False)
            if (update + 1) % cfg.save_every == 0 or update + 1 == cfg.total_updates:
                self.save_checkpoint(update + 1)
        self.metrics.close()
        return self.save_policy(self.output_dir / "final")

    # =============================================================== rollout
    def rollout(self, update: int) -> tuple[list[TurnRecord], torch.Tensor, RolloutStats, int]:
        """Collect ``num_envs * num_steps`` turns, scored with old log-probs and values."""
        cfg = self.config
        stats = RolloutStats()
        turns: list[TurnRecord] = []
        episodes = [0] * cfg.num_envs
        obs = [self._reset_env(i, update, 0) for i in range(cfg.num_envs)]
        ep_return = [0.0] * cfg.num_envs
        ep_len = [0] * cfg.num_envs
        rollout_tokens = 0
        module = self.engine.module
        module.eval()
        with self.engine.gathered(cfg.gather_for_generation), self.backend.rollout_phase(), torch.no_grad():
            for t in range(cfg.num_steps):
                prompts = [turn_prompt(env, o, cfg.prompt_format) for env, o in zip(self.envs, obs, strict=True)]
                inputs = self._encode([p[0] for p in prompts], [p[1] for p in prompts])
                params = dataclasses.replace(self.sampling, seed=_seed(cfg.seed, self.rank, update, t, 1))
                gen = self.backend.generate(inputs, params)
                rollout_tokens += int(inputs["attention_mask"].sum()) + gen.num_tokens
                for i, env in enumerate(self.envs):
                    next_obs, reward, terminated, truncated, info = env.step(gen.texts[i])
                    record = TurnRecord(
                        env_index=i,
                        step=t,
                        messages=prompts[i][0],
                        images=prompts[i][1],
                        completion_ids=list(gen.token_ids[i]),
                        text=gen.texts[i],
                        env_reward=float(reward),
                        terminated=bool(terminated),
                        truncated=bool(truncated) and not terminated,
                        info=_plain_info(info),
                    )
                    ep_return[i] += float(reward)
                    ep_len[i] += 1
                    stats.step_correct.append(info.get("verdict") == "correct")
                    stats.verdicts[str(info.get("verdict"))] = stats.verdicts.get(str(info.get("verdict")), 0) + 1
                    if "recognition_correct" in info:
                        stats.recognition.append(bool(info["recognition_correct"]))
                    if record.truncated:
                        record.bootstrap_prompt = turn_prompt(env, next_obs, cfg.prompt_format)
                    if terminated or truncated:
                        stats.returns.append(ep_return[i])
                        stats.successes.append(bool(info.get("success", False)))
                        stats.lengths.append(ep_len[i])
                        ep_return[i], ep_len[i] = 0.0, 0
                        episodes[i] += 1
                        next_obs = self._reset_env(i, update, episodes[i])
                    obs[i] = next_obs
                    turns.append(record)
            self._score(turns)
            # Episodes still running at the end of the buffer continue from
            # these states; their returns are bootstrapped from the critic.
            pending = [turn_prompt(env, o, cfg.prompt_format) for env, o in zip(self.envs, obs, strict=True)]
            last_values = self._values(pending)
            boot = [r for r in turns if r.bootstrap_prompt is not None]
            if boot:
                for r, v in zip(boot, self._values([r.bootstrap_prompt for r in boot]).tolist(), strict=True):
                    r.info["_bootstrap_value"] = v
        self._assign_rewards(turns)
        self.compute.add_buffer_tokens(rollout_tokens)
        return turns, last_values, stats, rollout_tokens

    def _score(self, turns: Sequence[TurnRecord]) -> None:
        """Old log-probs, token weights, values (and reference log-probs) of every turn."""
        cfg = self.config
        for batch in _chunks(list(turns), cfg.micro_batch_size):
            inputs, mask, prompt_len = self._encode_with_completions(batch)
            T = mask.shape[1]
            logits, values = self.engine.module(inputs, prompt_len, T)
            logprobs = core.token_logprobs(logits, inputs["input_ids"][:, -T:], self.sampling.logprob_temperature)
            weights = batch_completion_token_weights(
                self.tokenizer,
                inputs["input_ids"][:, -T:],
                mask,
                keys=self.answer_keys,
                thought_weight=cfg.thought_weight,
            )
            ref = self._reference_logprobs(inputs, prompt_len, T) if cfg.kl_coef > 0 else None
            self.compute.add_buffer_tokens(inputs["attention_mask"])
            for j, record in enumerate(batch):
                n = len(record.completion_ids)
                record.old_logprobs = logprobs[j, :n].float().cpu()
                record.weights = weights[j, :n].float().cpu()
                record.value = float(values[j])
                if ref is not None:
                    record.ref_logprobs = ref[j, :n].float().cpu()

    def _assign_rewards(self, turns: list[TurnRecord]) -> None:
        batch = [
            Turn(
                env_id=self.config.env_id,
                messages=r.messages,
                images=r.images,
                answer=r.text,
                env_reward=r.env_reward,
                info=r.info,
            )
            for r in turns
        ]
        rewards = self.reward_fn(batch)
        if len(rewards) != len(turns):
            raise ValueError(f"the reward function returned {len(rewards)} rewards for {len(turns)} turns")
        for r, value in zip(turns, rewards, strict=True):
            if not math.isfinite(float(value)):
                raise FloatingPointError(f"the reward function returned {value} for answer {r.text[:80]!r}")
            r.reward = float(value)

    # ============================================================ advantages
    def compute_advantages(self, turns: list[TurnRecord], last_values: torch.Tensor) -> None:
        """GAE over each env's row of turns; writes ``advantage`` and ``ret``."""
        cfg = self.config
        shape = (cfg.num_envs, cfg.num_steps)
        rewards, values, term, trunc, boot = (torch.zeros(shape) for _ in range(5))
        for r in turns:
            i, t = r.env_index, r.step
            rewards[i, t], values[i, t] = r.reward, r.value
            term[i, t], trunc[i, t] = float(r.terminated), float(r.truncated)
            boot[i, t] = r.info.get("_bootstrap_value", 0.0)
        advantages, returns = core.gae(
            rewards, values, term.bool(), trunc.bool(), last_values.float().cpu(), boot, cfg.gamma, cfg.gae_lambda
        )
        if cfg.normalize_advantages:
            advantages = _global_whiten(advantages)
        for r in turns:
            r.advantage = float(advantages[r.env_index, r.step])
            r.ret = float(returns[r.env_index, r.step])

    # ========================================================== optimisation
    def optimize(self, turns: list[TurnRecord], update: int) -> dict[str, float]:
        """``ppo_epochs`` passes of shuffled minibatches; returns mean statistics."""
        cfg = self.config
        module = self.engine.module
        self.engine.train(True)
        generator = torch.Generator().manual_seed(_seed(cfg.seed, self.rank, update, 0, 2))
        sums: dict[str, float] = {}
        count = 0
        grad_norms: list[float] = []
        tokens = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(turns), generator=generator).tolist()
            for start in range(0, len(order), cfg.minibatch_size):
                minibatch = [turns[k] for k in order[start : start + cfg.minibatch_size]]
                for micro in _chunks(minibatch, cfg.micro_batch_size):
                    inputs, mask, prompt_len = self._encode_with_completions(micro)
                    T = mask.shape[1]
                    logits, values = self.engine.forward(inputs, prompt_len, T)
                    new_lp = core.token_logprobs(logits, inputs["input_ids"][:, -T:], self.sampling.logprob_temperature)
                    old_lp = _pad([r.old_logprobs for r in micro], T).to(new_lp.device)
                    weights = _pad([r.weights for r in micro], T).to(new_lp.device)
                    adv = torch.tensor([r.advantage for r in micro], device=new_lp.device)
                    pl = core.policy_loss(new_lp, old_lp, adv, weights, cfg.clip_range, cfg.ratio_level)
                    vl = core.value_loss(
                        values,
                        torch.tensor([r.value for r in micro], device=values.device),
                        torch.tensor([r.ret for r in micro], device=values.device),
                        cfg.value_clip_range,
                    )
                    loss = pl.loss + cfg.value_coef * vl.loss
                    step_stats = {
                        "losses/policy": pl.loss.item(),
                        "losses/value": vl.loss.item(),
                        "ppo/clip_fraction": pl.clip_fraction.item(),
                        "ppo/approx_kl": pl.approx_kl.item(),
                        "ppo/value_clip_fraction": vl.clip_fraction.item(),
                    }
                    if cfg.entropy_coef > 0:
                        entropy = core.masked_mean(
                            core.entropy_from_logits(logits, mask, self.sampling.logprob_temperature), mask
                        )
                        loss = loss - cfg.entropy_coef * entropy
                        step_stats["losses/entropy"] = entropy.item()
                    if cfg.kl_coef > 0:
                        ref_lp = _pad([r.ref_logprobs for r in micro], T).to(new_lp.device)
                        kl = core.masked_mean(core.kl_penalty(new_lp, ref_lp, mask, cfg.kl_estimator), mask)
                        loss = loss + cfg.kl_coef * kl
                        step_stats["losses/kl"] = kl.item()
                    step_stats["losses/total"] = loss.item()
                    self.engine.backward(loss)
                    norm = self.engine.step()
                    if norm is not None:
                        grad_norms.append(norm)
                    tokens += int(inputs["attention_mask"].sum())
                    self.compute.add_train_tokens(inputs["attention_mask"])
                    for k, v in step_stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
        module.eval()
        out = {k: v / max(1, count) for k, v in sums.items()}
        out["ppo/grad_norm"] = float(np.mean(grad_norms)) if grad_norms else 0.0
        out["ppo/learning_rate"] = self.engine.lr
        out["_update_tokens"] = float(tokens)
        return out

    # ========================================================= checkpoints
    def save_checkpoint(self, update: int) -> Path:
        """A resumable checkpoint after ``update`` updates; old ones are pruned."""
        directory = self.output_dir / "checkpoints" / f"update-{update:05d}"
        tmp = directory.with_name(directory.name + ".tmp")
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        state = {
            "update": update,
            "optimizer_steps": self.engine.optimizer_steps,
            "compute": self.compute.state_dict(),
            "world_size": self.world_size,
            "deepspeed": self.config.deepspeed,
        }
        self.engine.save_state(tmp / "engine", state)
        self.save_policy(tmp / "policy")
        _barrier()
        if self.is_main:
            # Rename last: a checkpoint directory either is complete or does not exist.
            if directory.exists():
                shutil.rmtree(directory)
            tmp.rename(directory)
            ckpts = sorted(p for p in directory.parent.glob("update-*") if not p.name.endswith(".tmp"))
            for old in ckpts[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        _barrier()
        return directory

    def save_policy(self, directory: Path) -> Path:
        """The policy in Hugging Face format (``from_pretrained`` loads it), its
        processor, the value head, and a record of the training compute.

        With LoRA the folder gets the base model with the adapter merged in
        (the adapter alone in ``directory/adapter``), so it loads like any
        checkpoint (``gengym eval``, the experiment runner, another PPO run);
        the merge reloads the base model on the main process.
        """
        module = self.engine.module
        if self.engine.is_zero3:
            forget_load_renames(module.policy)
            if module.critic_body is not None:
                forget_load_renames(module.critic_body)
        with self.engine.gathered(True):
            if self.is_main:
                directory.mkdir(parents=True, exist_ok=True)
                module.policy.save_pretrained(directory, safe_serialization=True)
                self.processor.save_pretrained(directory)
                if module.critic_body is None:
                    save_value_head(module.value_head, directory / "value_head.safetensors")
                else:
                    # A separate critic is a checkpoint of its own: critic_model of a later run.
                    module.critic_body.save_pretrained(directory / "critic", safe_serialization=True)
                    self.processor.save_pretrained(directory / "critic")
                    save_value_head(module.value_head, directory / "critic" / "value_head.safetensors")
                record = {
                    "method": "ppo",
                    "env_id": self.config.env_id,
                    "base_model": self.config.model,
                    "num_params": self.compute.num_params,
                    "init_tokens": self.compute.init_tokens,
                    "train_tokens": self.compute.train_tokens,
                    "buffer_tokens": self.compute.buffer_tokens,
                    "gflops": self.compute.gflops,
                }
                (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
        if self.config.lora and self.is_main:
            from trainers.common.hf_trainer_support import merge_lora

            merge_lora(directory, base_model=self.config.model, trust_remote_code=False, dtype=self.dtype)
        _barrier()
        return directory

    def _resume(self) -> None:
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            logger.warning("resume requested but no checkpoint in %s; starting fresh", self.output_dir)
            return
        # check_runnable compared the launch with the checkpoint; the real world size is known only now.
        saved = json.loads((checkpoint / "engine" / "client_state.json").read_text())
        if int(saved.get("world_size", self.world_size)) != self.world_size:
            raise ConfigError(
                f"checkpoint {checkpoint} was written by {saved['world_size']} processes; resume with as many"
            )
        state = self.engine.load_state(checkpoint / "engine")
        self.start_update = int(state["update"])
        self.compute.load_state_dict(state["compute"])
        self.metrics.truncate_after(self.start_update)
        self._truncate_samples_after(self.start_update)
        logger.info("resumed from %s at update %d", checkpoint, self.start_update)

    def _truncate_samples_after(self, update: int) -> None:
        """Drop logged transcripts of updates a resumed run redoes (and a torn last line)."""
        if self.is_main:
            truncate_jsonl(self.output_dir / "samples.jsonl", "update", update)

    # ============================================================== helpers
    def _add_lora(self, policy: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        cfg = self.config
        targets: str | list[str] = cfg.lora_target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        if cfg.gradient_checkpointing:
            policy.enable_input_require_grads()
        return get_peft_model(
            policy,
            LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets),
        )

    def _make_reference_copy(self) -> Any:
        """The frozen reference for the KL penalty, when it needs its own copy.

        With LoRA the reference is the policy with its adapters switched off
        (no extra memory, set up later); otherwise a second, frozen copy of the
        starting checkpoint, kept whole on the training device (not sharded).
        """
        if self.config.kl_coef <= 0 or self.config.lora:
            return None
        reference = load_model_and_processor(self.config.model, dtype=self.dtype).model
        reference.requires_grad_(False)
        reference.eval()
        return reference

    def _reference_logprobs(self, inputs: dict[str, Any], prompt_len: int, T: int) -> torch.Tensor:
        kwargs = dict(use_cache=False, logits_to_keep=T + 1)
        if self.config.lora:
            with self.engine.module.policy.disable_adapter():
                logits = self.engine.module.policy(**inputs, **kwargs).logits[:, :-1]
        else:
            logits = self.reference(**inputs, **kwargs).logits[:, :-1]
        return core.token_logprobs(logits, inputs["input_ids"][:, -T:], self.sampling.logprob_temperature)

    def _reset_env(self, i: int, update: int, episode: int) -> dict[str, Any]:
        obs, _ = self.envs[i].reset(seed=_seed(self.config.seed, self.rank, update, i, 1000 + episode))
        return obs

    def _encode(self, conversations: list[list[Message]], images: list[list[np.ndarray]]) -> Any:
        inputs = encode_prompts(self.processor, conversations, images if any(images) else None,
                                max_length=self.config.max_prompt_length, length_setting="max_prompt_length")
        return inputs.to(self.device)

    def _encode_with_completions(self, batch: Sequence[TurnRecord]) -> tuple[Any, torch.Tensor, int]:
        prompt_inputs = self._encode([r.messages for r in batch], [r.images for r in batch])
        prompt_len = prompt_inputs["input_ids"].shape[1]
        inputs, mask = append_completions(
            prompt_inputs, [r.completion_ids or [self.tokenizer.pad_token_id] for r in batch], pad_token_id=self.tokenizer.pad_token_id
        )
        for j, r in enumerate(batch):
            if not r.completion_ids:  # an empty answer: score nothing, keep shapes
                mask[j] = 0
        inputs = cast_floating_inputs(inputs, self.dtype)
        return inputs, mask.to(self.device), prompt_len

    def _values(self, prompts: Sequence[tuple[list[Message], list[np.ndarray]]]) -> torch.Tensor:
        out = []
        for batch in _chunks(list(prompts), self.config.micro_batch_size):
            inputs = cast_floating_inputs(self._encode([p[0] for p in batch], [p[1] for p in batch]), self.dtype)
            out.append(self.engine.module.values(inputs).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def _update_metrics(
        self,
        turns: list[TurnRecord],
        stats: RolloutStats,
        train: dict[str, float],
        rollout_tokens: int,
        rollout_s: float,
        update_s: float,
    ) -> dict[str, float]:
        local = {
            "env/return": (sum(stats.returns), len(stats.returns)),
            "env/success_rate": (sum(stats.successes), len(stats.successes)),
            "env/episode_length": (sum(stats.lengths), len(stats.lengths)),
            "env/per_step_accuracy": (sum(stats.step_correct), len(stats.step_correct)),
            "env/turn_reward": (sum(r.reward for r in turns), len(turns)),
        }
        # Present on every process (count 0 where unused) so the all-reduce lines up.
        local["env/recognition_accuracy"] = (sum(stats.recognition), len(stats.recognition))
        metrics = _reduce_means(local)
        if math.isnan(metrics["env/recognition_accuracy"]):
            del metrics["env/recognition_accuracy"]
        metrics.update({k: v for k, v in train.items() if not k.startswith("_")})
        generated = sum(len(r.completion_ids) for r in turns)
        metrics["perf/rollout_tokens_per_s"] = generated / max(rollout_s, 1e-9)
        metrics["perf/update_tokens_per_s"] = train["_update_tokens"] / max(update_s, 1e-9)
        metrics["perf/rollout_s"] = rollout_s
        metrics["perf/update_s"] = update_s
        metrics["perf/mean_answer_tokens"] = generated / max(1, len(turns))
        metrics.update(self.compute.metrics())
        metrics["compute/gflops"] = self.compute.gflops * self.world_size
        for verdict, n in stats.verdicts.items():
            metrics[f"verdicts/{verdict}"] = n / max(1, len(turns))
        return metrics

    def _log_samples(self, step: int, turns: list[TurnRecord]) -> None:
        if not self.is_main or self.config.log_samples <= 0:
            return
        with (self.output_dir / "samples.jsonl").open("a") as f:
            for r in turns[: self.config.log_samples]:
                prompt = r.messages[-1]["content"][-1].get("text", "")
                f.write(
                    json.dumps(
                        {
                            "update": step,
                            "prompt": prompt,
                            "answer": r.text,
                            "reward": r.reward,
                            "verdict": r.info.get("verdict"),
                            "advantage": r.advantage,
                        }
                    )
                    + "\n"
                )


# ================================================================== functions
def train_ppo(config: PPOConfig, reward_fn: RewardFunction | None = None) -> Path:
    """Train with PPO; return the directory of the final policy.

    The output folder is locked for the run: a second run into it stops
    with a message naming this one.
    """
    from gengym_core.run_safety import output_lock

    with output_lock(config.output_dir):
        return PPOTrainer(config, reward_fn=reward_fn).train()


def _seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (order matters)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pad(rows: Sequence[torch.Tensor | None], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for j, row in enumerate(rows):
        if row is not None and len(row):
            out[j, : len(row)] = row[:width]
    return out


def _plain_info(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of an env info dict."""
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, np.generic):
            out[k] = v.item()
    return out


def _is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _barrier() -> None:
    if _is_distributed():
        import torch.distributed as dist

        dist.barrier()


def _global_whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whiten with the mean and variance of the whole buffer across processes."""
    if not _is_distributed():
        return core.normalize_advantages(x, eps=eps)
    import torch.distributed as dist

    stats = torch.tensor([x.sum().item(), (x * x).sum().item(), float(x.numel())], dtype=torch.float64)
    dist.all_reduce(stats)
    mean = stats[0] / stats[2]
    var = stats[1] / stats[2] - mean * mean
    return ((x - mean) / torch.sqrt(var.clamp_min(0) + eps)).float()


def _reduce_means(pairs: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Means of (sum, count) pairs over every process; NaN when nothing was counted."""
    keys = sorted(pairs)
    values = torch.tensor([[float(pairs[k][0]), float(pairs[k][1])] for k in keys], dtype=torch.float64)
    if _is_distributed():
        import torch.distributed as dist

        dist.all_reduce(values)
    return {k: (float(s / n) if n > 0 else float("nan")) for k, (s, n) in zip(keys, values.tolist(), strict=True)}


def progress_postfix(metrics: dict[str, float]) -> dict[str, str]:
    """What the progress bar shows after an update: the mean turn reward, and
    the episode return and success rate when an episode ended in the rollout
    (``-`` otherwise: with long episodes and few steps per rollout, most
    rollouts end none, and ``nan`` would read as a fault)."""

    def fmt(key: str) -> str:
        value = metrics.get(key, math.nan)
        return "-" if math.isnan(value) else f"{value:.2f}"

    return {"reward": fmt("env/turn_reward"), "ret": fmt("env/return"), "succ": fmt("env/success_rate")}
