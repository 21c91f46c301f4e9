"""Run plumbing shared by the trainers built on TRL's ``Trainer`` subclasses (SFT, DPO, reward models).

Each trainer's ``_train`` reads top to bottom (data, checks, TRL settings,
model, training, output); the steps that are the same for all of them live
here, written once:

* **checks** -- :func:`check_model_kind` reads the model's kind from its
  config alone and refuses a pairing that cannot train, before any weights
  load; :func:`read_chat_template`; :func:`preflight_encoding` encodes the
  longest rows first, so an overlong one stops the run before training;
* **engine** -- :func:`prepare_engine` decides CUDA and bf16 and starts
  torch.distributed for DeepSpeed (ZeRO-3 partitions while the model loads,
  so this happens before the model exists); :func:`training_dtype`;
  :func:`deepspeed_settings` from the shipped files; :func:`trl_training_kwargs`,
  the ``TrainingArguments`` every trainer passes alike; :func:`lora_config`;
* **the run** -- :class:`ComputeLoggingMixin` logs the paper's compute axis
  from the ``Trainer``'s own token count; :func:`training_callbacks`
  (``metrics.jsonl``, snapshots, TensorBoard); :func:`write_run_settings`;
  :func:`reset_zero3_loading`;
* **the run folder** -- :func:`start_run` refuses a new run over an earlier
  one (unless ``overwrite``) and a resume with changed settings, resumes
  from the last complete checkpoint (:func:`last_complete_checkpoint` sets
  incomplete ones aside) and finds a run that is already complete;
  :func:`train_or_finish` trains no step past the end;
* **output** -- :class:`ModelWriter` writes loadable models (final and
  snapshots) with their compute record, through :func:`save_trained_model`
  and :func:`merge_lora` (which the PPO trainer uses too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from gengym_core.run_safety import (
    atomic_write_text,
    changed_settings,
    changed_settings_message,
    earlier_run_message,
    is_main_process,
    move_into_place,
)
from trainers.common.compute import TRAINING_RECORD
from trainers.common.config import ConfigError, config_to_dict
from trainers.common.engine_config import DEEPSPEED_CONFIG_DIR
from trainers.common.modeling import (
    forget_load_renames,
    is_vision_config,
    load_model_and_processor,
    read_model_config,
)
from trainers.common.train_settings import (
    CheckpointSettings,
    DeepSpeedSettings,
    LoraSettings,
    ReportingSettings,
)

logger = logging.getLogger(__name__)

#: The final model's folder inside ``output_dir``.
FINAL_DIR = "final"
#: Folder of the ``snapshot_steps`` models inside ``output_dir`` (``step-NNNNNN``).
SNAPSHOT_DIR = "snapshots"


# -- checks -----------------------------------------------------------------------


def max_images_per_example(dataset: Any) -> int:
    """Most images in one row, read from the Arrow column without decoding any image."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(dataset.data.column("images"))
    largest = pc.max(lengths).as_py()
    return int(largest or 0)


def check_model_kind(
    model: str,
    *,
    trust_remote_code: bool,
    has_images: bool,
    data: str,
    not_generative: str,
    text_only_hint: str,
) -> bool:
    """Whether ``model`` is a vision-language model, read from its config alone (no weights).

    Args:
        model: Checkpoint path or hub id.
        trust_remote_code: Whether the checkpoint's own code may run.
        has_images: Whether the training data hold images.
        data: The data, as the error names them (e.g. ``"the pairs of GeneralPoints-VL-v0"``).
        not_generative: End of the error for a model that is neither kind.
        text_only_hint: What to do instead, when a text-only model meets images.

    Raises:
        ConfigError: An unreadable config, a model that is not generative, or
            a text-only model for data with images.
    """
    model_config = read_model_config(model, trust_remote_code=trust_remote_code)
    is_vision = is_vision_config(model_config)
    if is_vision is None:
        raise ConfigError(
            f"{model!r} ({type(model_config).__name__}) is neither an image-text-to-text nor a causal LM "
            f"model; {not_generative}"
        )
    if has_images and not is_vision:
        raise ConfigError(f"{model!r} is a text-only model but {data} hold images; {text_only_hint}")
    return is_vision


