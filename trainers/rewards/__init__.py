"""One reward interface, many sources.

The PPO loop scores every turn through a :class:`RewardFunction`: a callable
that takes a batch of :class:`Turn` records (the prompt the policy saw, its
answer, and what the env's verifier said) and returns one float per turn.
The env's verifier is the default source; reward models and AI judges plug in
through the same interface, chosen by a *reward spec* string:

``env``
    The env's own reward (the verifier's score), unchanged.
``reward-model:PATH``
    A learned reward model's score of each answer in context (RLHF; see
    :mod:`trainers.rewards.reward_model` and ``gengym reward-model``).
``judge:PATH``
    A local Hugging Face model asked to grade each answer by a rubric built
    from the env's rules (RLAIF; see :mod:`trainers.rewards.judge`).

More kinds register themselves in :data:`REWARD_KINDS`. A spec is checked by
:func:`validate_reward_spec` before any model is loaded. A model-based
source can be mixed with the verifier's reward by weights
(:class:`WeightedReward`): ``{"reward-model": 1.0, "env": 0.5}`` scores each
turn ``1.0 * model score + 0.5 * env reward``.

Model-based sources spend forward passes of their own model. They report
them through :class:`ScoringCompute`, which charges the PPO run's compute
tracker in policy-equivalent ``D_buffer`` tokens, so the paper's FLOPs axis
includes them (see ``docs/methods.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Reward spec kind -> ("module:factory", whether the spec needs ":PATH").
REWARD_KINDS: dict[str, tuple[str, bool]] = {
    "env": ("trainers.rewards:EnvReward", False),
    "reward-model": ("trainers.rewards.reward_model:RewardModelReward", True),
    "judge": ("trainers.rewards.judge:JudgeReward", True),
}
#: Key of the env verifier's reward in mixing weights (the other key is the spec's kind).
ENV_WEIGHT_KEY = "env"


@dataclass
class Turn:
    """One answered turn, as a reward function sees it.

    Attributes:
        env_id: The env the turn came from.
        messages: The chat conversation the policy answered (ends with a user turn).
        images: The images its placeholders refer to.
        answer: The policy's raw answer text.
        env_reward: The env verifier's reward for it.
        info: The env's step info (verdict, feedback, ...).
    """

    env_id: str
    messages: list[dict[str, Any]]
    images: list[Any]
    answer: str
    env_reward: float
    info: dict[str, Any] = field(default_factory=dict)


class RewardFunction(Protocol):
    """Scores a batch of turns; one float per turn, in order."""

    def __call__(self, turns: Sequence[Turn]) -> list[float]: ...


class EnvReward:
    """The env verifier's own reward."""

    def __call__(self, turns: Sequence[Turn]) -> list[float]:
        return [float(t.env_reward) for t in turns]


def parse_reward_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"kind"`` or ``"kind:PATH"`` and check the kind exists.

    Raises:
        ValueError: Unknown kind, or a path missing/extra for that kind.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("reward spec is empty; use one of: " + _kinds_help())
    kind, sep, arg = spec.strip().partition(":")
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward {spec!r}; use one of: {_kinds_help()}")
    needs_arg = REWARD_KINDS[kind][1]
    if needs_arg and not arg:
        raise ValueError(f"reward {kind!r} needs a model path: {kind}:PATH")
    if not needs_arg and sep:
        raise ValueError(f"reward {kind!r} takes no argument, got {spec!r}")
    return kind, (arg or None)


def validate_reward_spec(spec: str) -> None:
    """Raise ``ValueError`` when ``spec`` cannot name a reward source.

    Only small JSON files are read, so a bad spec fails before any model
    loads. A reward model must be a local folder; one that holds a model or
    a run that is not a reward model (a policy checkpoint, a run folder, a
    pairs folder) is refused with what to pass instead. A judge may be a hub
    id; a judge given as a local path must be a model folder.
    """
    from pathlib import Path

    kind, arg = parse_reward_spec(spec)
    if kind == "reward-model":
        problem = _reward_model_folder_problem(Path(str(arg)))
        if problem:
            raise ValueError(f"--reward {spec}: {problem}")
    elif kind == "judge" and _looks_like_a_path(str(arg)):
        folder = Path(str(arg)).expanduser()
        if not folder.is_dir():
            raise ValueError(f"--reward {spec}: no folder {arg!r} (give a local model folder or a hub id like org/name)")
        if not (folder / "config.json").is_file():
            raise ValueError(f"--reward {spec}: {arg!r} holds no config.json, so it is not a Hugging Face model folder")


