"""The paper's comparison as one resumable recipe: SFT vs RL, ID vs OOD, against compute.

A run follows the paper's protocol:

1. **init**: a short SFT on oracle answers from the base model (the format
   warm-up both methods start from; RL without it fails when the base model
   does not follow the answer format).
2. **sft** series: SFT continues from the init checkpoint; evaluable
   snapshots along the way.
3. **rl** series: PPO from the init checkpoint with the env's verifier as
   reward; a checkpoint after every few updates.
4. optional further methods (``methods``), each a series from init:
   **dpo** (DPO on preference pairs from the env), **rlhf** (a reward model
   trained on those pairs, then PPO against it) and **rlaif** (PPO against
   an AI judge); see :meth:`ExperimentRunner.dpo_series` and the compute
   notes there.
5. optional **rl-no-sft**: PPO from the base model directly.
6. optional **verification ablation**: PPO from init with verification
   budgets 1, 3, 5, 10.

Every checkpoint is evaluated on the ID and OOD variants; each result is one
line of ``results.jsonl`` with the checkpoint's training compute (the paper's
FLOPs formula, read from its ``gengym_training.json``). The plots and
``summary.md`` are drawn from that file. Every stage skips what is already
on disk, so re-running the same command resumes an interrupted experiment.

Under a multi-process launcher (``accelerate launch``, ``deepspeed``,
``torchrun``) every process runs the training stages together (SFT, DPO,
the reward model and PPO shard their work themselves); everything else --
building a tiny base model, the preference pairs, evaluation, the plots --
runs on the main process alone while the others wait for its files on disk
(not in a collective, so a long evaluation cannot time one out).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gengym_core.run_safety import atomic_write_text, replace_folder
from trainers.common.compute import TRAINING_RECORD, gflops_of, read_training_record
from trainers.common.config import checkpoint_folder_problem, raise_config_errors
from trainers.common.prompting import DEFAULT_PROMPT_FORMAT

logger = logging.getLogger(__name__)

#: Methods an experiment can compare, in the order they run, with their names in titles.
METHODS: dict[str, str] = {"sft": "SFT", "rl": "RL", "dpo": "DPO", "rlhf": "RLHF", "rlaif": "RLAIF"}
#: Settings a resumed experiment may change: they alter no result already on disk.
RESUMABLE_CHANGES = frozenset({"name", "output_dir", "device", "methods", "rl_without_sft", "verification_ablation"})
#: Settings used only by some methods: free to change while none of those methods has run.
METHOD_SETTINGS: dict[str, tuple[str, ...]] = {
    "pairs": ("dpo", "rlhf"),
    "dpo": ("dpo",),
    "dpo_snapshots": ("dpo",),
    "reward_model": ("rlhf",),
    "rlhf": ("rlhf",),
    "rlaif": ("rlaif",),
    "judge_model": ("rlaif",),
}
#: How each series is trained and how its compute is counted (for the summary).
METHOD_NOTES: dict[str, str] = {
    "sft": "SFT on oracle answers from init; 6 N (D_init + D_SFT)",
    "rl": "PPO with the env's verifier as reward; 6 N (D_init + D_RL) + 2 N D_buffer",
    "dpo": "DPO on env preference pairs from init; 6 N (D_init + D_DPO) + 2 N D_ref, D_ref = D_DPO",
    "rlhf": "PPO against a reward model trained on the pairs; RL's formula + 2 N_RM D_RM-scored (in D_buffer) "
    "+ the reward model's training 6 N_RM D_RM",
    "rlaif": "PPO against an AI judge; RL's formula + 2 N_judge D_judge (prompt and reply tokens, in D_buffer)",
}


@dataclass
class ExperimentConfig:
    """One SFT-vs-RL experiment. Sections ``init_sft``, ``sft`` and ``ppo`` take
    any settings of the SFT and PPO configs (they override the defaults here)."""

    name: str = field(default="experiment", metadata={"help": "Name shown in plots and the summary."})
    env_id: str = field(default="GeneralPoints-L-v0", metadata={"help": "gengym env id to train on."})
    model: str = field(
        default="tiny:qwen2",
        metadata={
            "help": "Base checkpoint (path or hub id), a shipped model (tiny:gp-l, trained; see trainers.models), "
            "or tiny:FAMILY for a random tiny model built from code (tiny:qwen2, tiny:llava...)."
        },
    )
    output_dir: str = field(default="runs/experiment", metadata={"help": "Where everything goes."})
    seed: int = field(default=0, metadata={"help": "Seed of data, training and evaluation."})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "Where to train and evaluate."})
    deepspeed: Literal["zero3", "zero2", "none"] = field(
        default="none", metadata={"help": "Engine of SFT and PPO (zero3 for large models on GPUs)."}
    )
    train_variant: str = field(
        default="id",
        metadata={
            "help": "Variant whose env settings training uses, on the training data: a variant's split: test "
            "(V-IRL's held-out routes) becomes split: train."
        },
    )
    eval_variants: list[str] = field(
        default_factory=list, metadata={"help": "Variants evaluated (empty = all the env has)."}
    )
    eval_episodes: int = field(default=50, metadata={"help": "Episodes per variant and checkpoint."})
    eval_batch_size: int = field(default=8, metadata={"help": "Envs answered in one generation batch."})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "Answer length limit in evaluation."})
    prompt_format: Literal["observation", "chat"] = field(
        default=DEFAULT_PROMPT_FORMAT, metadata={"help": "How turns are shown to the model (as in PPO)."}
    )
    init_sft: dict[str, Any] = field(
        default_factory=lambda: {"num_examples": 64, "max_steps": 8},
        metadata={"help": "SFT settings of the format warm-up; {skip: true} starts both series from the base model."},
    )
    sft: dict[str, Any] = field(
        default_factory=lambda: {"num_examples": 256, "max_steps": 24},
        metadata={"help": "SFT settings of the SFT series (continues from init)."},
    )
    sft_snapshots: int = field(default=3, metadata={"help": "Evaluated checkpoints along the SFT series."})
    ppo: dict[str, Any] = field(
        default_factory=lambda: {"total_updates": 3, "num_envs": 4, "num_steps": 4, "minibatch_size": 8},
        metadata={"help": "PPO settings of the RL series (starts from init)."},
    )
    ppo_eval_every: int = field(default=1, metadata={"help": "Evaluate every K-th PPO update."})
    methods: list[str] = field(
        default_factory=lambda: ["sft", "rl"],
        metadata={
            "help": "Methods compared, each a series from init: sft, rl (PPO with the verifier), dpo, rlhf (PPO "
            "against a reward model trained on env pairs), rlaif (PPO against an AI judge)."
        },
    )
    pairs: dict[str, Any] = field(
        default_factory=lambda: {"num_pairs": 128},
        metadata={
            "help": "Preference-pair settings (gengym pairs) for dpo and rlhf; model: init (or base) samples the "
            "answers from that checkpoint instead of the oracle."
        },
    )
    dpo: dict[str, Any] = field(
        default_factory=lambda: {"max_steps": 24},
        metadata={"help": "DPO settings of the dpo series (starts from init, trains on the pairs)."},
    )
    dpo_snapshots: int = field(default=3, metadata={"help": "Evaluated checkpoints along the DPO series."})
    reward_model: dict[str, Any] = field(
        default_factory=lambda: {"max_steps": 24},
        metadata={"help": "Reward-model settings of the rlhf series (backbone: init, trained on the pairs)."},
    )
    rlhf: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "PPO settings of the rlhf series on top of the ppo section (e.g. reward_weights)."},
    )
    rlaif: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "PPO settings of the rlaif series on top of the ppo section (judge_*, reward_weights)."},
    )
    judge_model: str = field(
        default="",
        metadata={"help": "Judge of the rlaif series: a path, hub id or tiny:FAMILY; empty = the base model."},
    )
    rl_without_sft: bool = field(default=False, metadata={"help": "Also run PPO from the base model."})
    verification_ablation: list[int] = field(
        default_factory=list, metadata={"help": "Verification budgets to compare with PPO from init, e.g. [1, 3, 5, 10]."}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check everything that can be checked before training; raise ``ValueError``."""
        from gengym_core.registry import variants_of
        from trainers.models import is_shipped_spec

        errors = []
        try:
            known = variants_of(self.env_id)
        except ValueError as err:
            raise ValueError(str(err)) from None
        if self.train_variant not in known:
            errors.append(f"train_variant {self.train_variant!r} is not a variant of {self.env_id} ({', '.join(known)})")
        for name in ("model", "judge_model"):
            spec = getattr(self, name)
            if spec.startswith("tiny:") and not is_shipped_spec(spec):
                from trainers.testing.tiny_models import missing_requirement

                try:
                    reason = missing_requirement(spec.split(":", 1)[1])
                except ValueError as err:
                    errors.append(f"{name}: {err}")
                    continue
                if reason:
                    errors.append(f"{name} {spec}: {reason}")
        if not self.model:
            errors.append("model must name a checkpoint (path or hub id) or tiny:FAMILY")
        bad = [v for v in self.eval_variants if v not in known]
        if bad:
            errors.append(f"eval_variants {bad} are not variants of {self.env_id} ({', '.join(known)})")
        if self.eval_episodes < 1 or self.eval_batch_size < 1 or self.eval_max_new_tokens < 1:
            errors.append("eval_episodes, eval_batch_size and eval_max_new_tokens must be at least 1")
        if self.sft_snapshots < 0 or self.ppo_eval_every < 1:
            errors.append("sft_snapshots must be >= 0 and ppo_eval_every >= 1")
        if any(b < 1 for b in self.verification_ablation):
            errors.append("verification budgets must be at least 1")
        for section in ("init_sft", "sft", "ppo", "pairs", "dpo", "reward_model", "rlhf", "rlaif"):
            if not isinstance(getattr(self, section), dict):
                errors.append(f"{section} must be a mapping of settings")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            errors.append(f"methods must be distinct names among {', '.join(METHODS)}; got {self.methods}")
        if self.dpo_snapshots < 0:
            errors.append("dpo_snapshots must be >= 0")
        for section in ("rlhf", "rlaif"):
            if isinstance(getattr(self, section), dict) and "reward" in getattr(self, section):
                errors.append(f"the {section} series sets its own reward; drop reward from the {section} section")
        raise_config_errors("invalid experiment settings", errors, ValueError)
        # The sections must be valid configs too (fail before any training).
        self.sft_config("init", model="x", output_dir="x")
        self.sft_config("sft", model="x", output_dir="x")
        self.ppo_config(model="x", output_dir="x")
        if "dpo" in self.methods or "rlhf" in self.methods:
            self.pairs_config(model="")
        if "dpo" in self.methods:
            self.dpo_config(model="x", output_dir="x")
        if "rlhf" in self.methods:
            import tempfile

            self.reward_model_config(model="x", output_dir="x")
            # A stand-in folder: the reward model does not exist before the run.
            self.ppo_config(model="x", output_dir="x", reward=f"reward-model:{tempfile.gettempdir()}", **self.rlhf)
        if "rlaif" in self.methods:
            self.ppo_config(model="x", output_dir="x", reward="judge:x", **self.rlaif)

    def check_runnable(self) -> None:
        """Check what depends on this machine (run before anything is written).

        A checkpoint folder that does not exist, ``device: cuda`` where
        torch sees no GPU, or ``deepspeed: none`` under a multi-process
        launcher. (Recipes name ``device: cuda`` for the machines they are
        meant for, so this is not part of :meth:`validate`.)

        Raises:
            ConfigError: Saying what to change.
        """
        from trainers.common.config import ConfigError
        from trainers.models import is_shipped_spec, resolve_model_spec

        errors = []
        for name in ("model", "judge_model"):
            spec = getattr(self, name)
            if is_shipped_spec(spec):
                spec = resolve_model_spec(spec)
            if spec and not spec.startswith("tiny:") and (problem := checkpoint_folder_problem(spec)):
                errors.append(f"{name}: {problem}")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                errors.append("device is cuda but torch sees no CUDA GPU here; use auto or cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.deepspeed == "none":
            errors.append(
                "under a multi-process launcher set deepspeed: zero2 or zero3 (PPO shares its work between "
                "processes through DeepSpeed; with none every process would train its own copy)"
            )
        raise_config_errors("cannot start the experiment", errors, ConfigError)

    def changes_that_break_resume(self, previous: dict[str, Any]) -> list[str]:
        """Settings that differ from ``previous`` (an earlier run's ``experiment.json``) and would mix results.

        Adding methods, the RL-without-SFT series or ablation budgets is
        fine (their results are new series); so are the title, the output
        folder and the device. A method's own sections may change while that
        method has not run. Anything else changes results already on disk.
        """
        from gengym_core.run_safety import changed_settings

        ran = set(previous.get("methods", []))
        unused = {key for key, methods in METHOD_SETTINGS.items() if not ran.intersection(methods)}
        return changed_settings(dataclasses.asdict(self), previous, free=RESUMABLE_CHANGES | unused)

    @property
    def variants(self) -> list[str]:
        from gengym_core.registry import variants_of

        return list(self.eval_variants) or list(variants_of(self.env_id))

    def train_env_kwargs(self) -> dict[str, Any]:
        """The ``gym.make`` kwargs of training: ``train_variant``'s, on the training split.

        Evaluation variants name the held-out split (V-IRL's ``split:
        test``); training on it would evaluate the model on its own training
        routes, the reference code's defect this protocol exists to avoid.
        """
        from gengym_core.registry import variants_of

        kwargs = dict(variants_of(self.env_id)[self.train_variant])
        if kwargs.get("split") == "test":
            kwargs["split"] = "train"
        return kwargs

    def _run_settings(self) -> dict[str, Any]:
        """What every training section starts from (its own settings and the overrides go on top)."""
        return {
            "env_id": self.env_id,
            "seed": self.seed,
            "deepspeed": self.deepspeed,
            "device": self.device,
            "tensorboard": False,
        }

    def sft_config(self, section: str, **overrides: Any):
        from trainers.common.config import config_from_dict
        from trainers.sft.sft_config import GengymSFTConfig

        raw = dict(self.init_sft if section == "init" else self.sft)
        raw.pop("skip", None)
        settings = {
            **self._run_settings(),
            "env_kwargs": self.train_env_kwargs(),
            "data_seed": self.seed + (0 if section == "init" else 1),
            **raw,
            **overrides,
        }
        return config_from_dict(GengymSFTConfig, settings, source=f"experiment section {section!r}")

    def ppo_config(self, **overrides: Any):
        from trainers.common.config import config_from_dict
        from trainers.ppo.ppo_config import PPOConfig

        env_kwargs = {**self.train_env_kwargs(), **dict(self.ppo.get("env_kwargs", {})), **overrides.pop("env_kwargs", {})}
        settings = {
            **self._run_settings(),
            "prompt_format": self.prompt_format,
            **{k: v for k, v in self.ppo.items() if k != "env_kwargs"},
            "env_kwargs": env_kwargs,
            **overrides,
        }
        return config_from_dict(PPOConfig, settings, source="experiment section 'ppo'")

    def pairs_config(self, **overrides: Any):
        """The preference pairs of the dpo and rlhf series (train variant, the runs' prompt format)."""
        from trainers.common.config import config_from_dict
        from trainers.pairs.config import PairsConfig

        settings = {
            "env_id": self.env_id,
            "env_kwargs": self.train_env_kwargs(),
            "seed": self.seed + 2,
            "prompt_format": self.prompt_format,
            "device": self.device,
            "progress_bar": False,
            **self.pairs,
            **overrides,
        }
        return config_from_dict(PairsConfig, settings, source="experiment section 'pairs'")

    def dpo_config(self, **overrides: Any):
        from trainers.dpo.dpo_config import GengymDPOConfig

        return self._pair_trainer_config(GengymDPOConfig, "dpo", overrides)

    def reward_model_config(self, **overrides: Any):
        from trainers.reward_model.reward_config import GengymRewardModelConfig

        return self._pair_trainer_config(GengymRewardModelConfig, "reward_model", overrides)

    def _pair_trainer_config(self, cls: type, section: str, overrides: dict[str, Any]):
        """A trainer on the pairs (section ``dpo`` or ``reward_model``) with the runs' prompt format."""
        from trainers.common.config import config_from_dict

        settings = {
            **self._run_settings(),
            "prompt_format": self.prompt_format,
            "env_kwargs": self.train_env_kwargs(),
            **getattr(self, section),
            **overrides,
        }
        if settings.get("dataset"):  # the pairs folder fixes how the pairs were made
            for key in ("env_kwargs", "prompt_format"):
                settings.pop(key, None)
        return config_from_dict(cls, settings, source=f"experiment section {section!r}")


def load_experiment_config(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """Read an experiment YAML file (unknown keys are errors)."""
    from trainers.common.config import config_from_dict, load_yaml

    data = {**load_yaml(path), **{k: v for k, v in overrides.items() if v is not None}}
    return config_from_dict(ExperimentConfig, data, source=str(path))


#: Seconds between looks at the disk while a process waits for the main one.
WAIT_POLL_SECONDS = 2.0


def _is_main_process() -> bool:
    """Rank 0 of a launcher's processes, or a process started plainly."""
    return int(os.environ.get("RANK", "0")) == 0


class ExperimentRunner:
    """Runs (or resumes) an experiment; see the module docs for the stages."""

    def __init__(self, config: ExperimentConfig, *, log=print) -> None:
        self.config = config
        self.out = Path(config.output_dir)
        self.results_path = self.out / "results.jsonl"
        self.is_main = _is_main_process()
        self.log = log if self.is_main else (lambda *_: None)
        self.timings: dict[str, float] = {}

    def _wait_for(self, ready, what: str) -> None:
        """On a process other than the main one: wait until ``ready()`` (the main process's file is there).

        A launcher stops every process when one fails, so there is no
        time limit here.
        """
        if not ready():
            logger.info("process %s waits for %s from the main process", os.environ.get("RANK"), what)
        while not ready():
            time.sleep(WAIT_POLL_SECONDS)

    # ------------------------------------------------------------- stages
    def run(self) -> Path:
        """Every stage, then plots and the summary; returns ``summary.md``.

        The output folder is locked meanwhile: a second experiment into it
        stops with a message naming this one.
        """
        from gengym_core.run_safety import output_lock

        self.config.check_runnable()
        with output_lock(self.out):
            return self._run()

    def _run(self) -> Path:
        cfg = self.config
        self._check_resumable()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            atomic_write_text(self.out / "experiment.json", json.dumps(dataclasses.asdict(cfg), indent=2))
        base = self._stage("base model", self.base_model)
        init = self._stage("format warm-up (init SFT)", lambda: self.init_checkpoint(base))
        self._stage("evaluate init", lambda: self.evaluate(init, list(cfg.methods), step=0))
        if "sft" in cfg.methods:
            self._stage("SFT series", lambda: self.sft_series(init))
        if "rl" in cfg.methods:
            self._stage("RL series", lambda: self.rl_series(init, "rl", self.out / "rl"))
        if "dpo" in cfg.methods or "rlhf" in cfg.methods:
            pairs = self._stage("preference pairs", lambda: self.preference_pairs(base, init))
            if "dpo" in cfg.methods:
                self._stage("DPO series", lambda: self.dpo_series(init, pairs))
            if "rlhf" in cfg.methods:
                self._stage("RLHF series", lambda: self.rlhf_series(init, pairs))
        if "rlaif" in cfg.methods:
            self._stage("RLAIF series", lambda: self.rlaif_series(base, init))
        if cfg.rl_without_sft:
            self._stage("evaluate base", lambda: self.evaluate(base, ["rl-no-sft"], step=0))
            self._stage("RL without SFT", lambda: self.rl_series(base, "rl-no-sft", self.out / "rl-no-sft"))
        for budget in cfg.verification_ablation:
            series = f"viter-{budget}"
            viter = {budget_kwarg(cfg.env_id): budget}
            self._stage(
                f"evaluate init ({series})", lambda s=series, v=viter: self.evaluate(init, [s], step=0, env_overrides=v)
            )
            self._stage(
                f"RL, verification budget {budget}",
                lambda s=series, v=viter: self.rl_series(init, s, self.out / s, env_kwargs=v),
            )
        return self._stage("plots and summary", self.report)

    def _check_resumable(self) -> None:
        """Refuse to resume an experiment whose settings changed in a way that mixes results.

        Raises:
            ConfigError: Naming the changed settings.
        """
        from trainers.common.config import ConfigError

        saved = self.out / "experiment.json"
        if not saved.is_file():
            return
        try:
            previous = json.loads(saved.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(previous, dict):
            return
        broken = self.config.changes_that_break_resume(previous)
        if broken:
            raise ConfigError(
                f"{self.out} holds an experiment with other settings ({', '.join(broken)} changed); resuming "
                "would mix its results with new ones. Use another output folder (output_dir; --out of gengym demo), "
                "or restore those settings "
                f"(the earlier ones are in {saved})"
            )

    def _stage(self, name: str, fn):
        self.log(f"== {name}")
        start = time.perf_counter()
        result = fn()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
        return result

    def base_model(self) -> Path:
        from trainers.models import resolve_model_spec

        spec = resolve_model_spec(self.config.model)
        if not spec.startswith("tiny:"):
            return Path(spec) if Path(spec).exists() else spec  # hub ids stay strings
        return self._tiny_model(spec, self.out / "base-model", seed=self.config.seed)

    def _tiny_model(self, spec: str, path: Path, *, seed: int) -> Path:
        """Build ``tiny:FAMILY`` at ``path`` once (built aside and renamed: a folder there is complete)."""
        if (path / "config.json").is_file():
            return path
        if not self.is_main:
            self._wait_for(lambda: (path / "config.json").is_file(), f"the tiny model at {path}")
            return path
        from trainers.testing.tiny_models import build_tiny_model

        replace_folder(path, lambda tmp: build_tiny_model(spec.split(":", 1)[1], tmp, seed=seed))
        return path

    def init_checkpoint(self, base: Path | str) -> Path | str:
        cfg = self.config
        if cfg.init_sft.get("skip"):
            return base
        out = self.out / "init-sft"
        final = out / "final"
        if (final / TRAINING_RECORD).is_file():
            self.log(f"   found {final}")
            return final
        from trainers.sft import train_sft

        train_sft(cfg.sft_config("init", model=str(base), output_dir=str(out), resume=out.is_dir()))
        if not self.is_main:  # the main process writes final/
            self._wait_for(lambda: (final / TRAINING_RECORD).is_file(), f"{final}")
        return final

    def sft_series(self, init: Path | str) -> None:
        cfg = self.config
        if cfg.sft_snapshots == 0:
            return
        out = self.out / "sft"
        final = out / "final"
        probe = cfg.sft_config("sft", model=str(init), output_dir=str(out))
        steps = snapshot_steps("sft", probe.max_steps, cfg.sft_snapshots)
        if not (final / TRAINING_RECORD).is_file():
            from trainers.sft import train_sft

            train_sft(
                cfg.sft_config(
                    "sft", model=str(init), output_dir=str(out), snapshot_steps=steps[:-1], resume=out.is_dir()
                )
            )
        self._evaluate_snapshots(out, steps, "sft")

    def rl_series(
        self,
        start: Path | str,
        series: str,
        out: Path,
        env_kwargs: dict[str, Any] | None = None,
        ppo_overrides: dict[str, Any] | None = None,
        extra_gflops: float = 0.0,
    ) -> None:
        """PPO from ``start``; every saved checkpoint is evaluated as ``series``.

        ``ppo_overrides`` change the PPO settings (the reward of RLHF and
        RLAIF); ``extra_gflops`` is compute spent before PPO that the series
        carries (the reward model's training).
        """
        cfg = self.config
        ppo_cfg = cfg.ppo_config(
            model=str(start),
            output_dir=str(out),
            env_kwargs=dict(env_kwargs or {}),
            **dict(ppo_overrides or {}),
        )
        ppo_cfg = dataclasses.replace(
            ppo_cfg, save_every=cfg.ppo_eval_every, keep_checkpoints=max(ppo_cfg.total_updates, 1)
        )
        if not (out / "final" / TRAINING_RECORD).is_file():
            from trainers.ppo.ppo_trainer import train_ppo

            ppo_cfg = dataclasses.replace(ppo_cfg, resume=(out / "checkpoints").is_dir())
            train_ppo(ppo_cfg)
        for ckpt in sorted((out / "checkpoints").glob("update-*")):
            step = int(ckpt.name.split("-")[1])
            self.evaluate(ckpt / "policy", [series], step=step, env_overrides=env_kwargs, extra_gflops=extra_gflops)

    def preference_pairs(self, base: Path | str, init: Path | str) -> Path:
        """The pairs of the dpo and rlhf series (built once, re-verified, kept on disk).

        Oracle pairs by default; ``pairs: {model: init}`` (or ``base``)
        samples both answers from that checkpoint, labelled by the verifier.
        Their sampling compute is recorded with them and charged to the
        series trained on them.
        """
        from trainers.pairs.build import PAIRS_INFO, build_pairs_dataset, save_pairs_dataset

        out = self.out / "pairs"
        if (out / PAIRS_INFO).is_file():
            self.log(f"   found {out}")
            return out
        if not self.is_main:
            self._wait_for(lambda: (out / PAIRS_INFO).is_file(), f"the pairs in {out}")
            return out
        model = {"init": str(init), "base": str(base)}.get(self.config.pairs.get("model", ""))
        config = self.config.pairs_config(**({"model": model} if model is not None else {}))
        dataset, info = build_pairs_dataset(config, progress=False)
        replace_folder(out, lambda tmp: save_pairs_dataset(dataset, info, tmp))
        self.log(f"   {len(dataset)} pairs ({info['source']}), rejected: {info['rejected_verdicts']}")
        return out

    def dpo_series(self, init: Path | str, pairs: Path) -> None:
        """DPO from init on the pairs, with evaluated snapshots along the way.

        Compute: the DPO record's ``6 N (D_init + D_DPO) + 2 N D_ref`` (the
        reference forward over the same tokens), plus the pairs' sampling
        compute when they were sampled from a model.
        """
        cfg = self.config
        if cfg.dpo_snapshots == 0:
            return
        out = self.out / "dpo"
        final = out / "final"
        probe = cfg.dpo_config(model=str(init), output_dir=str(out), dataset=str(pairs))
        steps = snapshot_steps("dpo", probe.max_steps, cfg.dpo_snapshots)
        if not (final / TRAINING_RECORD).is_file():
            from trainers.dpo.dpo_trainer import train_dpo

            train_dpo(
                cfg.dpo_config(
                    model=str(init),
                    output_dir=str(out),
                    dataset=str(pairs),
                    snapshot_steps=steps[:-1],
                    resume=out.is_dir(),
                )
            )
        self._evaluate_snapshots(out, steps, "dpo")

    def _evaluate_snapshots(self, out: Path, steps: list[int], series: str) -> None:
        """Evaluate a run's ``snapshots/step-NNNNNN`` models and its ``final`` (the last step) as ``series``."""
        paths = [out / "snapshots" / f"step-{s:06d}" for s in steps[:-1]] + [out / "final"]
        for step, path in zip(steps, paths, strict=True):
            self.evaluate(path, [series], step=step)

    def rlhf_series(self, init: Path | str, pairs: Path) -> None:
        """A reward model (backbone: init) trained on the pairs, then PPO from init against it.

        Compute: the PPO record (its ``D_buffer`` holds the reward model's
        scoring forwards as policy-equivalent tokens, ``2 N_RM D_scored``),
        plus the reward model's own training ``6 N_RM D_RM`` and the pairs'
        sampling compute, carried from the first checkpoint on.
        """
        from trainers.pairs.build import sampling_gflops

        cfg = self.config
        out = self.out / "reward-model"
        final = out / "final"
        if not (final / TRAINING_RECORD).is_file():
            from trainers.reward_model.reward_trainer import train_reward_model

            train_reward_model(cfg.reward_model_config(model=str(init), output_dir=str(out), dataset=str(pairs)))
            if not self.is_main:
                self._wait_for(lambda: (final / TRAINING_RECORD).is_file(), f"{final}")
        record = read_training_record(final)
        extra = float(record.get("train_gflops", 0.0)) + sampling_gflops(pairs)
        self.rl_series(
            init,
            "rlhf",
            self.out / "rlhf",
            ppo_overrides={**cfg.rlhf, "reward": f"reward-model:{final}"},
            extra_gflops=extra,
        )

    def rlaif_series(self, base: Path | str, init: Path | str) -> None:
        """PPO from init against an AI judge (``judge_model``; the base model when unset).

        Compute: the PPO record, whose ``D_buffer`` holds the judge's prompt
        and reply tokens as policy-equivalent tokens (``2 N_judge D_judge``).
        """
        cfg = self.config
        judge = self.judge_checkpoint(base)
        self.rl_series(init, "rlaif", self.out / "rlaif", ppo_overrides={**cfg.rlaif, "reward": f"judge:{judge}"})

    def judge_checkpoint(self, base: Path | str) -> Path | str:
        """The judge of the rlaif series: ``judge_model`` (tiny:FAMILY built here) or the base model."""
        from trainers.models import resolve_model_spec

        spec = resolve_model_spec(self.config.judge_model)
        if not spec:
            return base
        if not spec.startswith("tiny:"):
            return Path(spec) if Path(spec).exists() else spec
        return self._tiny_model(spec, self.out / "judge-model", seed=self.config.seed + 1)

    # -------------------------------------------------------- evaluation
    def done(self) -> set[tuple[str, str]]:
        from trainers.common.metrics import read_metrics

        if not self.results_path.is_file():
            return set()
        return {(r["series"], r["checkpoint"]) for r in read_metrics(self.results_path)}

    def evaluate(
        self,
        checkpoint: Path | str,
        series: list[str],
        step: int,
        env_overrides: dict[str, Any] | None = None,
        extra_gflops: float = 0.0,
    ) -> None:
        """Evaluate one checkpoint (once) and record it under each series name.

        ``env_overrides`` change the evaluation envs the way the training envs
        of that series were changed (the verification budget of an ablation).
        ``extra_gflops`` is added to the checkpoint's recorded compute (work
        outside its own record, such as training the reward model of RLHF).
        """
        cfg = self.config
        key = str(checkpoint)
        done = self.done()
        todo = [s for s in series if (s, key) not in done]
        if not todo:
            return
        if not self.is_main:  # the main process evaluates; the others wait for its records
            self._wait_for(lambda: all((s, key) in self.done() for s in todo), f"the evaluation of {key}")
            return
        from trainers.eval.agents import ModelAgent
        from trainers.eval.evaluate import evaluate, write_report

        agent = ModelAgent(
            key, max_new_tokens=cfg.eval_max_new_tokens, device=cfg.device, seed=cfg.seed
        )
        try:
            result = evaluate(
                agent,
                cfg.env_id,
                cfg.variants,
                episodes=cfg.eval_episodes,
                seed=cfg.seed + 7,
                batch_size=cfg.eval_batch_size,
                prompt_format=cfg.prompt_format,
                keep_transcripts=2,
                env_overrides=env_overrides,
            )
        finally:
            agent.close()
        name = "-".join(todo) + f"-step{step}"
        write_report(result, self.out / "evals" / name)
        gflops = gflops_of(checkpoint) + extra_gflops
        lines = "".join(
            json.dumps({"series": s, "checkpoint": key, "step": step, "gflops": gflops, "variants": result.metrics})
            + "\n"
            for s in todo
        )
        with self.results_path.open("a+b") as f:
            # A run killed mid-write leaves a torn last line; start on a line of our own.
            if f.tell() > 0:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    lines = "\n" + lines
            f.write(lines.encode())
        summary = ", ".join(f"{v} {100 * m['success_rate']:.0f}%" for v, m in result.metrics.items())
        self.log(f"   {'/'.join(todo)} step {step}: {summary} at {gflops:.3g} GFLOPs")

    # ------------------------------------------------------------ report
    def records(self) -> list[dict[str, Any]]:
        from trainers.common.metrics import read_metrics

        return read_metrics(self.results_path) if self.results_path.is_file() else []

    def report(self) -> Path:
        from trainers.experiment.plots import (
            headline_metric,
            plot_recognition_vs_success,
            plot_success_vs_compute,
            plot_verification_ablation,
        )

        cfg = self.config
        summary = self.out / "summary.md"
        if not self.is_main:
            return summary
        records = self.records()
        plots = self.out / "plots"
        made: list[Path] = []
        main = [r for r in records if r["series"] in cfg.methods]
        title = f"{cfg.name}: " + " vs ".join(METHODS[m] for m in cfg.methods)
        made.append(plot_success_vs_compute(main, cfg.env_id, plots / "success_vs_compute.png", title=title))
        if any(m.get("recognition_accuracy") is not None for r in main for m in r["variants"].values()):
            made.append(plot_recognition_vs_success(main, cfg.env_id, plots / "recognition_vs_success.png"))
        if cfg.rl_without_sft:
            rows = [r for r in records if r["series"] in ("rl", "rl-no-sft")]
            made.append(plot_success_vs_compute(rows, cfg.env_id, plots / "rl_without_sft.png", title=f"{cfg.name}: RL with and without SFT"))
        if cfg.verification_ablation:
            runs = {b: [r for r in records if r["series"] == f"viter-{b}"] for b in cfg.verification_ablation}
            ood = "rule-ood" if "rule-ood" in cfg.variants else cfg.variants[-1]
            made.append(plot_verification_ablation(runs, cfg.env_id, ood, plots / "verification_ablation.png"))
        metric, label = headline_metric(cfg.env_id)
        lines = [f"# {cfg.name}", "", f"Env `{cfg.env_id}`, base model `{cfg.model}`, {cfg.eval_episodes} episodes per variant.", ""]
        lines += ["| series | step | GFLOPs | " + " | ".join(cfg.variants) + " |", "|---|---|---|" + "---|" * len(cfg.variants)]
        for r in sorted(records, key=lambda r: (r["series"], r["gflops"])):
            cells = []
            for v in cfg.variants:
                m = r["variants"].get(v)
                cells.append("-" if m is None else f"{100 * m[metric]:.1f}%")
            lines.append(f"| {r['series']} | {r['step']} | {r['gflops']:.4g} | " + " | ".join(cells) + " |")
        lines += ["", f"Cells: {label}.", ""]
        lines += ["Series (x axis: training GFLOPs, the paper's formulas; see docs/methods.md):", ""]
        lines += [f"- {m}: {METHOD_NOTES[m]}" for m in cfg.methods]
        lines += [""]
        for p in made:
            lines += [f"![{p.stem}](plots/{p.name})", ""]
        if self.timings:
            lines += ["Wall time per stage (this invocation):", ""]
            lines += [f"- {k}: {v:.0f} s" for k, v in self.timings.items()]
        summary.write_text("\n".join(lines) + "\n")
        return summary


def snapshot_steps(section: str, total: int, count: int) -> list[int]:
    """The steps of ``count`` evaluated models spread over a run of ``total`` steps (the last: ``total``).

    Raises:
        ValueError: ``total`` below 1 (naming the recipe's ``section``).
    """
    if total < 1:
        raise ValueError(f"the {section} section needs max_steps >= 1 for a series of snapshots")
    return sorted({max(1, round(total * (k + 1) / count)) for k in range(count)})


def budget_kwarg(env_id: str) -> str:
    """The ``gym.make`` kwarg of an env family's verification budget."""
    return "tries_per_point" if env_id.startswith("VIRL") else "verify_iter"