def read_chat_template(path: str) -> str | None:
    """The text of ``chat_template_file`` (``None`` when unset: the checkpoint's own template)."""
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read chat_template_file {path!r}: {err}") from err


def preflight_encoding(collator: Any, dataset: Any, indices: Iterable[int], *, what: str) -> None:
    """Encode rows ``indices`` alone, so one that cannot be encoded stops the run before training.

    Callers pass the longest rows; the collator still checks every batch.

    Raises:
        ConfigError: Naming the row (``what`` and its index) and why.
    """
    for index in indices:
        try:
            collator([dataset[index]])
        except ValueError as err:
            raise ConfigError(f"{what} {index} cannot be encoded: {err}") from err


# -- engine -----------------------------------------------------------------------


def prepare_engine(config: Any) -> tuple[bool, bool]:
    """``(use_cuda, bf16)`` for a config with :class:`DeepSpeedSettings` and :class:`ModelLoadingSettings`.

    With DeepSpeed on, torch.distributed is started here: DeepSpeed reads
    the world size when ZeRO-3 loading starts, before the ``Trainer`` would
    set up processes (as one process when the run was started without a
    launcher).

    Raises:
        ConfigError: ``device=cuda`` without a visible CUDA device.
    """
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=auto or cpu")
    use_cuda = config.device != "cpu" and torch.cuda.is_available()
    bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and use_cuda and torch.cuda.is_bf16_supported())
    if config.deepspeed != "none":
        from trainers.common.engine import init_distributed

        init_distributed(None if use_cuda else "gloo")
    return use_cuda, bf16


def training_dtype(bf16: bool, *, deepspeed: str, lora: bool) -> torch.dtype:
    """The dtype to load trained weights in.

    Full fine-tuning without DeepSpeed keeps fp32 weights (bf16 only in
    autocast): a learning rate of 1e-6 is below bf16's resolution for most
    weights, so bf16 weights would not move. DeepSpeed keeps its own fp32
    master copy, and LoRA's frozen base needs no precision for updates.
    """
    keep_fp32 = deepspeed == "none" and not lora
    return torch.bfloat16 if bf16 and not keep_fp32 else torch.float32


def deepspeed_settings(config: DeepSpeedSettings) -> dict[str, Any] | None:
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