def reward_source_sees_images_problem(spec: str, env_has_images: bool) -> str:
    """What keeps the source of ``spec`` from scoring an image env's turns, or ``""``.

    A text-only reward model or judge cannot see what an image env shows.
    Read from the source's config alone (no weights), so PPO can say it
    before anything loads; a source whose config cannot be read here (a hub
    id not cached) is checked when it loads.
    """
    kind, arg = parse_reward_spec(spec)
    if kind not in ("reward-model", "judge") or not env_has_images:
        return ""
    from trainers.common.config import ConfigError
    from trainers.common.modeling import is_vision_config, read_model_config

    try:
        model_config = read_model_config(str(arg))
    except ConfigError:
        return ""
    if any(str(a).endswith("ForSequenceClassification") for a in model_config.architectures or []):
        is_vision = False
    else:
        is_vision = is_vision_config(model_config)
    if is_vision is False:
        what = "reward model" if kind == "reward-model" else "judge"
        fix = "train one on a vision-language backbone" if kind == "reward-model" else "use a vision-language judge"
        return f"the {what} {arg!r} is text-only and cannot see the env's images; {fix}, or use the env's text mode"
    return ""


def _looks_like_a_path(text: str) -> bool:
    """Whether a model name is meant as a local path rather than a hub id (``org/name``)."""
    from pathlib import Path

    from trainers.common.config import names_local_folder

    return Path(text).expanduser().exists() or names_local_folder(text)


