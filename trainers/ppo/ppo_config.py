"""Settings of the multi-turn PPO trainer.

Defaults follow the paper's PPO setup (REFERENCE section 3): clip 0.1 on the
policy ratio and the value, 4 epochs, GAE with gamma 0.9 and lambda 0.95,
Adam with lr 1e-6 and eps 1e-7, max grad norm 0.01, 256 env steps per process
per update, temperature 0.2, 512 new tokens, thought tokens weighted 0.5.
Every field carries its help text; :meth:`PPOConfig.validate` runs before any
model is loaded, and says what to change.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from gengym_core.protocol import MAX_REWARD_MAGNITUDE, is_reward_value
from trainers.common.config import names_local_folder, raise_config_errors
from trainers.common.engine_config import EngineConfig
from trainers.common.prompting import DEFAULT_PROMPT_FORMAT
from trainers.common.train_settings import offload_errors
from trainers.generation import BackendName

#: Settings a resumed PPO run may change: its length, how it saves and logs, how and where it samples.
RESUMABLE_SETTINGS = frozenset(
    {
        "output_dir",
        "resume",
        "total_updates",
        "save_every",
        "keep_checkpoints",
        "tensorboard",
        "log_samples",
        "device",
        "generation_backend",
        "gather_for_generation",
        "reward_device",
        "reward_batch_size",
    }
)


@dataclass
class PPOConfig:
    """Everything the PPO loop needs, grouped like cleanrl's ``Args``."""

    # ---------------------------------------------------------------- run
    env_id: str = field(default="GeneralPoints-L-v0", metadata={"help": "gengym env id to train on."})
    env_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Extra gym.make keyword arguments (rule/visual variants)."}
    )
    model: str = field(default="", metadata={"help": "Policy checkpoint: a local path or a hub id, or a shipped model (tiny:gp-l)."})
    output_dir: str = field(default="runs/ppo", metadata={"help": "Where checkpoints and logs go."})
    seed: int = field(default=0, metadata={"help": "Seed of envs, sampling and initialisation."})
    total_updates: int = field(default=10, metadata={"help": "PPO updates (rollout + optimisation) to run."})

    # ------------------------------------------------------------ rollout
    num_envs: int = field(default=4, metadata={"help": "Envs per process, stepped as one generation batch."})
    num_steps: int = field(
        default=64,
        metadata={"help": "Env steps per env per update (paper: num_envs * num_steps = 256 per process)."},
    )
    prompt_format: Literal["observation", "chat"] = field(
        default=DEFAULT_PROMPT_FORMAT,
        metadata={
            "help": "chat: the env's multi-turn conversation, every earlier answer and its feedback (the paper's "
            "way); observation: the env observation as one user message (the last answer and feedback inside)."
        },
    )
    generation_backend: BackendName = field(
        default="hf",
        metadata={
            "help": "How to sample rollouts: hf (model.generate), static (own decode loop, CUDA "
            "graphs on GPU) or vllm (see docs/generation.md)."
        },
    )
    gather_for_generation: bool = field(
        default=True,
        metadata={
            "help": "Gather ZeRO-3 weights once per rollout phase (fast; needs one full copy per process). "
            "Turn off when the model does not fit unsharded: each layer is then gathered per forward."
        },
    )
    temperature: float = field(default=0.2, metadata={"help": "Sampling temperature of rollouts."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass of rollouts."})
    top_k: int = field(default=0, metadata={"help": "Top-k of rollouts (0 disables)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Most tokens per answer."})
    max_prompt_length: int = field(
        default=4096,
        metadata={"help": "Longest prompt (with image tokens); longer prompts stop the run with a clear error."},
    )

    # -------------------------------------------------------------- rewards
    reward: str = field(
        default="env",
        metadata={"help": "Reward source: env (the verifier), or reward-model:PATH, judge:PATH."},
    )
    reward_weights: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "help": "Mix a reward-model or judge score with the verifier's reward, e.g. {judge: 1.0, env: 0.5} "
            "(in YAML); empty = the reward source alone."
        },
    )
    reward_device: str = field(
        default="auto",
        metadata={"help": "Where a reward model or judge runs: auto (the policy's device), cpu, cuda or cuda:N."},
    )
    reward_batch_size: int = field(default=8, metadata={"help": "Turns scored per reward-model or judge batch."})
    reward_max_length: int = field(
        default=8192, metadata={"help": "Longest conversation a reward model or judge reads (tokens; never truncated)."}
    )
    judge_max_new_tokens: int = field(default=32, metadata={"help": "Longest reply of the judge (judge:PATH)."})
    judge_default_reward: float = field(
        default=0.0, metadata={"help": "Reward of a turn whose judge reply holds no readable 0-10 score (logged)."}
    )
    judge_rubric_file: str = field(
        default="", metadata={"help": "Text file replacing the judge's built-in instruction and criteria."}
    )

    # ------------------------------------------------------------ PPO update
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout buffer."})
    minibatch_size: int = field(
        default=8, metadata={"help": "Turns per optimiser step (per process); micro-batched below."}
    )
    micro_batch_size: int = field(
        default=2, metadata={"help": "Turns per forward/backward; minibatch_size must be a multiple."}
    )
    clip_range: float = field(default=0.1, metadata={"help": "PPO ratio clip (paper: 0.1)."})
    value_clip_range: float = field(default=0.1, metadata={"help": "Value-prediction clip (paper: 0.1)."})
    value_coef: float = field(default=0.5, metadata={"help": "Weight of the value loss."})
    gamma: float = field(default=0.9, metadata={"help": "Discount over the turns of an episode."})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda."})
    normalize_advantages: bool = field(default=True, metadata={"help": "Whiten advantages per buffer."})
    thought_weight: float = field(
        default=0.5, metadata={"help": "Log-prob weight of tokens before the answer key (paper: 0.5)."}
    )
    answer_key: str = field(
        default="",
        metadata={"help": "JSON key where the answer part starts; empty = the env family's default."},
    )
    ratio_level: Literal["sequence", "token"] = field(
        default="sequence",
        metadata={"help": "sequence: one ratio per answer from the weighted log-prob sum (paper); token: per token."},
    )
    kl_coef: float = field(
        default=0.0, metadata={"help": "KL penalty to a frozen reference policy (0 = off, as in the paper)."}
    )
    kl_estimator: Literal["k1", "k2", "k3"] = field(default="k3", metadata={"help": "KL estimator."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus (0 = off, as in the paper)."})
    target_kl: float | None = field(
        default=None,
        metadata={
            "help": "Stop an update's epochs early once an epoch's mean ppo/approx_kl exceeds this "
            "(cleanrl's target_kl); unset = always run ppo_epochs (the paper)."
        },
    )

    # --------------------------------------------------------- optimisation
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate (paper: 1e-6)."})
    adam_eps: float = field(default=1e-7, metadata={"help": "Adam epsilon (paper: 1e-7)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=0.01, metadata={"help": "Gradient clip norm (paper: 0.01)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of optimiser steps spent warming up."})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "LR at the end of the cosine, as a share of the peak."})

    # -------------------------------------------------------------- model
    critic: Literal["head", "separate"] = field(
        default="head",
        metadata={"help": "head: value MLP on the policy's last prompt hidden state; separate: its own model."},
    )
    critic_model: str = field(
        default="",
        metadata={
            "help": "Checkpoint of the separate critic (default: the policy checkpoint); an earlier run's "
            "final/critic folder continues its critic and value head."
        },
    )
    value_head_hidden: int = field(default=1024, metadata={"help": "Hidden width of the value MLP."})
    dtype: Literal["auto", "bfloat16", "float32"] = field(
        default="auto", metadata={"help": "Weights dtype: auto = bfloat16 on GPUs that support it, else float32."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})
    disable_dropout: bool = field(
        default=True,
        metadata={
            "help": "Zero every dropout of the policy and critic (LoRA's included), so the update's log-probs come "
            "from the function that scored the rollout and the first ratio is exactly 1."
        },
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "Modules to adapt (peft syntax), e.g. all-linear or q_proj,v_proj."}
    )

    # ------------------------------------------------------------- engine
    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="zero3", metadata={"help": "zero3 (default), zero2, or none for a single plain device."}
    )
    offload_optimizer: bool = field(default=False, metadata={"help": "ZeRO: optimizer states in CPU memory."})
    offload_params: bool = field(default=False, metadata={"help": "ZeRO-3: parameters in CPU memory."})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "Device for deepspeed=none (DeepSpeed picks its own)."}
    )

    # --------------------------------------------------------- operations
    save_every: int = field(default=1, metadata={"help": "Save a resumable checkpoint every K updates."})
    keep_checkpoints: int = field(default=2, metadata={"help": "Most recent checkpoints kept on disk."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})
    tensorboard: bool = field(default=True, metadata={"help": "Also write TensorBoard event files."})
    log_samples: int = field(default=2, metadata={"help": "Transcripts of this many turns logged per update."})

    def __post_init__(self) -> None:
        from trainers.models import resolve_model_spec

        # A shipped model (tiny:gp-l) is its folder inside the package from here on.
        self.model = resolve_model_spec(self.model)
        self.critic_model = resolve_model_spec(self.critic_model)
        self.validate()

    def validate(self) -> None:
        """Check the settings; raise ``ValueError`` saying what to change."""
        errors = []
        not_finite = [
            f.name for f in fields(self) if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))
        ]
        if not_finite:
            errors.append(f"{', '.join(not_finite)} must be finite (not nan or inf)")
        if self.seed < 0:
            errors.append(f"seed must be >= 0, got {self.seed}")
        if self.total_updates < 1:
            errors.append("total_updates must be at least 1")
        if self.num_envs < 1 or self.num_steps < 1:
            errors.append("num_envs and num_steps must be at least 1")
        if self.micro_batch_size < 1 or self.minibatch_size < 1:
            errors.append("minibatch_size and micro_batch_size must be at least 1")
        elif self.minibatch_size % self.micro_batch_size:
            errors.append(
                f"minibatch_size ({self.minibatch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )
        elif self.batch_size % self.minibatch_size:
            errors.append(
                f"num_envs * num_steps ({self.batch_size}) must be a multiple of minibatch_size ({self.minibatch_size})"
            )
        if self.ppo_epochs < 1:
            errors.append("ppo_epochs must be at least 1")
        if self.target_kl is not None and not self.target_kl > 0:
            errors.append(f"target_kl must be a positive number (or unset: no early stop), got {self.target_kl}")
        if not 0 < self.clip_range < 1 or not self.value_clip_range > 0:
            errors.append("clip_range must be in (0, 1) and value_clip_range positive")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            errors.append("gamma and gae_lambda must be in [0, 1]")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            errors.append("temperature must be >= 0, top_p in (0, 1], top_k >= 0")
        if self.max_new_tokens < 1 or self.max_prompt_length < 1:
            errors.append("max_new_tokens and max_prompt_length must be positive")
        if not self.learning_rate > 0 or not self.max_grad_norm > 0 or not self.adam_eps > 0:
            errors.append("learning_rate, adam_eps and max_grad_norm must be positive")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.min_lr_ratio <= 1:
            errors.append("warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.kl_coef < 0 or self.entropy_coef < 0 or self.value_coef < 0:
            errors.append("kl_coef, entropy_coef and value_coef must be >= 0")
        if not self.thought_weight >= 0:
            errors.append("thought_weight must be >= 0")
        if self.save_every < 1 or self.keep_checkpoints < 1:
            errors.append("save_every and keep_checkpoints must be at least 1")
        errors += offload_errors(
            self.deepspeed, offload_params=self.offload_params, offload_optimizer=self.offload_optimizer
        )
        if self.critic == "head" and self.critic_model:
            errors.append("critic_model is only used with critic=separate")
        if self.value_head_hidden < 0:
            errors.append("value_head_hidden must be >= 0 (0 = a linear head)")
        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1):
            errors.append("LoRA needs lora_r >= 1, lora_alpha >= 1 and lora_dropout in [0, 1)")
        if self.lora and not self.lora_target_modules.strip(" ,"):
            errors.append("lora_target_modules must name modules (e.g. all-linear or q_proj,v_proj)")
        from trainers.generation import available_backends
        from trainers.rewards import validate_reward_spec, validate_reward_weights

        if self.generation_backend not in available_backends():
            errors.append(
                f"generation_backend {self.generation_backend!r} is unknown; choose one of {available_backends()}"
            )
        try:
            validate_reward_spec(self.reward)
            validate_reward_weights(self.reward, self.reward_weights)
        except ValueError as err:
            errors.append(str(err))
        if self.reward_batch_size < 1 or self.reward_max_length < 1 or self.judge_max_new_tokens < 1:
            errors.append("reward_batch_size, reward_max_length and judge_max_new_tokens must be at least 1")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.reward_device):
            errors.append(f"reward_device must be auto, cpu, cuda or cuda:N, got {self.reward_device!r}")
        if not is_reward_value(self.judge_default_reward):
            errors.append(f"judge_default_reward must be a finite number, at most {MAX_REWARD_MAGNITUDE:g} in size")
        if self.judge_rubric_file and not Path(self.judge_rubric_file).is_file():
            errors.append(f"judge_rubric_file {self.judge_rubric_file!r} is not a file")
        raise_config_errors("invalid PPO settings", errors, ValueError)

    def check_runnable(self) -> None:
        """Check, before any weights load, that this run can start; raise
        :class:`~trainers.common.config.ConfigError` saying what to change.

        Reads only small files: the env (made once), the model's (and a
        separate critic's) config, and what is installed.
        """
        errors = []
        if not self.model:
            errors.append("give the policy checkpoint with --model PATH (or model: in the config)")
        from trainers.eval.evaluate import env_shows_images

        env_has_images = None
        try:
            env_has_images = env_shows_images(self.env_id, self.env_kwargs)
        except ValueError as err:
            errors.append(f"cannot make env {self.env_id!r} with env_kwargs {self.env_kwargs}: {err}")
        checkpoints = [("model", self.model)] if self.model else []
        if self.critic == "separate" and self.critic_model:
            checkpoints.append(("critic_model", self.critic_model))
        for setting, path in checkpoints:
            is_vision, problem = _model_kind(path)
            if problem:
                errors.append(f"{setting}: {problem}")
            elif setting == "model" and self.lora:
                errors += _lora_target_errors(path, self.lora_target_modules)
            elif setting == "model" and env_has_images and not is_vision:
                errors.append(
                    f"{self.env_id} shows images but {path!r} is a text-only model; "
                    "use the env's text (-L-) variant or a vision-language model"
                )
        from trainers.rewards import parse_reward_spec, reward_source_sees_images_problem

        reward_kind, reward_arg = parse_reward_spec(self.reward)
        # A judge may be a hub id: like the policy's, its config must be
        # readable now (cached, or on the hub), not after the policy loads.
        if reward_kind == "judge" and (judge_problem := _model_kind(str(reward_arg))[1]):
            errors.append(f"reward judge: {judge_problem}")
        elif problem := reward_source_sees_images_problem(self.reward, bool(env_has_images)):
            errors.append(problem)
        errors += self._starting_value_head_errors()
        errors += self._resume_errors()
        if self.deepspeed == "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            errors.append(
                f"deepspeed none trains in one process, but a launcher started {os.environ['WORLD_SIZE']}; "
                "use deepspeed zero3 or zero2 with several processes"
            )
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                errors.append("device=cuda but no CUDA device is visible; use device auto or cpu")
        if self.generation_backend == "vllm":
            from trainers.generation.vllm_backend import vllm_available

            if not vllm_available():
                errors.append(
                    "generation_backend vllm needs vLLM (`pip install vllm` on a CUDA machine); "
                    "or choose generation_backend static or hf"
                )
            if env_has_images:
                errors.append(
                    f"generation_backend vllm takes text prompts only and {self.env_id} shows images; "
                    "use generation_backend static or hf"
                )
            if self.lora:
                errors.append(
                    "generation_backend vllm copies full weights into its engine and cannot take LoRA "
                    "adapters; use generation_backend static or hf with lora"
                )
            if self.deepspeed == "zero3" and not self.gather_for_generation:
                errors.append(
                    "generation_backend vllm copies the gathered weights once per rollout phase; "
                    "set gather_for_generation true, or use generation_backend static or hf"
                )
        raise_config_errors("cannot start PPO", errors)

    def _starting_value_head_errors(self) -> list[str]:
        """A value head saved beside the critic's starting checkpoint is trained on: it must fit the settings."""
        start = self.critic_model or self.model
        head_file = Path(start) / "value_head.safetensors" if start else None
        if head_file is None or not head_file.is_file():
            return []
        from trainers.ppo.value_head import read_value_head_config

        try:
            _, head = read_value_head_config(head_file)
        except ValueError as err:
            return [f"the starting value head cannot be read ({err}); remove {head_file} to start a fresh one"]
        if head.hidden != self.value_head_hidden:
            return [
                f"the value head saved with {start!r} is {head.hidden} wide, but value_head_hidden is "
                f"{self.value_head_hidden}: set value_head_hidden {head.hidden} to go on training it"
            ]
        return []

    def _resume_errors(self) -> list[str]:
        """A resumed run must be launched like the run that wrote its last checkpoint,
        with the settings it began with (bar :data:`RESUMABLE_SETTINGS`); a fresh one
        must not start over an earlier run's checkpoints (a later resume would pick
        theirs)."""
        from gengym_core.run_safety import (
            changed_settings,
            changed_settings_message,
            earlier_run_message,
        )
        from trainers.common.config import config_to_dict

        checkpoint = latest_checkpoint(Path(self.output_dir))
        if checkpoint is None:
            return []
        if not self.resume:
            return [earlier_run_message(self.output_dir, f"checkpoints/{checkpoint.name}", overwrite=False)]
        try:
            saved = json.loads((checkpoint / "engine" / "client_state.json").read_text())
        except (OSError, ValueError) as err:
            return [f"cannot resume from {checkpoint}: {err}; remove it to resume from the one before"]
        by_deepspeed = (checkpoint / "engine" / "engine").is_dir()
        engine = saved.get("deepspeed", "zero2 or zero3" if by_deepspeed else "none")
        if by_deepspeed != (self.deepspeed != "none") or (engine in ("zero2", "zero3") and engine != self.deepspeed):
            return [f"{checkpoint} was written with deepspeed {engine}; resume with the same deepspeed setting"]
        processes = int(os.environ.get("WORLD_SIZE", "1")) if self.deepspeed != "none" else 1
        if int(saved.get("world_size", processes)) != processes:
            return [f"{checkpoint} was written by {saved['world_size']} processes; resume with as many"]
        saved_file = Path(self.output_dir) / "config.json"
        try:
            saved = json.loads(saved_file.read_text())
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        now = config_to_dict(self)
        changed = changed_settings(now, saved, free=RESUMABLE_SETTINGS)
        if changed:
            return [changed_settings_message(self.output_dir, saved_file, saved, now, changed, overwrite=False)]
        return []

    def reward_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`trainers.rewards.make_reward_function` for :attr:`reward`.

        ``reward_device: auto`` follows the policy: the CPU when the policy
        is told to run there, else the process's GPU when there is one.
        """
        kind = self.reward.strip().partition(":")[0]
        if kind == "env":
            return {}
        options: dict[str, Any] = {
            "weights": dict(self.reward_weights),
            "device": "cpu" if self.reward_device == "auto" and self.device == "cpu" else self.reward_device,
            "dtype": self.dtype,
            "batch_size": self.reward_batch_size,
            "max_length": self.reward_max_length,
        }
        if kind == "judge":
            options.update(
                max_new_tokens=self.judge_max_new_tokens,
                default_reward=self.judge_default_reward,
                rubric_file=self.judge_rubric_file,
            )
        return options

    @property
    def batch_size(self) -> int:
        """Turns collected per process per update."""
        return self.num_envs * self.num_steps

    def engine_config(self, bf16: bool) -> EngineConfig:
        return EngineConfig(
            backend=self.deepspeed,
            learning_rate=self.learning_rate,
            adam_eps=self.adam_eps,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            gradient_accumulation_steps=self.minibatch_size // self.micro_batch_size,
            micro_batch_size=self.micro_batch_size,
            bf16=bf16,
            offload_optimizer=self.offload_optimizer,
            offload_params=self.offload_params,
        )


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete ``checkpoints/update-NNNNN`` folder of a run, or ``None``."""
    checkpoints = sorted(
        p for p in (Path(output_dir) / "checkpoints").glob("update-*") if p.is_dir() and not p.name.endswith(".tmp")
    )
    return checkpoints[-1] if checkpoints else None