def trl_training_kwargs(config: Any, *, learning_rate: float, bf16: bool, use_cuda: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` every trainer passes alike to its TRL config.

    ``config`` has :class:`OptimisationSettings`, :class:`ModelLoadingSettings`,
    :class:`DeepSpeedSettings` and :class:`ReportingSettings` (with
    :class:`CheckpointSettings`, resumable checkpoints are written every
    ``save_steps``; without, none). Rows go to the trainer's collator
    untouched (no column pruning, no truncation), and the ``Trainer`` counts
    the non-padding tokens it trains on, the compute records' ``D``.
    """
    kwargs: dict[str, Any] = dict(
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
        save_strategy="no",
        report_to="none",
        disable_tqdm=not config.progress_bar,
        dataloader_num_workers=config.dataloader_num_workers,
        remove_unused_columns=False,
        max_length=None,
        include_num_input_tokens_seen="non_padding",
        deepspeed=deepspeed_settings(config),
    )
    if isinstance(config, CheckpointSettings):
        kwargs.update(
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            save_total_limit=config.save_total_limit,
        )
    return kwargs


def lora_config(config: LoraSettings) -> Any:
    """peft's ``LoraConfig`` for the run's LoRA settings (``all-linear`` or a comma list of modules)."""
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


# -- the run ----------------------------------------------------------------------


class ComputeLoggingMixin:
    """Logs ``compute/train_tokens`` and ``compute/gflops`` with a TRL trainer's metrics.

    Trained tokens are counted by the ``Trainer`` itself
    (``include_num_input_tokens_seen="non_padding"``: the attention mask of
    every micro-batch, summed over all processes, saved in the trainer state
    and so restored on resume). List the mixin before the TRL class; the
    subclass defines :attr:`gflops` from :attr:`train_tokens`.

    Args:
        num_params: ``N`` of the compute formula.
        init_tokens: ``D_init``, tokens that produced the starting checkpoint.
        *args, **kwargs: Those of the TRL trainer.
    """

    state: Any
    model: Any

    def __init__(self, *args: Any, num_params: int, init_tokens: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_params = num_params
        self.init_tokens = init_tokens

    @property
    def train_tokens(self) -> int:
        """Non-padding tokens passed forward and backward so far, all processes."""
        return int(self.state.num_input_tokens_seen)

    @property
    def gflops(self) -> float:
        """The run's compute so far in units of 10^9 (defined by each trainer)."""
        raise NotImplementedError

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs["compute/train_tokens"] = float(self.train_tokens)
            logs["compute/gflops"] = self.gflops
        super().log(logs, start_time)  # type: ignore[misc]


def jsonl_callback(output_dir: Path) -> TrainerCallback:
    """A callback that writes every log record to ``metrics.jsonl`` (main process only)."""
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


def tensorboard_callback(log_dir: Path) -> TrainerCallback:
    """The ``Trainer``'s TensorBoard callback, writing to ``log_dir``.

    Its writer opens with ``purge_step`` one past the step training starts
    from, as :class:`~trainers.common.metrics.MetricsLogger` does: a run
    resumed from an earlier checkpoint than its last logged step redoes those
    steps, and TensorBoard then hides the killed run's events for them
    (``metrics.jsonl`` drops their records).
    """
    from transformers.integrations import TensorBoardCallback

    class PurgingTensorBoardCallback(TensorBoardCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and self.tb_writer is None and self._SummaryWriter is not None:
                self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=state.global_step + 1)
            super().on_train_begin(args, state, control, **kwargs)

    callback = PurgingTensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return callback


def training_callbacks(
    config: ReportingSettings, output_dir: Path, writer: ModelWriter | None = None
) -> list[TrainerCallback]:
    """No step past the end (:class:`StopWhenTrained`), ``metrics.jsonl``, snapshots at
    ``config.snapshot_steps`` (with a ``writer``), then TensorBoard."""
    callbacks = [StopWhenTrained(), jsonl_callback(output_dir)]
    if writer is not None:
        callbacks.append(SnapshotCallback(writer, output_dir / SNAPSHOT_DIR, writer.config.snapshot_steps))
    if config.tensorboard:
        callbacks.append(tensorboard_callback(output_dir / "tensorboard"))
    return callbacks


def write_run_settings(output_dir: Path, name: str, config: Any) -> None:
    """Write the run's settings as ``output_dir/name`` (JSON, whole), on the main process.

    A resumed run compares its settings with this file (:func:`start_run`).
    """
    if is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / name, json.dumps(config_to_dict(config), indent=2))


# -- the run folder: resume, refuse, replace ---------------------------------------

#: Settings a resumed run may change: how long it runs, how it saves and reports, where it runs.
RESUMABLE_SETTINGS = frozenset(
    {
        "output_dir",
        "resume",
        "overwrite",
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "snapshot_steps",
        "logging_steps",
        "tensorboard",
        "progress_bar",
        "dataloader_num_workers",
        "device",
    }
)
#: Prefix of a checkpoint folder found incomplete and set aside (out of the ``Trainer``'s ``checkpoint-*``).
INCOMPLETE_PREFIX = "incomplete-"
#: What a run writes into its ``output_dir`` (glob patterns); ``--overwrite`` removes these and nothing else.
RUN_ENTRIES = (
    "checkpoint-*",
    f"{INCOMPLETE_PREFIX}checkpoint-*",
    FINAL_DIR,
    f"{FINAL_DIR}.*",
    SNAPSHOT_DIR,
    "metrics.jsonl",
    "tensorboard",
    "gengym_*_config.json",
    "README.md",
)
#: A checkpoint the ``Trainer`` resumes from: ``checkpoint-<global step>``.
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")


def _say(message: str) -> None:
    """A notice about the run folder, on the main process (stderr)."""
    if is_main_process():
        print(f"gengym: {message}", file=sys.stderr)


def checkpoint_problem(folder: Path) -> str:
    """What makes a ``Trainer`` checkpoint unusable for resuming, or ``""`` when it is complete.

    The ``Trainer`` writes ``trainer_state.json`` last, so a checkpoint cut
    short (killed, disk full) lacks it or holds a torn one. Every weights,
    optimizer and RNG file must also be whole: each ``.safetensors`` file
    covers what its header promises and each torch file (a zip archive) has
    its end record. Nothing is loaded.
    """
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable trainer_state.json"
    files = [p for p in folder.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt") or "global_step" in p.parent.name]
    if not weights:
        return "no weights"
    for path in files:
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
        elif path.suffix in (".bin", ".pt", ".pth"):
            problem = "" if zipfile.is_zipfile(path) else "not a whole torch file"
        else:
            continue
        if problem:
            return f"{path.relative_to(folder)}: {problem}"
    return ""


def safetensors_problem(path: Path) -> str:
    """Whether a ``.safetensors`` file is whole, from its header alone (``""`` when it is)."""
    import struct

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "empty or cut short"
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                return "cut short"
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError):
        return "unreadable header"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + header_len + max(ends, default=0) > size:
        return "cut short"
    return ""


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``output_dir``; newer incomplete ones are set aside.

    A checkpoint found incomplete (see :func:`checkpoint_problem`) is renamed
    ``incomplete-checkpoint-N`` (on the main process), out of the way of
    the resumed run, which writes ``checkpoint-N`` again, and of the
    ``Trainer``'s pruning of old checkpoints.
    """
    if not output_dir.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if p.is_dir() and (m := CHECKPOINT_PATTERN.fullmatch(p.name))
    )
    for _, folder in reversed(found):
        problem = checkpoint_problem(folder)
        if not problem:
            return folder
        aside = folder.with_name(INCOMPLETE_PREFIX + folder.name)
        _say(f"{folder} is incomplete ({problem}); set aside as {aside.name}")
        if is_main_process():
            if aside.exists():
                shutil.rmtree(aside)
            folder.rename(aside)
    return None


def _run_entries(output_dir: Path) -> list[Path]:
    """The files of an earlier run in ``output_dir`` (a ``README.md`` alone is a user's, not a run)."""
    if not output_dir.is_dir():
        return []
    entries = sorted({p for pattern in RUN_ENTRIES for p in output_dir.glob(pattern)})
    return entries if any(p.name != "README.md" for p in entries) else []


def _final_steps(output_dir: Path) -> int | None:
    """Steps recorded with the run's final model, or ``None`` when there is none (or it is unreadable)."""
    try:
        return int(json.loads((output_dir / FINAL_DIR / TRAINING_RECORD).read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass
class RunStart:
    """How a run of a ``Trainer``-based trainer starts in its ``output_dir`` (see :func:`start_run`).

    Attributes:
        resume_from: Checkpoint to resume from (``None``: from the start).
        finished: The final model of a run that is already complete: nothing to train.
    """

    resume_from: str | None = None
    finished: Path | None = None


def start_run(config: Any, output_dir: Path, settings_file: str) -> RunStart:
    """Decide how the run starts in ``output_dir``, refusing what would lose or mix results.

    * A new run (no ``resume``) into a folder holding an earlier run's files
      is refused, unless ``overwrite`` (then those files, and only those, are
      removed first).
    * A resumed run must keep the settings the run began with (saved in
      ``settings_file``), bar :data:`RESUMABLE_SETTINGS`; it continues from
      the last complete checkpoint (incomplete ones are set aside), and a run
      that already has all its steps and its final model trains nothing.

    Raises:
        ConfigError: Saying what to do instead.
    """
    entries = _run_entries(output_dir)
    if not getattr(config, "resume", False):
        if entries and not config.overwrite:
            names = [p.name for p in entries if p.name != "README.md"]
            found = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ConfigError(earlier_run_message(output_dir, found, overwrite=True))
        if entries and is_main_process():
            _say(f"--overwrite: removing the earlier run in {output_dir} ({', '.join(p.name for p in entries)})")
            for path in entries:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return RunStart()

    saved = _saved_settings(output_dir / settings_file)
    now = config_to_dict(config)
    changed = changed_settings(now, saved, free=RESUMABLE_SETTINGS)
    if changed:
        raise ConfigError(
            changed_settings_message(output_dir, output_dir / settings_file, saved, now, changed, overwrite=True)
        )
    checkpoint = last_complete_checkpoint(output_dir)
    final_steps = _final_steps(output_dir)
    if checkpoint is None:
        if final_steps is None:
            if entries:
                _say(f"resume: no complete checkpoint in {output_dir}; training from the start")
            return RunStart()
        if config.max_steps > final_steps:
            raise ConfigError(
                f"cannot resume the run in {output_dir}: it finished after {final_steps} steps and kept no "
                f"checkpoint to go on from (save_steps 0); pass --overwrite to train again from the start, "
                "or choose another output_dir"
            )
        _say(f"{output_dir} holds a complete run ({final_steps} steps); nothing to train")
        return RunStart(finished=output_dir / FINAL_DIR)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    step = int(state["global_step"])
    target = config.max_steps if config.max_steps > 0 else None
    if target is None and saved.get("num_train_epochs") == config.num_train_epochs:
        target = int(state.get("max_steps") or 0) or None
    if target is not None and step >= target and final_steps == step:
        _say(f"{output_dir} holds a complete run ({step} of {target} steps); nothing to train")
        return RunStart(finished=output_dir / FINAL_DIR)
    _say(f"resuming from {checkpoint} (step {step})")
    return RunStart(resume_from=str(checkpoint))


def _saved_settings(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


class NothingLeftToTrain(Exception):
    """Raised by :class:`StopWhenTrained`: the resumed checkpoint already holds every step."""


class StopWhenTrained(TrainerCallback):
    """Stops a resumed run before its first step when the checkpoint already holds every step.

    The ``Trainer`` itself would take one more step past ``max_steps`` (it
    checks the limit after a step); this happens when a run was killed after
    its last checkpoint but before its final model was written. The
    checkpoint's weights and state are loaded by then, so the final model can
    be written from them.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise NothingLeftToTrain


class _StopGuardWhenTrainingBegins(TrainerCallback):
    """DeepSpeed's setup (and any op it builds) is over when the first step comes."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard

    def on_train_begin(self, args, state, control, **kwargs):
        self.guard.stop()


def train_or_finish(trainer: Any, run: RunStart) -> None:
    """``trainer.train()`` from ``run.resume_from``; a checkpoint that holds every step trains nothing.

    With DeepSpeed, its setup runs under an
    :class:`~trainers.common.engine.OpBuildGuard`: a build lock left by a
    killed run does not make it wait forever.
    """
    from trainers.common.engine import OpBuildGuard

    guard = OpBuildGuard() if trainer.is_deepspeed_enabled else None
    if guard is not None:
        trainer.add_callback(_StopGuardWhenTrainingBegins(guard))
        guard.start()
    try:
        trainer.train(resume_from_checkpoint=run.resume_from)
    except NothingLeftToTrain:
        _say(f"{run.resume_from} holds every step of the run; writing its final model without training")
    finally:
        if guard is not None:
            guard.stop()


@contextlib.contextmanager
def reset_zero3_loading() -> Iterator[None]:
    """Switch ZeRO-3 loading off again when the run ends, however it ends.

    TRL's settings switch on ZeRO-3 loading for the whole process; later
    ``from_pretrained`` calls (evaluation, PPO in the same process) must load
    whole models again.
    """
    try:
        yield
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


# -- output -----------------------------------------------------------------------


class ModelWriter:
    """Writes loadable models of the run: the final one and snapshots along the way.

    Each folder gets the model (LoRA merged into its base), the processor or
    tokenizer with the chat template, and ``gengym_training.json`` with the
    compute spent up to that point. Every process calls :meth:`write` (ZeRO-3
    gathers collectively); only the main process writes files.

    Args:
        config: The run's settings (``model``, ``trust_remote_code``, ``lora``,
            ``deepspeed`` and ``snapshot_steps`` are read).
        processor: The model's processor or tokenizer.
        dtype: Dtype the base model was loaded in (for LoRA merges).
        record: Fixed fields of the compute record.
    """

    def __init__(self, config: Any, *, processor: Any, dtype: torch.dtype, record: dict[str, Any]):
        self.config = config
        self.processor = processor
        self.dtype = dtype
        self.record = record
        self.trainer: Any = None  # a ComputeLoggingMixin trainer, set once it exists

    def write(self, directory: Path) -> Path:
        """Write the model as ``directory``: built beside it and renamed in, so it is whole or absent."""
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("ModelWriter.trainer is not set")
        building = directory.with_name(directory.name + ".tmp")
        if trainer.accelerator.is_main_process and building.exists():
            shutil.rmtree(building)  # left by a run killed while writing
        save_trained_model(trainer, building, zero3=self.config.deepspeed == "zero3")
        if trainer.accelerator.is_main_process:
            if self.config.lora:
                merge_lora(
                    building,
                    base_model=self.config.model,
                    trust_remote_code=self.config.trust_remote_code,
                    dtype=self.dtype,
                )
            self.processor.save_pretrained(str(building))
            record = {
                **self.record,
                "init_tokens": trainer.init_tokens,
                "train_tokens": trainer.train_tokens,
                "gflops": trainer.gflops,
                "steps": int(trainer.state.global_step),
            }
            (building / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
            move_into_place(building, directory)
        trainer.accelerator.wait_for_everyone()
        return directory


class SnapshotCallback(TrainerCallback):
    """Writes a loadable model through ``writer`` at each of ``steps``."""

    def __init__(self, writer: ModelWriter, folder: Path, steps: Sequence[int]) -> None:
        self.writer = writer
        self.folder = folder
        self.steps = set(steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.writer.write(self.folder / f"step-{state.global_step:06d}")


@contextlib.contextmanager
def gathered_parameters(trainer: Any, model: Any, *, zero3: bool, loaded: Any = None) -> Iterator[None]:
    """Whole parameters of ``model`` for the duration: one gather under ZeRO-3, nothing to do else.

    ZeRO-2 keeps whole parameters on every process. Under ZeRO-3 the module
    that ``from_pretrained`` loaded (``loaded``, default ``model``) forgets
    its load renamings, so ``save_pretrained`` writes the model's own names
    (see :func:`trainers.common.modeling.forget_load_renames`).
    """
    if not (zero3 and trainer.is_deepspeed_enabled):
        yield
        return
    import deepspeed

    forget_load_renames(model if loaded is None else loaded)
    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def save_trained_model(trainer: Any, directory: Path, *, zero3: bool) -> None:
    """Write the trained model (or adapter) to ``directory`` with its own ``save_pretrained``.

    Under ZeRO-3 the parameters are gathered once (one full copy of the
    weights per process for the duration of the save).
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    with gathered_parameters(trainer, model, zero3=zero3):
        if trainer.accelerator.is_main_process:
            directory.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(directory), safe_serialization=True)
    trainer.accelerator.wait_for_everyone()


def merge_lora(final: Path, *, base_model: str, trust_remote_code: bool, dtype: torch.dtype) -> None:
    """Replace the adapter in ``final`` by ``base_model`` with the adapter merged in.

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
        base = load_model_and_processor(base_model, dtype=dtype, trust_remote_code=trust_remote_code).model
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(final), safe_serialization=True)
    finally:
        if active is not None:
            hf_deepspeed.set_hf_deepspeed_config(active)