def _reward_model_folder_problem(folder: Any) -> str:
    """What keeps ``folder`` from being a reward model, or ``""`` (reads JSON files only).

    A folder holding no recognisable model, run or pairs passes (it fails
    when loaded): the experiment runner checks its settings against such a
    stand-in (the temp folder) before the reward model exists.
    """
    import json

    from trainers.reward_model.reward_config import REWARD_HEAD_FILE, REWARD_MODEL_FILE

    train_hint = "train one with `gengym reward-model` and pass its final/ folder"
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder; {train_hint}"
    if (folder / REWARD_MODEL_FILE).is_file():
        if not (folder / REWARD_HEAD_FILE).is_file():
            return f"{str(folder)!r} has {REWARD_MODEL_FILE} but no {REWARD_HEAD_FILE} (an incomplete copy?)"
        return ""
    if (folder / "final" / REWARD_MODEL_FILE).is_file():
        return f"{str(folder)!r} is a run folder; pass its final/ folder: reward-model:{folder / 'final'}"
    saved_dataset = (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()
    if (folder / "gengym_pairs.json").is_file() or saved_dataset:
        return (
            f"{str(folder)!r} holds preference pairs, not a reward model; train one on them with "
            f"`gengym reward-model --dataset {folder}` and pass its final/ folder"
        )
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if not (folder / "config.json").is_file() or not any((folder / name).is_file() for name in weights):
        return ""
    try:
        model_config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        return f"{str(folder)!r} has an unreadable config.json ({err})"
    if not isinstance(model_config, dict):
        model_config = {}
    architectures = model_config.get("architectures") or []
    classifier = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    # transformers stores the label count as id2label (num_labels only when set by hand)
    labels = len(model_config.get("id2label") or {}) or model_config.get("num_labels")
    if not classifier or labels != 1:
        return (
            f"{str(folder)!r} is not a reward model: it has no {REWARD_MODEL_FILE} and is not a sequence classifier "
            f"with one label ({', '.join(map(str, architectures)) or 'no architectures'}); {train_hint}"
        )
    return ""


def validate_reward_weights(spec: str, weights: dict[str, float] | None) -> None:
    """Check mixing weights against a spec; raise ``ValueError`` saying what to change.

    Keys are ``"env"`` and the spec's kind (e.g. ``"judge"``); values finite
    numbers, not all zero. Empty weights mean the spec's source alone.
    """
    if not weights:
        return
    kind, _ = parse_reward_spec(spec)
    if kind == ENV_WEIGHT_KEY:
        raise ValueError("reward_weights mix a reward-model or judge score with the env's reward; with reward env, drop them")
    if not isinstance(weights, dict):
        raise ValueError(f"reward_weights must be a mapping like {{{kind!r}: 1.0, 'env': 0.5}}, got {weights!r}")
    allowed = {kind, ENV_WEIGHT_KEY}
    unknown = set(weights) - allowed
    if unknown:
        raise ValueError(
            f"reward_weights keys must be {sorted(allowed)} for reward {spec!r}; unknown: {sorted(unknown)}"
        )
    from gengym_core.protocol import MAX_REWARD_MAGNITUDE, is_reward_value

    for key, value in weights.items():
        if not is_reward_value(value):
            raise ValueError(
                f"reward_weights[{key!r}] must be a finite number, at most {MAX_REWARD_MAGNITUDE:g} in size; "
                f"got {value!r}"
            )
    if not any(weights.values()):
        raise ValueError("reward_weights are all zero: every turn would score 0")


def make_reward_function(
    spec: str,
    *,
    weights: dict[str, float] | None = None,
    compute: Any = None,
    **options: Any,
) -> RewardFunction:
    """Build the reward function a spec names (models load here, not earlier).

    Args:
        spec: ``env``, ``reward-model:PATH`` or ``judge:PATH``.
        weights: Mixing weights (see :func:`validate_reward_weights`).
        compute: The training run's
            :class:`~trainers.common.compute.ComputeTracker`; model-based
            sources charge their scoring forwards to it.
        **options: Settings of a model-based source (device, batch size,
            judge settings...); see its class.

    Raises:
        ValueError: A bad spec or weights, or options for the env's reward.
    """
    kind, arg = parse_reward_spec(spec)
    validate_reward_weights(spec, weights)
    module_name, name = REWARD_KINDS[kind][0].split(":")
    factory = getattr(importlib.import_module(module_name), name)
    if REWARD_KINDS[kind][1]:
        source = factory(arg, compute=compute, **options)
    else:
        if options:
            raise ValueError(f"reward {kind!r} takes no options, got {sorted(options)}")
        source = factory()
    if not weights or (set(weights) == {kind} and weights[kind] == 1):
        return source
    return WeightedReward(source, kind, weights)


class WeightedReward:
    """``w_source * source(turns) + w_env * env_reward``, per turn.

    Args:
        source: The model-based reward function.
        kind: Its spec kind (the key of its weight).
        weights: ``{kind: w_source, "env": w_env}``; a missing key weighs 0.

    Example:
        >>> mixed = WeightedReward(lambda turns: [1.0 for _ in turns], "judge", {"judge": 2.0, "env": 0.5})
        >>> mixed([Turn("GeneralPoints-L-v0", [], [], "{}", env_reward=-3.0)])
        [0.5]
    """

    def __init__(self, source: RewardFunction, kind: str, weights: dict[str, float]) -> None:
        self.source = source
        self.kind = kind
        self.source_weight = float(weights.get(kind, 0.0))
        self.env_weight = float(weights.get(ENV_WEIGHT_KEY, 0.0))

    def __call__(self, turns: Sequence[Turn]) -> list[float]:
        scores = self.source(turns) if self.source_weight else [0.0] * len(turns)
        if len(scores) != len(turns):
            raise ValueError(f"the {self.kind} reward returned {len(scores)} scores for {len(turns)} turns")
        return [self.source_weight * float(s) + self.env_weight * float(t.env_reward) for s, t in zip(scores, turns, strict=True)]


class ScoringCompute:
    """Forward compute a reward model or judge spends, charged to a training run.

    Every scored token costs ``2 N_source`` FLOPs (one forward pass). The
    tracker of the PPO run counts ``2 N_policy`` per ``D_buffer`` token, so
    the source's tokens are added as ``D_source * N_source / N_policy``
    policy-equivalent buffer tokens (rounded down overall, so never more
    than one token short): the run's ``gflops`` then include
    ``2 N_source D_source``.

    Args:
        num_params: ``N_source``.
        tracker: The run's ``ComputeTracker``, or ``None`` to only count.

    Example:
        >>> from trainers.common.compute import ComputeTracker
        >>> tracker = ComputeTracker(num_params=100)
        >>> charge = ScoringCompute(num_params=250, tracker=tracker)
        >>> charge.add(3)
        >>> tracker.buffer_tokens, charge.flops, tracker.flops
        (7, 1500, 1400)
    """

    def __init__(self, num_params: int, tracker: Any = None) -> None:
        self.num_params = int(num_params)
        self.tracker = tracker
        self.tokens = 0
        self._charged = 0

    def add(self, tokens: int) -> None:
        """Count ``tokens`` more scored tokens (and charge them to the tracker)."""
        self.tokens += int(tokens)
        if self.tracker is not None and self.tracker.num_params > 0:
            equivalent = self.num_params * self.tokens // self.tracker.num_params
            self.tracker.add_buffer_tokens(equivalent - self._charged)
            self._charged = equivalent

    @property
    def flops(self) -> int:
        """``2 N_source D_source`` so far."""
        return 2 * self.num_params * self.tokens


def resolve_device(device: str) -> Any:
    """A torch device for a reward model or judge.

    ``"auto"`` and ``"cuda"`` mean this process's GPU when there is one (the
    policy's, under a multi-process launcher: ``LOCAL_RANK``), ``"auto"``
    falls back to the CPU; ``"cpu"`` and ``"cuda:N"`` are taken as given.

    Raises:
        ValueError: ``"cuda"`` without a visible GPU, or an unknown device.
    """
    import os

    import torch

    if device in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        if device == "cuda":
            raise ValueError("reward device cuda but no CUDA device is visible")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown reward device {device!r}; use auto, cpu, cuda or cuda:N") from err


def resolve_dtype(dtype: str, device: Any) -> Any:
    """The torch dtype a reward model or judge loads in on ``device``.

    ``"auto"`` means bfloat16 on a GPU that supports it, else float32;
    ``"bfloat16"`` and ``"float32"`` are taken as given.
    """
    import torch

    from trainers.common.modeling import auto_dtype_name

    if dtype == "auto":
        dtype = auto_dtype_name(device.type == "cuda")
    return getattr(torch, dtype)


def _kinds_help() -> str:
    return ", ".join(f"{k}:PATH" if needs else k for k, (_, needs) in REWARD_KINDS.items())