def _model_kind(path: str) -> tuple[bool | None, str]:
    """``(is a vision-language model, problem)`` from a checkpoint's config alone."""
    from trainers.common.config import ConfigError
    from trainers.common.modeling import is_vision_config, read_model_config

    if names_local_folder(path) and not Path(path).expanduser().is_dir():
        return None, f"{path!r} is not a folder (give a local checkpoint folder or a hub id)"
    try:
        model_config = read_model_config(path)
    except ConfigError as err:
        return None, str(err)
    kind = is_vision_config(model_config)
    if kind is None:
        return None, (
            f"{path!r} ({type(model_config).__name__}) is neither a causal LM nor an image-text-to-text model "
            "that the Auto classes can load"
        )
    return kind, ""


def _lora_target_errors(path: str, targets: str) -> list[str]:
    """LoRA target names that match no module of the model, found on an empty (meta) copy.

    peft matches a name against whole module names and their last parts; no
    weights are read. When the model cannot be built on the meta device the
    check is skipped (peft then reports it while wrapping).
    """
    if targets.strip() == "all-linear":
        return []
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from trainers.common.modeling import is_vision_config, read_model_config

    try:
        model_config = read_model_config(path)
        model_class = AutoModelForImageTextToText if is_vision_config(model_config) else AutoModelForCausalLM
        with torch.device("meta"):
            model = model_class.from_config(model_config)
    except Exception:  # noqa: BLE001 - only a pre-check; peft reports the real error later
        return []
    names = {name for name, _ in model.named_modules() if name}
    parts = {name.rsplit(".", 1)[-1] for name in names}
    missing = [t for t in (t.strip() for t in targets.split(",")) if t and t not in parts and t not in names]
    if not missing:
        return []
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    return [
        f"lora_target_modules {', '.join(missing)} match no module of {path!r}; its linear layers are "
        f"{', '.join(linear)} (or use all-linear)"
    ]
