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
    judges it) and returns the verdict, its reward and, while the episode
    runs, only the new turn of the env's chat session
    (:class:`gengym_core.session.ChatSession`): GeneralPoints: the
    verifier's feedback and "revise your answer"; V-IRL: the next rail
    point's observation (with its street views in image envs), or the
    feedback after a wrong answer. Nothing already in the conversation is
    repeated, so a V-IRL rollout grows linearly with its rail points.
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

Budget. TRL stops a rollout after ``max_tool_calling_iterations`` tool calls
and cuts tool results that no longer fit ``max_completion_length`` (after
the env already judged the answer). A V-IRL episode needs one call per rail
point. Given the ``GRPOConfig`` (``tool_env_factory(..., grpo_args=args)``),
the adapter plays the oracle's episode from each reset seed and warns
(once per kind) when a route needs more calls than allowed, or when its
oracle rollout (answers and tool results) would not fit the completion
length, estimated at :data:`CHARS_PER_TOKEN` characters a token.

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

from gengym_core.session import ChatSession, to_hf_messages

#: Longest text of a non-string tool argument that is passed on to the env.
MAX_ARGUMENT_CHARS = 65_536
#: Characters per token assumed when estimating whether a rollout fits the
#: completion length (English and JSON text with BPE tokenizers: about 3-4).
CHARS_PER_TOKEN = 4
#: Tokens assumed for the tool-call markup around each answer and result.
TOOL_CALL_OVERHEAD_TOKENS = 40
#: Warnings already given in this process (one per env id and kind).
_WARNED: set[tuple[str, str]] = set()


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
        max_tool_calls: TRL's ``max_tool_calling_iterations``; when set,
            resets warn if the episode needs more tool calls than this.
        max_completion_length: TRL's ``max_completion_length``; when set,
            resets warn if the oracle's rollout would not fit.
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    variant: str = ""
    images: bool | None = None
    max_tool_calls: int | None = None
    max_completion_length: int | None = None

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
        for name in ("max_tool_calls", "max_completion_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {value!r}")


@dataclass(frozen=True)
class RolloutNeeds:
    """What the oracle's rollout of one episode takes in TRL's tool loop.

    Attributes:
        tool_calls: Answers an episode solved without a mistake needs (V-IRL:
            one per rail point).
        completion_tokens: Estimated tokens of that rollout's completion: the
            answers, the tool results and the tool-call markup.
    """

    tool_calls: int
    completion_tokens: int


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


def _blocks(messages: list[dict[str, Any]], text: str | None = None) -> str | list[dict[str, Any]]:
    """Session messages as what TRL takes: plain text, or image blocks then the text."""
    hf, images = to_hf_messages(messages)
    texts = [part["text"] for m in hf for part in m["content"] if part["type"] == "text"]
    joined = "\n\n".join(t for t in ([text] if text else []) + texts if t)
    if not images:
        return joined
    return [*({"type": "image", "image": image} for image in images), {"type": "text", "text": joined}]


def _reply(verdict: str, reward: float, feedback: str, new: list[dict[str, Any]], *, done: bool,
           success: bool) -> str | list[dict[str, Any]]:
    """The tool result: verdict and reward, then the session's new turn (or how it ended)."""
    head = f"Verdict: {verdict} (reward {reward:+g})."
    if not done:
        return _blocks(new, head)
    ending = " The task is solved; the episode is over." if success else " The episode is over."
    return f"{head} {feedback}".rstrip() + ending if feedback else head + ending


def _text_length(result: str | list[dict[str, Any]]) -> int:
    if isinstance(result, str):
        return len(result)
    return sum(len(block.get("text", "")) for block in result)


