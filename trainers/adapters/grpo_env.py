"""Any gengym env as an ``environment_factory`` env of TRL's ``GRPOTrainer``.

TRL's GRPO trainer can roll out multi-turn episodes with tools: it makes one
env instance per rollout, calls ``reset(**row)`` with the dataset row, lets
the model call the env's public methods as tools, and asks ``get_reward()``
for the rollout's reward (see :mod:`trainers.adapters.trl_support` for the
exact contract of TRL 1.16). :class:`GengymToolEnv` maps a gengym env onto
that contract:

``reset(**row)``
    Resets the gengym env with ``row["seed"]`` and returns its first
    observation: the prompt text, and in image envs the image as a content
    block (``{"type": "image", "image": PIL.Image}``) before it.
``submit_answer(answer)``
    The one tool. Steps the answer through the env (the env's own verifier
    judges it) and returns the verdict, its reward and what the env shows
    next: the verifier's feedback and, while the episode runs, the next
    turn's text (GeneralPoints: "revise your answer"; V-IRL: the next rail
    point's prompt, with its street views in image envs).
``get_reward()``
    The episode return: the sum of the env rewards of every submitted
    answer. A rollout that submitted nothing is judged as one empty answer
    (the verifier's reward for an unreadable answer), so silence never
    scores better than a wrong answer.

Group seeding. GRPO compares several completions of the same prompt, so they
must start from the same state. TRL repeats each dataset row
``num_generations`` times and hands every copy to ``reset``; the adapter
seeds ``env.reset`` from the row's ``seed`` column only, so every member of a
group gets the same hand or route, and different rows different ones. Build
the rows with :func:`trainers.adapters.grpo_data.tool_prompt_dataset`, which
derives row ``i``'s seed as :func:`gengym_core.single_turn.episode_seed`
``(seed, i)``.

Everything an instance exposes besides the tool is a property or private, so
TRL turns nothing else into a tool. The env itself never imports torch.

Example:
    >>> factory = tool_env_factory("GeneralPoints-L-v0")  # doctest: +SKIP
    >>> trainer = GRPOTrainer(model, args=args, train_dataset=tool_prompt_dataset(
    ...     "GeneralPoints-L-v0", 256), environment_factory=factory)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gengym_core.chat import count_images, message_text

#: Longest text of a non-string tool argument that is passed on to the env.
MAX_ARGUMENT_CHARS = 65_536


@dataclass(frozen=True)
class ToolEnvConfig:
    """Which gengym env a :class:`GengymToolEnv` wraps, and how it talks to the model.

    Attributes:
        env_id: A registered gengym env id.
        env_kwargs: Extra ``gym.make`` keyword arguments (on top of the variant).
        variant: An evaluation variant of the id (``"id"``, ``"rule-ood"``,
            ``"visual-ood"``) or ``""``.
        images: Send observation images to the model as content blocks.
            ``None`` (default): yes for image ("VL") envs. ``False`` gives a
            text-only model the text of a VL env (which in GeneralPoints-VL
            does not list the cards).
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    variant: str = ""
    images: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` saying what to change (the id is checked when the env is made)."""
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError("env_id must name a gengym env, e.g. GeneralPoints-L-v0")
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"env_kwargs must be a mapping, got {self.env_kwargs!r}")
        if self.images not in (None, True, False):
            raise ValueError(f"images must be true, false or null, got {self.images!r}")


def _reset_seed(row: Mapping[str, Any]) -> int:
    if "seed" not in row:
        raise ValueError(
            "GengymToolEnv.reset needs a 'seed' column in the dataset row (the start state of the "
            "rollout group); build the dataset with trainers.adapters.tool_prompt_dataset. "
            f"Row columns: {sorted(row)}"
        )
    seed = row["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"the row's seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _answer_text(answer: Any) -> str:
    """A tool argument as the text the env judges.

    Models often pass the answer object itself instead of a JSON string;
    it is turned back into JSON so the verifier reads it as usual.
    """
    if isinstance(answer, str):
        return answer
    try:
        text = json.dumps(answer, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(answer) if isinstance(answer, (int, float, bool, type(None))) else ""
    return text[:MAX_ARGUMENT_CHARS]


def _image_block(image: np.ndarray) -> dict[str, Any]:
    from PIL import Image

    return {"type": "image", "image": Image.fromarray(np.asarray(image, dtype=np.uint8))}


class GengymToolEnv:
    """A gengym env behind TRL's ``environment_factory`` contract (see the module docstring).

    Args:
        config: Which env to wrap; or give its fields as keyword arguments.

    Raises:
        ValueError: Unknown env id or variant, or env settings the env refuses.
    """

    def __init__(self, config: ToolEnvConfig | None = None, /, **kwargs: Any) -> None:
        from gengym_core.registry import make
        from gengym_core.single_turn import resolve_env_kwargs

        if config is None:
            config = ToolEnvConfig(**kwargs)
        elif kwargs:
            raise TypeError(
                "pass either a ToolEnvConfig or its fields as keyword arguments, not both"
            )
        self._config = config
        self._env = make(config.env_id, **resolve_env_kwargs(config.env_id, config.env_kwargs, config.variant))
        has_image = "image" in getattr(self._env.observation_space, "spaces", {})
        self._images = has_image if config.images is None else config.images
        self._seed: int | None = None
        self._return = 0.0
        self._submissions = 0
        self._done = False
        self._success = False

    # ------------------------------------------------------------ TRL contract

    def reset(self, **row: Any) -> str | list[dict[str, Any]]:
        """Start the episode of this dataset row; return the first observation.

        Every column of the row arrives as a keyword argument; only ``seed``
        is read, so all copies of a row (one GRPO group) start alike.

        Returns:
            The prompt text, or in image envs a list of content blocks: the
            observation's images, then its text.

        Raises:
            ValueError: The row has no usable ``seed``.
        """
        seed = _reset_seed(row)
        obs, _ = self._env.reset(seed=seed)
        self._seed = seed
        self._return, self._submissions = 0.0, 0
        self._done = self._success = False
        if not self._images:
            return obs["text"]
        core = self._env.unwrapped
        images = core.chat_images()
        return [*(_image_block(image) for image in images), {"type": "text", "text": obs["text"]}]

    def submit_answer(self, answer: str) -> str | list:
        """Submit your answer to the task for verification.

        Args:
            answer: Your complete answer: the JSON object the task asks for, as text.

        Returns:
            The verdict and its reward, the verifier's feedback, and what to answer next while the episode continues.
        """
        if self._seed is None:
            return "No episode is running; nothing was judged."
        if self._done:
            return (
                f"The episode is already over ({'solved' if self._success else 'not solved'}); "
                "this answer was not judged."
            )
        text = self._step(_answer_text(answer))
        core = self._env.unwrapped
        if self._done:
            return text + (
                " The task is solved; the episode is over."
                if self._success
                else " The episode is over."
            )
        following = core.chat_messages()[-1]
        text = f"{text}\n\n{message_text(following)}"
        count = count_images([following]) if self._images else 0
        if not count:
            return text
        images = core.chat_images()[-count:]
        return [*(_image_block(image) for image in images), {"type": "text", "text": text}]

    def get_reward(self) -> float:
        """The episode return: the sum of the rewards of every submitted answer.

        A rollout that submitted nothing is judged once as an empty answer.

        Raises:
            RuntimeError: ``reset`` was never called.
        """
        if self._seed is None:
            raise RuntimeError("GengymToolEnv.get_reward before reset: no episode was played")
        if self._submissions == 0 and not self._done:
            self._step("")
        return float(self._return)

    # ------------------------------------------------- read-only views (no tools)

    @property
    def config(self) -> ToolEnvConfig:
        """Which env this adapter wraps."""
        return self._config

    @property
    def env(self) -> Any:
        """The wrapped gengym Gymnasium env."""
        return self._env

    @property
    def seed(self) -> int | None:
        """The reset seed of the current episode (``None`` before the first reset)."""
        return self._seed

    @property
    def success(self) -> bool:
        """Whether the episode was solved."""
        return self._success

    @property
    def done(self) -> bool:
        """Whether the episode ended (solved, or out of attempts)."""
        return self._done

    @property
    def submissions(self) -> int:
        """Answers judged in this episode (the empty answer of a silent rollout included)."""
        return self._submissions

    @property
    def episode_return(self) -> float:
        """The sum of the rewards so far (what :meth:`get_reward` returns once the rollout ends)."""
        return float(self._return)

    @property
    def transcript(self) -> list[dict[str, Any]]:
        """Every judged answer of the episode, from the env's protocol ``transcript()``."""
        return self._env.unwrapped.transcript()

    # ---------------------------------------------------------------- internals

    def _step(self, answer: str) -> str:
        _, reward, terminated, truncated, info = self._env.step(answer)
        self._submissions += 1
        self._return += float(reward)
        self._done = bool(terminated or truncated)
        self._success = bool(info.get("success", False))
        head = f"Verdict: {info['verdict']} (reward {float(reward):+g})."
        feedback = str(info.get("feedback", "")).strip()
        return f"{head} {feedback}" if feedback else head


def tool_env_factory(
    env_id: str,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    variant: str = "",
    images: bool | None = None,
) -> Callable[[], GengymToolEnv]:
    """An ``environment_factory`` for ``GRPOTrainer``: each call makes a fresh :class:`GengymToolEnv`.

    The settings are checked now (an env is made once and dropped), so a bad
    id or option fails before the trainer loads a model.

    Raises:
        TRLVersionError: The installed TRL cannot run the adapter.
        ValueError: Unknown env id or variant, or settings the env refuses.
    """
    from trainers.adapters.trl_support import require_trl_environment_factory

    require_trl_environment_factory()
    config = ToolEnvConfig(env_id, dict(env_kwargs or {}), variant, images)
    probe = GengymToolEnv(config)
    sends_images = probe._images
    probe.env.close()
    if sends_images:
        warnings.warn(
            f"{env_id}: images in tool-mode rollouts depend on TRL's VLM tool loop, which in TRL 1.16 "
            "fails after the first tool call for processors that are not Qwen-VL-like (checked with "
            "LLaVA: 'list' pixel_values in split_pixel_values_by_grid, and token_type_ids passed to "
            "generate for images returned by a tool). To train a VLM on an image env, use the "
            "single-turn path (trainers.adapters.single_turn_dataset + verifier_reward); see "
            "docs/integrations.md",
            UserWarning,
            stacklevel=2,
        )
    return functools.partial(GengymToolEnv, config)


def env_success(environments: list[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """A GRPO reward function that reports each rollout's success (1.0 or 0.0).

    Pass it in ``reward_funcs`` with weight 0 (``GRPOConfig(reward_weights=[0.0])``)
    to log the success rate as ``rewards/env_success/mean`` beside the env
    reward. Rollouts whose environment is not a :class:`GengymToolEnv` get
    ``None`` (ignored by TRL).
    """
    if environments is None:
        raise ValueError(
            "env_success needs GRPOTrainer(environment_factory=...): no environments were passed"
        )
    return [float(e.success) if isinstance(e, GengymToolEnv) else None for e in environments]
