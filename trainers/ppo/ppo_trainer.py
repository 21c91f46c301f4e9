"""Multi-turn PPO with a value head, for any Hugging Face VLM or text LM.

:meth:`PPOTrainer.train` reads top to bottom like cleanrl's ``ppo.py``:
rollout -> rewards -> advantages -> minibatch epochs -> log and checkpoint.
The models are built apart (:mod:`trainers.ppo.models`), the turns live in a
tensor buffer (:mod:`trainers.ppo.buffer`) and the math is pure tensor
functions (:mod:`trainers.ppo.core`).

Every random stream (env resets, sampling, minibatch order) is derived from
``(seed, rank, update, ...)``, so the update counter is the whole RNG and env
state: a resumed run replays exactly what an uninterrupted one would do.
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
from trainers.common.compute import TRAINING_RECORD, ComputeTracker, init_tokens_of
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.inputs import append_completions, cast_floating_inputs, encode_prompts
from trainers.common.metrics import MetricsLogger, truncate_jsonl
from trainers.common.modeling import forget_load_renames, get_tokenizer
from trainers.common.prompting import turn_prompt
from trainers.common.spans import answer_keys_for, batch_completion_token_weights
from trainers.generation import make_backend
from trainers.generation.base import SamplingParams
from trainers.ppo import core
from trainers.ppo.buffer import Prompt, RolloutBuffer
from trainers.ppo.models import build_models
from trainers.ppo.ppo_config import PPOConfig, latest_checkpoint
from trainers.ppo.value_head import save_value_head
from trainers.rewards import RewardFunction, Turn, make_reward_function

logger = logging.getLogger(__name__)


@dataclass
class RolloutStats:
    """The episodes and turns of one rollout, for the ``env/`` and ``verdicts/`` metrics."""

    returns: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    step_correct: list[bool] = field(default_factory=list)
    recognition: list[bool] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    tokens: int = 0  # prompt and answer tokens the generation processed

    def add_turn(self, info: dict[str, Any]) -> None:
        verdict = str(info.get("verdict"))
        self.step_correct.append(verdict == "correct")
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        if "recognition_correct" in info:
            self.recognition.append(bool(info["recognition_correct"]))

    def end_episode(self, episode_return: float, length: int, info: dict[str, Any]) -> None:
        self.returns.append(episode_return)
        self.successes.append(bool(info.get("success", False)))
        self.lengths.append(length)


@dataclass
class UpdateStats:
    """What the optimisation of one update measured, per micro-batch."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    grad_norms: list[float] = field(default_factory=list)
    tokens: int = 0  # tokens forwarded and backpropagated
    epochs: int = 0
    epoch_kl: list[float] = field(default_factory=list)  # approx_kl of the current epoch's micro-batches

    def add(self, step_stats: dict[str, float], grad_norm: float | None, tokens: int) -> None:
        for key, value in step_stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        if grad_norm is not None:
            self.grad_norms.append(grad_norm)
        self.tokens += tokens
        self.epoch_kl.append(step_stats["ppo/approx_kl"])

    def end_epoch(self) -> float:
        """Mean approx_kl of the epoch just run, over every process (so all stop together)."""
        self.epochs += 1
        kl = _reduce_means({"kl": (sum(self.epoch_kl), len(self.epoch_kl))})["kl"]
        self.epoch_kl = []
        return kl

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}


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
        self.rank, self.world_size = 0, 1
        if cfg.deepspeed != "none":
            from trainers.common.engine import init_distributed

            self.rank, _, self.world_size = init_distributed()
        self.is_main = self.rank == 0
        from gengym_core.registry import make

        self.envs = [make(cfg.env_id, **cfg.env_kwargs) for _ in range(cfg.num_envs)]
        self.models = build_models(cfg, init_seed=_seed(cfg.seed, 0, 0, 0, 3))
        self.engine, self.processor, self.dtype = self.models.engine, self.models.processor, self.models.dtype
        self.tokenizer = get_tokenizer(self.processor)
        self.device = self.engine.device
        synced = cfg.deepspeed == "zero3" and not cfg.gather_for_generation and self.world_size > 1
        backend_kwargs = {"synced_gpus": True} if synced and cfg.generation_backend == "hf" else {}
        self.backend = make_backend(cfg.generation_backend, self.engine.module.policy, self.processor, **backend_kwargs)
        self.sampling = SamplingParams(
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k
        )
        self.answer_keys = (cfg.answer_key,) if cfg.answer_key else answer_keys_for(cfg.env_id)
        self.compute = ComputeTracker(num_params=self.models.num_params, init_tokens=init_tokens_of(cfg.model))
        # A reward model or judge charges its own forward passes to the tracker.
        self.reward_fn = (
            reward_fn if reward_fn is not None
            else make_reward_function(cfg.reward, compute=self.compute, **cfg.reward_options())
        )
        self.metrics = MetricsLogger(self.output_dir, tensorboard=cfg.tensorboard, enabled=self.is_main)
        self.start_update = self._resume() if cfg.resume else 0
        if self.start_update == 0:
            self._start_fresh()

    # ================================================================== loop
    def train(self) -> Path:
        """Run the remaining updates; return the directory of the final policy."""
        from tqdm.auto import tqdm

        cfg = self.config
        bar = tqdm(range(self.start_update, cfg.total_updates), initial=self.start_update, total=cfg.total_updates,
                   desc="ppo", unit="update", disable=not self.is_main)
        for update in bar:
            # 1. Rollout: num_steps turns of every env, scored (old log-probs, values), and rewarded.
            started = time.perf_counter()
            buffer, episodes = self.rollout(update)
            buffer.rewards = self.score_rewards(buffer)
            rollout_s = time.perf_counter() - started

            # 2. Advantages: GAE per env row, normalised over the whole buffer.
            self.compute_advantages(buffer)

            # 3. Optimisation: ppo_epochs passes of shuffled minibatches, stopped early past target_kl.
            stats = UpdateStats()
            order_rng = torch.Generator().manual_seed(_seed(cfg.seed, self.rank, update, 0, 2))
            self.engine.train(True)
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(buffer.size, generator=order_rng).tolist()
                for start in range(0, buffer.size, cfg.minibatch_size):
                    self.train_minibatch(buffer, order[start : start + cfg.minibatch_size], stats)
                epoch_kl = stats.end_epoch()
                if cfg.target_kl is not None and epoch_kl > cfg.target_kl:
                    break
            self.engine.module.eval()
            # Backends holding their own copy of the weights (vllm) refresh it.
            self.backend.update_weights(self.engine.module.policy)
            update_s = time.perf_counter() - started - rollout_s

            # 4. Logs and checkpoints.
            metrics = self._update_metrics(buffer, episodes, stats, rollout_s, update_s)
            self.metrics.log(update + 1, metrics)
            self._log_samples(update + 1, buffer)
            bar.set_postfix(progress_postfix(metrics), refresh=False)
            if (update + 1) % cfg.save_every == 0 or update + 1 == cfg.total_updates:
                self.save_checkpoint(update + 1)
        self.metrics.close()
        return self.save_policy(self.output_dir / "final")

    # =============================================================== rollout
    def rollout(self, update: int) -> tuple[RolloutBuffer, RolloutStats]:
        """Collect ``num_envs * num_steps`` turns with old log-probs, values and bootstrap values."""
        cfg = self.config
        buffer = RolloutBuffer.empty(cfg.num_steps, cfg.num_envs, cfg.max_new_tokens, reference=cfg.kl_coef > 0)
        stats = RolloutStats()
        episodes = [0] * cfg.num_envs
        obs = [self._reset_env(i, update, 0) for i in range(cfg.num_envs)]
        ep_return, ep_len = [0.0] * cfg.num_envs, [0] * cfg.num_envs
        cut_states: dict[tuple[int, int], Prompt] = {}  # (step, env) -> the state a truncated episode was cut in
        self.engine.module.eval()
        with self.engine.gathered(cfg.gather_for_generation), self.backend.rollout_phase(), torch.no_grad():
            for t in range(cfg.num_steps):
                prompts = [turn_prompt(env, o, cfg.prompt_format) for env, o in zip(self.envs, obs, strict=True)]
                inputs = self._encode([p[0] for p in prompts], [p[1] for p in prompts])
                params = dataclasses.replace(self.sampling, seed=_seed(cfg.seed, self.rank, update, t, 1))
                gen = self.backend.generate(inputs, params)
                stats.tokens += int(inputs["attention_mask"].sum()) + gen.num_tokens
                for i, env in enumerate(self.envs):
                    next_obs, reward, terminated, truncated, info = env.step(gen.texts[i])
                    buffer.add(t, i, prompts[i], gen.token_ids[i], gen.texts[i], float(reward),
                               bool(terminated), bool(truncated), _plain_info(info))
                    stats.add_turn(info)
                    ep_return[i] += float(reward)
                    ep_len[i] += 1
                    if truncated and not terminated:
                        cut_states[t, i] = turn_prompt(env, next_obs, cfg.prompt_format)
                    if terminated or truncated:
                        stats.end_episode(ep_return[i], ep_len[i], info)
                        ep_return[i], ep_len[i] = 0.0, 0
                        episodes[i] += 1
                        next_obs = self._reset_env(i, update, episodes[i])
                    obs[i] = next_obs
            self._score(buffer)
            # Episodes still running at the end of the buffer continue from these states.
            buffer.last_values = self._values([turn_prompt(env, o, cfg.prompt_format)
                                               for env, o in zip(self.envs, obs, strict=True)])
            if cut_states:
                steps, envs = zip(*cut_states, strict=True)
                buffer.bootstrap_values[list(steps), list(envs)] = self._values(list(cut_states.values()))
        self.compute.add_buffer_tokens(stats.tokens)
        return buffer, stats

    def _score(self, buffer: RolloutBuffer) -> None:
        """Old log-probs, token weights, values (and reference log-probs) of every turn."""
        cfg = self.config
        for chunk in _chunks(list(range(buffer.size)), cfg.micro_batch_size):
            batch = buffer.select(chunk)
            inputs, mask, prompt_len = self._encode_with_completions(batch.prompts, batch.completions)
            T = mask.shape[1]
            labels = inputs["input_ids"][:, -T:]
            logits, values = self.engine.module(inputs, prompt_len, T)
            logprobs = core.token_logprobs(logits, labels, self.sampling.logprob_temperature)
            weights = batch_completion_token_weights(
                self.tokenizer, labels, mask, keys=self.answer_keys, thought_weight=cfg.thought_weight
            )
            ref = None
            if cfg.kl_coef > 0:
                ref = core.token_logprobs(
                    self.models.reference_logits(inputs, T), labels, self.sampling.logprob_temperature
                )
            self.compute.add_buffer_tokens(inputs["attention_mask"])
            buffer.store_scores(chunk, logprobs, weights, values, ref)

    def score_rewards(self, buffer: RolloutBuffer) -> torch.Tensor:
        """``[num_steps, num_envs]`` rewards from the reward function (the env's verifier by default)."""
        env_rewards = buffer.env_rewards.view(-1).tolist()
        turns = [
            Turn(env_id=self.config.env_id, messages=prompt[0], images=prompt[1], answer=text,
                 env_reward=env_reward, info=info)
            for prompt, text, env_reward, info in zip(buffer.prompts, buffer.texts, env_rewards, buffer.infos,
                                                       strict=True)
        ]
        rewards = [float(r) for r in self.reward_fn(turns)]
        if len(rewards) != len(turns):
            raise ValueError(f"the reward function returned {len(rewards)} rewards for {len(turns)} turns")
        for turn, value in zip(turns, rewards, strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(f"the reward function returned {value} for answer {turn.answer[:80]!r}")
        return torch.tensor(rewards).view_as(buffer.rewards)

    # ============================================================ advantages
    def compute_advantages(self, buffer: RolloutBuffer) -> None:
        """GAE over each env's row of turns (time last, so the transposes); sets advantages and returns."""
        cfg = self.config
        time_last = [x.T.contiguous() for x in (buffer.rewards, buffer.values, buffer.terminated, buffer.truncated,
                                                 buffer.bootstrap_values)]
        rewards, values, terminated, truncated, bootstrap = time_last
        advantages, returns = core.gae(rewards, values, terminated, truncated, buffer.last_values, bootstrap,
                                       cfg.gamma, cfg.gae_lambda)
        if cfg.normalize_advantages:
            advantages = core.normalize_advantages(advantages, all_reduce=_all_reduce())
        buffer.advantages, buffer.returns = advantages.T.contiguous(), returns.T.contiguous()

    # ========================================================== optimisation
    def train_minibatch(self, buffer: RolloutBuffer, indices: Sequence[int], stats: UpdateStats) -> None:
        """One optimiser step on the turns ``indices``, in micro-batches whose gradients accumulate."""
        cfg = self.config
        temperature = self.sampling.logprob_temperature
        for micro in _chunks(list(indices), cfg.micro_batch_size):
            batch = buffer.select(micro)
            inputs, mask, prompt_len = self._encode_with_completions(batch.prompts, batch.completions)
            T = mask.shape[1]
            logits, values = self.engine.forward(inputs, prompt_len, T)
            new_lp = core.token_logprobs(logits, inputs["input_ids"][:, -T:], temperature)
            old_lp, weights = batch.logprobs[:, :T].to(new_lp.device), batch.weights[:, :T].to(new_lp.device)
            pl = core.policy_loss(new_lp, old_lp, batch.advantages.to(new_lp.device), weights, cfg.clip_range,
                                  cfg.ratio_level)
            vl = core.value_loss(values, batch.values.to(values.device), batch.returns.to(values.device),
                                 cfg.value_clip_range)
            loss = pl.loss + cfg.value_coef * vl.loss
            step_stats = {
                "losses/policy": pl.loss.item(),
                "losses/value": vl.loss.item(),
                "ppo/clip_fraction": pl.clip_fraction.item(),
                "ppo/approx_kl": pl.approx_kl.item(),
                "ppo/value_clip_fraction": vl.clip_fraction.item(),
            }
            if cfg.entropy_coef > 0:
                entropy = core.masked_mean(core.entropy_from_logits(logits, mask, temperature), mask)
                loss = loss - cfg.entropy_coef * entropy
                step_stats["losses/entropy"] = entropy.item()
            if cfg.kl_coef > 0:
                assert batch.ref_logprobs is not None
                ref_lp = batch.ref_logprobs[:, :T].to(new_lp.device)
                kl = core.masked_mean(core.kl_penalty(new_lp, ref_lp, mask, cfg.kl_estimator), mask)
                loss = loss + cfg.kl_coef * kl
                step_stats["losses/kl"] = kl.item()
            step_stats["losses/total"] = loss.item()
            self.engine.backward(loss)
            stats.add(step_stats, self.engine.step(), int(inputs["attention_mask"].sum()))
            self.compute.add_train_tokens(inputs["attention_mask"])

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
        """The policy as a ``from_pretrained``-loadable checkpoint, with its processor, value head
        and training record.

        With LoRA the folder holds the base model with the adapter merged in
        (the adapter alone in ``directory/adapter``), so it loads like any
        checkpoint; the merge reloads the base model on the main process.
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

    def _resume(self) -> int:
        """Load the last checkpoint; return the update it was written after (0: none found)."""
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            logger.warning("resume requested but no checkpoint in %s; starting fresh", self.output_dir)
            return 0
        # check_runnable compared the launch with the checkpoint; the real world size is known only now.
        saved = json.loads((checkpoint / "engine" / "client_state.json").read_text())
        if int(saved.get("world_size", self.world_size)) != self.world_size:
            raise ConfigError(
                f"checkpoint {checkpoint} was written by {saved['world_size']} processes; resume with as many"
            )
        state = self.engine.load_state(checkpoint / "engine")
        update = int(state["update"])
        self.compute.load_state_dict(state["compute"])
        self.metrics.truncate_after(update)
        self._truncate_samples_after(update)
        logger.info("resumed from %s at update %d", checkpoint, update)
        return update

    def _start_fresh(self) -> None:
        # check_runnable refused a fresh start over an earlier run's checkpoints;
        # records of a run killed before its first checkpoint go.
        self.metrics.truncate_after(0)
        self._truncate_samples_after(0)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(json.dumps(config_to_dict(self.config), indent=2))

    def _truncate_samples_after(self, update: int) -> None:
        """Drop logged transcripts of updates a resumed run redoes (and a torn last line)."""
        if self.is_main:
            truncate_jsonl(self.output_dir / "samples.jsonl", "update", update)

    # ============================================================== helpers
    def _reset_env(self, i: int, update: int, episode: int) -> dict[str, Any]:
        obs, _ = self.envs[i].reset(seed=_seed(self.config.seed, self.rank, update, i, 1000 + episode))
        return obs

    def _encode(self, conversations: list[list[Message]], images: list[list[np.ndarray]]) -> Any:
        inputs = encode_prompts(self.processor, conversations, images if any(images) else None,
                                max_length=self.config.max_prompt_length, length_setting="max_prompt_length")
        return inputs.to(self.device)

    def _encode_with_completions(
        self, prompts: Sequence[Prompt], completions: Sequence[list[int]]
    ) -> tuple[Any, torch.Tensor, int]:
        prompt_inputs = self._encode([p[0] for p in prompts], [p[1] for p in prompts])
        prompt_len = prompt_inputs["input_ids"].shape[1]
        pad = self.tokenizer.pad_token_id
        inputs, mask = append_completions(prompt_inputs, [c or [pad] for c in completions], pad_token_id=pad)
        for j, completion in enumerate(completions):
            if not completion:  # an empty answer: score nothing, keep shapes
                mask[j] = 0
        inputs = cast_floating_inputs(inputs, self.dtype)
        return inputs, mask.to(self.device), prompt_len

    def _values(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        out = []
        for batch in _chunks(list(prompts), self.config.micro_batch_size):
            inputs = cast_floating_inputs(self._encode([p[0] for p in batch], [p[1] for p in batch]), self.dtype)
            out.append(self.engine.module.values(inputs).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def _update_metrics(
        self, buffer: RolloutBuffer, episodes: RolloutStats, stats: UpdateStats, rollout_s: float, update_s: float
    ) -> dict[str, float]:
        local = {
            "env/return": (sum(episodes.returns), len(episodes.returns)),
            "env/success_rate": (sum(episodes.successes), len(episodes.successes)),
            "env/episode_length": (sum(episodes.lengths), len(episodes.lengths)),
            "env/per_step_accuracy": (sum(episodes.step_correct), len(episodes.step_correct)),
            "env/turn_reward": (float(buffer.rewards.sum(dtype=torch.float64)), buffer.size),
            # Present on every process (count 0 where unused) so the all-reduce lines up.
            "env/recognition_accuracy": (sum(episodes.recognition), len(episodes.recognition)),
        }
        metrics = _reduce_means(local)
        if math.isnan(metrics["env/recognition_accuracy"]):
            del metrics["env/recognition_accuracy"]
        metrics.update(stats.means())
        metrics["ppo/grad_norm"] = float(np.mean(stats.grad_norms)) if stats.grad_norms else 0.0
        metrics["ppo/learning_rate"] = self.engine.lr
        metrics["ppo/epochs"] = float(stats.epochs)
        metrics["ppo/stopped_early"] = float(stats.epochs < self.config.ppo_epochs)
        metrics["ppo/explained_variance"] = float(
            core.explained_variance(buffer.values, buffer.returns, all_reduce=_all_reduce())
        )
        generated = int(buffer.masks.sum())
        metrics["perf/rollout_tokens_per_s"] = generated / max(rollout_s, 1e-9)
        metrics["perf/update_tokens_per_s"] = stats.tokens / max(update_s, 1e-9)
        metrics["perf/rollout_s"] = rollout_s
        metrics["perf/update_s"] = update_s
        metrics["perf/mean_answer_tokens"] = generated / buffer.size
        metrics.update(self.compute.metrics())
        metrics["compute/gflops"] = self.compute.gflops * self.world_size
        for verdict, n in episodes.verdicts.items():
            metrics[f"verdicts/{verdict}"] = n / buffer.size
        return metrics

    def _log_samples(self, step: int, buffer: RolloutBuffer) -> None:
        if not self.is_main or self.config.log_samples <= 0:
            return
        rewards, advantages = buffer.rewards.view(-1).tolist(), buffer.advantages.view(-1).tolist()
        with (self.output_dir / "samples.jsonl").open("a") as f:
            for k in range(min(self.config.log_samples, buffer.size)):
                messages, _ = buffer.prompts[k]
                record = {
                    "update": step,
                    "prompt": messages[-1]["content"][-1].get("text", ""),
                    "answer": buffer.texts[k],
                    "reward": rewards[k],
                    "verdict": buffer.infos[k].get("verdict"),
                    "advantage": advantages[k],
                }
                f.write(json.dumps(record) + "\n")


# ================================================================== functions
def train_ppo(config: PPOConfig, reward_fn: RewardFunction | None = None) -> Path:
    """Train with PPO; return the directory of the final policy."""
    return PPOTrainer(config, reward_fn=reward_fn).train()


def _seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (order matters)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over every process, on a device the process group takes (NCCL: the GPU)."""
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else x.device
    out = x.detach().to(device, copy=True)
    dist.all_reduce(out)
    return out.to(x.device)


def _all_reduce() -> core.AllReduce | None:
    """What :mod:`trainers.ppo.core` statistics sum over processes with; ``None`` in one process."""
    return _all_reduce_sum if _is_distributed() else None


def _reduce_means(pairs: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Means of (sum, count) pairs over every process; NaN when nothing was counted."""
    keys = sorted(pairs)
    values = torch.tensor([[float(pairs[k][0]), float(pairs[k][1])] for k in keys], dtype=torch.float64)
    if _is_distributed():
        values = _all_reduce_sum(values)
    return {k: (float(s / n) if n > 0 else float("nan")) for k, (s, n) in zip(keys, values.tolist(), strict=True)}


def progress_postfix(metrics: dict[str, float]) -> dict[str, str]:
    """The progress bar after an update: mean turn reward, and the episode return and success
    rate, or ``-`` when no episode ended in the rollout (``nan`` would read as a fault)."""

    def fmt(key: str) -> str:
        value = metrics.get(key, math.nan)
        return "-" if math.isnan(value) else f"{value:.2f}"

    return {"reward": fmt("env/turn_reward"), "ret": fmt("env/return"), "succ": fmt("env/success_rate")}