def rollout_needs(session: ChatSession, seed: int) -> RolloutNeeds:
    """Play the oracle's episode from ``seed`` in ``session``; measure its tool rollout."""
    session.reset(seed=seed)
    core = session.env.unwrapped
    calls = chars = 0
    while not session.done:
        answer = core.oracle_answer()
        new, reward, done, info = session.step(answer)
        result = _reply(str(info.get("verdict")), reward, str(info.get("feedback", "")), new,
                        done=done, success=session.success)
        calls += 1
        chars += len(answer) + _text_length(result)
    tokens = -(-chars // CHARS_PER_TOKEN) + calls * TOOL_CALL_OVERHEAD_TOKENS
    return RolloutNeeds(calls, tokens)


def _warn_once(env_id: str, kind: str, message: str) -> None:
    if (env_id, kind) in _WARNED:
        return
    _WARNED.add((env_id, kind))
    warnings.warn(message, UserWarning, stacklevel=3)


def check_rollout_budget(config: ToolEnvConfig, needs: RolloutNeeds, seed: int | str) -> None:
    """Warn (once per env id and kind) when TRL's limits cannot hold the oracle's rollout."""
    calls, limit = needs.tool_calls, config.max_tool_calls
    if limit is not None and calls > limit:
        _warn_once(
            config.env_id, "calls",
            f"{config.env_id}: the episode of seed {seed} needs {calls} tool calls (one per answer, "
            f"without mistakes), but max_tool_calling_iterations={limit}: TRL ends the rollout "
            f"before the episode can be solved. Set max_tool_calling_iterations >= {calls} "
            "(docs/integrations.md lists settings that fit).",
        )
    tokens, length = needs.completion_tokens, config.max_completion_length
    if length is not None and tokens > length:
        _warn_once(
            config.env_id, "length",
            f"{config.env_id}: the oracle's rollout of seed {seed} takes about {tokens} completion "
            f"tokens (answers, tool results and tool-call markup, at ~{CHARS_PER_TOKEN} characters "
            f"a token), more than max_completion_length={length}: TRL drops tool results that do "
            "not fit, after the env judged the answer. Raise max_completion_length "
            "(docs/integrations.md lists settings that fit).",
        )


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
        self._session = ChatSession(config.env_id, env=self._env, images=self._images)
        self._probe: ChatSession | None = None
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
        cfg = self._config
        if cfg.max_tool_calls is not None or cfg.max_completion_length is not None:
            check_rollout_budget(cfg, self._needs(seed), seed)
        opening = self._session.reset(seed=seed)
        self._seed = seed
        self._return, self._submissions = 0.0, 0
        self._done = self._success = False
        return _blocks(opening)

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
        return self._step(_answer_text(answer))

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

    def _step(self, answer: str) -> str | list[dict[str, Any]]:
        new, reward, done, info = self._session.step(answer)
        self._submissions += 1
        self._return += reward
        self._done = done
        self._success = bool(info.get("success", False))
        feedback = str(info.get("feedback", "")).strip()
        return _reply(str(info["verdict"]), reward, feedback, new, done=done, success=self._success)

    def _needs(self, seed: int) -> RolloutNeeds:
        """The oracle's rollout from ``seed``, played in a text-only scratch session."""
        if self._probe is None:
            cfg = self._config
            self._probe = ChatSession(cfg.env_id, variant=cfg.variant, images=False, **cfg.env_kwargs)
        return rollout_needs(self._probe, seed)


def tool_env_factory(
    env_id: str,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    variant: str = "",
    images: bool | None = None,
    grpo_args: Any = None,
    probe_episodes: int = 16,
) -> Callable[[], GengymToolEnv]:
    """An ``environment_factory`` for ``GRPOTrainer``: each call makes a fresh :class:`GengymToolEnv`.

    The settings are checked now (an env is made once and dropped), so a bad
    id or option fails before the trainer loads a model. With ``grpo_args``
    (the run's ``GRPOConfig``), its ``max_tool_calling_iterations`` and
    ``max_completion_length`` are checked against the oracle's rollouts of
    ``probe_episodes`` episodes now, and against each episode at its reset
    (warnings, see the module docstring).

    Raises:
        TRLVersionError: The installed TRL cannot run the adapter.
        ValueError: Unknown env id or variant, or settings the env refuses.
    """
    from gengym_core.single_turn import episode_seed
    from trainers.adapters.trl_support import require_trl_environment_factory

    require_trl_environment_factory()
    limits = {}
    if grpo_args is not None:
        limits = {
            "max_tool_calls": getattr(grpo_args, "max_tool_calling_iterations", None),
            "max_completion_length": getattr(grpo_args, "max_completion_length", None),
        }
    config = ToolEnvConfig(env_id, dict(env_kwargs or {}), variant, images, **limits)
    probe = GengymToolEnv(config)
    sends_images = probe._images
    if limits and probe_episodes > 0:
        needs = [probe._needs(episode_seed(0, i)) for i in range(probe_episodes)]
        worst = RolloutNeeds(max(n.tool_calls for n in needs), max(n.completion_tokens for n in needs))
        check_rollout_budget(config, worst, f"(worst of {probe_episodes} probed episodes)")
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


def suggested_tool_settings(
    env_id: str,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    variant: str = "",
    episodes: int = 16,
) -> RolloutNeeds:
    """The most tool calls and completion tokens the oracle's rollouts of ``episodes`` episodes take.

    A policy that makes mistakes needs more: one call per extra answer, and
    its reasoning's tokens. ``examples/grpo_trl.py`` adds room for one wrong
    answer and half again the tokens.

    Raises:
        ValueError: Unknown env id or variant, or settings the env refuses.
    """
    from gengym_core.single_turn import episode_seed

    session = ChatSession(env_id, variant=variant, images=False, **dict(env_kwargs or {}))
    try:
        needs = [rollout_needs(session, episode_seed(0, i)) for i in range(max(1, episodes))]
    finally:
        session.close()
    return RolloutNeeds(max(n.tool_calls for n in needs), max(n.completion_tokens for n in needs))


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
