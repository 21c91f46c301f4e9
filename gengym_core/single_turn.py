"""The single-turn "prompt, reward function" view of every gengym env.

Many RL libraries take no environment at all: they sample a prompt from a
dataset, generate an answer, and call a reward function on the text. This
module turns any gengym env into such data. Each :class:`SingleTurnTask` is
one task step of an episode -- the conversation the model would be shown
(with its images) -- plus a *scorer*: a small frozen object whose
``score(answer)`` returns exactly the reward the env would give that answer
as the first attempt at that step.

Why scorers are frozen verifier states rather than live envs: a reward
function runs in data-loader workers, in other processes, after the env that
made the task is gone. A scorer holds only what the family's pure verifier
needs (the dealt hand and rules; the gold action and intersection flag), so
it is cheap, picklable, calls no Gymnasium code, and can be written into a
dataset column as JSON (:meth:`Scorer.to_json`, :func:`scorer_from_json`) --
JSON rather than pickle, because a dataset file is untrusted input.

* GeneralPoints (:class:`GeneralPointsScorer`): the hand, target, rule,
  whether cards are judged, and the rewards; scoring calls
  :func:`gym_generalpoints.verifier.verify`.
* V-IRL (:class:`VirlScorer`): the gold action, the true intersection flag,
  the action space and the rewards; scoring calls
  :func:`gym_virl.verifier.judge_answer`.
* Any other family that follows the env protocol (:class:`ReplayScorer`):
  re-creates the env, replays the oracle to the step, and steps the answer.
  Slower, but needs no family-specific code.

Episodes are reset with :func:`episode_seed` ``(seed, episode)`` -- the same
derivation as the oracle SFT data of ``trainers.data``, so task ``e`` of a
single-turn set and episode ``e`` of an oracle dataset with the same seed
start from the same state. Multi-step episodes (V-IRL: one step per rail
point) are walked with the oracle; every oracle answer must be accepted.

Like the rest of ``gengym_core`` this module never imports torch or any
training library; the env packages are imported only inside the functions
that need them.

Example:
    >>> task = next(iter_single_turn_tasks("GeneralPoints-L-v0", 1, seed=0))
    >>> task.score(task.oracle_answer)
    5.0
    >>> task.score("no idea")
    -3.0
    >>> scorer_from_json(task.scorer.to_json()) == task.scorer
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from gengym_core.chat import Message, copy_messages, message_text

#: Longest scorer JSON that :func:`scorer_from_json` reads (characters).
MAX_SCORER_JSON_CHARS = 65_536


def episode_seed(seed: int, episode: int) -> int:
    """The ``reset`` seed of episode ``episode`` of a task set with seed ``seed``.

    Mixed through :class:`numpy.random.SeedSequence`, so neighbouring sets
    (seed 0 and seed 1) share no episodes, unlike ``seed + episode``. The
    oracle SFT data and the preference pairs of ``trainers`` reset their
    episodes with this same function.

    Example:
        >>> episode_seed(0, 0) == episode_seed(0, 0) != episode_seed(1, 0)
        True
    """
    return int(np.random.SeedSequence([seed, episode]).generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class Judged:
    """What a scorer concluded about one answer.

    Attributes:
        reward: The env's reward for the answer.
        verdict: The family's verdict category (``"correct"`` when accepted).
        feedback: The verifier's feedback, in words meant for the model.
    """

    reward: float
    verdict: str
    feedback: str


@runtime_checkable
class Scorer(Protocol):
    """A frozen verifier state: ``scorer(answer)`` is the env's reward for ``answer``."""

    family: ClassVar[str]

    def __call__(self, answer: Any) -> float: ...

    def judge(self, answer: Any) -> Judged: ...

    def to_json(self) -> str: ...


class _FrozenScorer:
    """What every scorer below shares: calling it scores, and its fields are its JSON form."""

    family: ClassVar[str]

    def judge(self, answer: Any) -> Judged:
        raise NotImplementedError

    def __call__(self, answer: Any) -> float:
        return self.judge(answer).reward

    def to_json(self) -> str:
        """The scorer as JSON text; :func:`scorer_from_json` reads it back."""
        data = {"family": self.family}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            data[f.name] = dict(value) if isinstance(value, Mapping) else value
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class GeneralPointsScorer(_FrozenScorer):
    """Scores an answer to one GeneralPoints hand, as the env's first attempt would.

    Attributes:
        cards: The dealt cards as codes (``"KD"``), in the order shown.
        target: The number to make.
        face_card_values: What J, Q and K count.
        check_cards: Whether the answer's ``cards`` field is judged (image mode).
        check_numbers: Whether its ``number`` field is judged.
        check_stated_result: Whether a trailing ``= N`` is judged.
        rewards: Reward of each verdict (fields of
            ``gym_generalpoints.GeneralPointsRewards``).
        solutions: Known solutions; only kept when the optional prefix reward
            is on, since only it reads them.
        compact: The answer is in the compact text format
            (``gym_generalpoints.compact``: ``numbers:formula``).
    """

    family: ClassVar[str] = "generalpoints"

    cards: tuple[str, ...]
    target: int
    face_card_values: tuple[int, int, int]
    check_cards: bool
    rewards: Mapping[str, float | None] = field(hash=False)
    solutions: tuple[str, ...] = ()
    check_numbers: bool = True
    check_stated_result: bool = True
    compact: bool = False

    def judge(self, answer: Any) -> Judged:
        """Judge one raw answer with :func:`gym_generalpoints.verifier.verify`."""
        from gym_generalpoints.cards import parse_hand
        from gym_generalpoints.verifier import GeneralPointsRewards, Hand, verify

        hand = Hand.from_cards(
            parse_hand(list(self.cards)), target=self.target, face_card_values=self.face_card_values
        )
        if self.compact:
            from gym_generalpoints import compact

            judged = compact.judge(
                hand,
                answer,
                rewards=GeneralPointsRewards(**self.rewards),
                check_numbers=self.check_numbers,
                check_stated_result=self.check_stated_result,
                solutions=self.solutions,
            )
            return Judged(float(judged.reward), judged.verdict, compact.feedback(hand, judged))
        judgement = verify(
            hand,
            answer,  # as the env passes it: non-strings are judged illegal
            rewards=GeneralPointsRewards(**self.rewards),
            check_cards=self.check_cards,
            check_numbers=self.check_numbers,
            check_stated_result=self.check_stated_result,
            solutions=self.solutions,
        )
        return Judged(float(judgement.reward), judgement.verdict, judgement.feedback)

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> GeneralPointsScorer:
        from gym_generalpoints.cards import parse_hand
        from gym_generalpoints.verifier import GeneralPointsRewards

        cards = _str_list(data, "cards")
        parse_hand(cards)  # raises ValueError naming a bad code or a repeated card
        faces = _int_list(data, "face_card_values")
        if len(faces) != 3:
            raise ValueError("scorer JSON: face_card_values must list three numbers (J, Q, K)")
        rewards = _rewards(data)
        try:
            GeneralPointsRewards(**rewards)
        except TypeError as err:
            raise ValueError(f"scorer JSON: bad rewards: {err}") from None
        return cls(
            cards=tuple(cards),
            target=_int(data, "target"),
            face_card_values=tuple(faces),  # type: ignore[arg-type]
            check_cards=_bool(data, "check_cards"),
            rewards=rewards,
            solutions=tuple(_str_list(data, "solutions")) if "solutions" in data else (),
            # Scorers written before these settings judged both.
            check_numbers=_bool(data, "check_numbers") if "check_numbers" in data else True,
            check_stated_result=_bool(data, "check_stated_result") if "check_stated_result" in data else True,
            compact=_bool(data, "compact") if "compact" in data else False,
        )


@dataclass(frozen=True)
class VirlScorer(_FrozenScorer):
    """Scores an answer at one V-IRL rail point, as the env's first try there would.

    Attributes:
        gold_action: The one right action, canonical (``"turn_direction(west)"``).
        at_intersection: Whether the rail point is at an intersection.
        action_space: ``"absolute"`` or ``"relative"``.
        rewards: Reward of each verdict (fields of ``gym_virl.VirlRewards``).
    """

    family: ClassVar[str] = "virl"

    gold_action: str
    at_intersection: bool
    action_space: str
    rewards: Mapping[str, float] = field(hash=False)

    def judge(self, answer: Any) -> Judged:
        """Judge one raw answer with :func:`gym_virl.verifier.judge_answer`."""
        from gym_virl.verifier import VirlRewards, judge_answer

        # As VirlEnv.step does: the answer itself is judged (non-strings are illegal).
        judgement = judge_answer(answer, self.gold_action, self.at_intersection, self.action_space)
        reward = VirlRewards(**self.rewards).for_verdict(judgement.verdict)
        return Judged(float(reward), judgement.verdict, judgement.feedback)

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> VirlScorer:
        from gym_virl.verifier import TURN_WORDS, ActionFormatError, VirlRewards, parse_action

        space = _str(data, "action_space")
        if space not in TURN_WORDS:
            raise ValueError(
                f"scorer JSON: action_space must be one of {tuple(TURN_WORDS)}, got {space!r}"
            )
        gold = _str(data, "gold_action")
        try:
            canonical = parse_action(gold, space)
        except ActionFormatError as err:
            raise ValueError(f"scorer JSON: gold_action: {err}") from None
        rewards = _rewards(data)
        try:
            VirlRewards(**rewards)
        except TypeError as err:
            raise ValueError(f"scorer JSON: bad rewards: {err}") from None
        return cls(canonical, _bool(data, "at_intersection"), space, rewards)


@dataclass(frozen=True)
class ReplayScorer(_FrozenScorer):
    """Scores an answer by replaying the episode in a fresh env: works for any family.

    The env ``env_id`` (with ``env_kwargs``) is reset with ``episode_seed``,
    the oracle's answers are stepped for the first ``step`` task steps, and
    then ``answer`` is stepped; its reward is the score. Envs are cached per
    process (one per id and kwargs), so only the replay is paid per call.

    Attributes:
        env_id: A registered gengym env id.
        env_kwargs: ``gym.make`` keyword arguments (JSON-serialisable).
        episode_seed: What ``reset`` gets.
        step: Task steps solved by the oracle before the answer.
    """

    family: ClassVar[str] = "replay"

    env_id: str
    env_kwargs: Mapping[str, Any] = field(hash=False)
    episode_seed: int
    step: int = 0

    def judge(self, answer: Any) -> Judged:
        """Replay the episode to the step and step ``answer`` through the env."""
        env = _cached_env(self.env_id, json.dumps(dict(self.env_kwargs), sort_keys=True))
        env.reset(seed=self.episode_seed)
        core = env.unwrapped
        for k in range(self.step):
            oracle = core.oracle_answer()
            _, _, terminated, truncated, info = env.step(oracle)
            if info.get("verdict") != "correct" or terminated or truncated:
                raise RuntimeError(
                    f"{self.env_id}: replaying step {k} of episode seed {self.episode_seed} failed "
                    f"({info.get('verdict')}); the episode has fewer than {self.step + 1} steps"
                )
        _, reward, _, _, info = env.step(answer)
        return Judged(float(reward), str(info.get("verdict", "")), str(info.get("feedback", "")))

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> ReplayScorer:
        from gengym_core.registry import gengym_env_ids

        env_id = _str(data, "env_id")
        if env_id not in gengym_env_ids():
            raise ValueError(f"scorer JSON: unknown gengym env {env_id!r}")
        step = _int(data, "step")
        if step < 0:
            raise ValueError("scorer JSON: step must be >= 0")
        return cls(env_id, _mapping(data, "env_kwargs"), _int(data, "episode_seed"), step)


_SCORERS: dict[str, type] = {
    cls.family: cls for cls in (GeneralPointsScorer, VirlScorer, ReplayScorer)
}
_ENV_CACHE: dict[tuple[str, str], Any] = {}


def _cached_env(env_id: str, kwargs_json: str) -> Any:
    key = (env_id, kwargs_json)
    if key not in _ENV_CACHE:
        from gengym_core.registry import make

        if len(_ENV_CACHE) >= 8:  # a bound: data sets mix few env configurations
            _ENV_CACHE.pop(next(iter(_ENV_CACHE))).close()
        _ENV_CACHE[key] = make(env_id, **json.loads(kwargs_json))
    return _ENV_CACHE[key]


# ----------------------------------------------------------------- JSON form


def scorer_from_json(text: str) -> Scorer:
    """Rebuild a scorer from :meth:`Scorer.to_json` text, checking every field.

    Raises:
        ValueError: The text is not a scorer: not JSON, too long, an unknown
            family, a missing or ill-typed field, or values the family's
            rules reject (unknown card codes, an action outside the space).
    """
    if not isinstance(text, str):
        raise ValueError(f"scorer JSON must be text, got {type(text).__name__}")
    if len(text) > MAX_SCORER_JSON_CHARS:
        raise ValueError(
            f"scorer JSON is {len(text)} characters long; at most {MAX_SCORER_JSON_CHARS} are read"
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"scorer JSON does not parse: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("scorer JSON must be an object")
    family = data.get("family")
    if family not in _SCORERS:
        raise ValueError(f"scorer JSON: unknown family {family!r}; known: {', '.join(_SCORERS)}")
    known = {f.name for f in fields(_SCORERS[family])} | {"family"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"scorer JSON: unknown field(s) {unknown} for family {family!r}")
    return _SCORERS[family]._from_fields(data)


def _need(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise ValueError(f"scorer JSON lacks the field {key!r}")
    return data[key]


def _str(data: dict[str, Any], key: str) -> str:
    value = _need(data, key)
    if not isinstance(value, str):
        raise ValueError(f"scorer JSON: {key} must be a string")
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = _need(data, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"scorer JSON: {key} must be a whole number")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = _need(data, key)
    if not isinstance(value, bool):
        raise ValueError(f"scorer JSON: {key} must be true or false")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = _need(data, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"scorer JSON: {key} must be a list of strings")
    return value


def _int_list(data: dict[str, Any], key: str) -> list[int]:
    value = _need(data, key)
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"scorer JSON: {key} must be a list of whole numbers")
    return value


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = _need(data, key)
    if not isinstance(value, dict):
        raise ValueError(f"scorer JSON: {key} must be an object")
    for name, v in value.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"scorer JSON: {key}.{name} must be finite")
    return value


def _rewards(data: dict[str, Any]) -> dict[str, Any]:
    rewards = _mapping(data, "rewards")
    for name, value in rewards.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number or (value is None and name == "prefix")):
            raise ValueError(f"scorer JSON: rewards.{name} must be a number, got {value!r}")
    return rewards


# ------------------------------------------------------- scorers of live envs


def _gp_scorer(env: Any, info: dict[str, Any]) -> GeneralPointsScorer:
    config = env.unwrapped.config
    rewards = asdict(config.rewards)
    return GeneralPointsScorer(
        cards=tuple(info["hand"]),
        target=int(config.target),
        face_card_values=tuple(int(v) for v in config.face_card_values),  # type: ignore[arg-type]
        check_cards=bool(config.cards_checked),
        rewards=rewards,
        solutions=tuple(env.unwrapped.solutions()) if rewards.get("prefix") is not None else (),
        check_numbers=bool(config.numbers_checked),
        check_stated_result=bool(config.check_stated_result),
        compact=bool(config.compact),
    )


def _virl_scorer(env: Any, info: dict[str, Any]) -> VirlScorer:
    # The info (of reset or of the latest step) describes the point the env is at now.
    return VirlScorer(
        gold_action=info["gold_action"],
        at_intersection=bool(info["at_intersection"]),
        action_space=info["action_space"],
        rewards=asdict(env.unwrapped.config.rewards),
    )


#: Env package -> builder of a frozen scorer from the live env and its latest info.
_FROZEN_SCORERS = {"gym_generalpoints": _gp_scorer, "gym_virl": _virl_scorer}


def scorer_for(
    env: Any,
    info: dict[str, Any],
    *,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    reset_seed: int,
    step: int,
) -> Scorer:
    """A scorer for the env's current task step.

    Uses the family's frozen verifier state where one is known, else a
    :class:`ReplayScorer` (which needs ``env_id``, ``env_kwargs``,
    ``reset_seed`` and ``step`` to rebuild the state). Either way the scorer
    is checked to accept the env's oracle answer.

    Raises:
        RuntimeError: The scorer rejects the oracle's answer (an env bug).
    """
    package = type(env.unwrapped).__module__.split(".")[0]
    build = _FROZEN_SCORERS.get(package)
    scorer: Scorer
    if build is not None:
        scorer = build(env, info)
    else:
        scorer = ReplayScorer(env_id, dict(env_kwargs), int(reset_seed), int(step))
    oracle = env.unwrapped.oracle_answer()
    judged = scorer.judge(oracle)
    if judged.verdict != "correct":
        raise RuntimeError(
            f"{env_id}: the single-turn scorer rejects the oracle's answer {oracle!r} "
            f"({judged.verdict}: {judged.feedback})"
        )
    return scorer


# --------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class SingleTurnTask:
    """One task step of a gengym episode as a prompt and a reward function.

    Attributes:
        env_id: The env id the task comes from.
        env_kwargs: Its ``gym.make`` keyword arguments (variant included).
        seed: Seed of the task set.
        episode: Episode index within the set.
        episode_seed: What ``reset`` got (:func:`episode_seed`).
        step: Task step within the episode (0 for GeneralPoints; the rail
            point for V-IRL).
        messages: The conversation the model answers (content-parts form of
            :mod:`gengym_core.chat`, ending with the user turn).
        images: The images its placeholders refer to, in order (``uint8``
            ``(H, W, 3)`` arrays); empty for text envs.
        scorer: ``scorer(answer)`` is the env's reward for ``answer``.
        oracle_answer: An answer the scorer accepts.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    seed: int
    episode: int
    episode_seed: int
    step: int
    messages: list[Message]
    images: list[np.ndarray]
    scorer: Scorer
    oracle_answer: str

    @property
    def prompt(self) -> str:
        """The text of the last user turn (the env's observation text)."""
        return message_text(self.messages[-1])

    def score(self, answer: Any) -> float:
        """The env's reward for ``answer`` at this step (pure; never raises on model text)."""
        return self.scorer(answer)

    def judge(self, answer: Any) -> Judged:
        """Reward, verdict and feedback for ``answer``."""
        return self.scorer.judge(answer)


def resolve_env_kwargs(
    env_id: str, env_kwargs: Mapping[str, Any] | None = None, variant: str = ""
) -> dict[str, Any]:
    """The ``gym.make`` kwargs of an evaluation variant, with ``env_kwargs`` on top.

    Raises:
        ValueError: Unknown env id, or a variant the id does not have.
    """
    from gengym_core.registry import variants_of

    kwargs: dict[str, Any] = {}
    if variant:
        variants = variants_of(env_id)
        if variant not in variants:
            raise ValueError(
                f"{env_id} has no variant {variant!r}; it has: {', '.join(variants) or 'none'}"
            )
        kwargs.update(variants[variant])
    kwargs.update(env_kwargs or {})
    return kwargs


def iter_single_turn_tasks(
    env_id: str,
    num_tasks: int,
    *,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    variant: str = "",
    max_steps_per_episode: int | None = None,
) -> Iterator[SingleTurnTask]:
    """Yield single-turn tasks of an env, in order, until ``num_tasks``.

    Episode ``e`` is reset with :func:`episode_seed` ``(seed, e)``; every
    task step of it (up to ``max_steps_per_episode``) is one task, walked
    with the oracle, whose answers must be accepted.

    Args:
        env_id: A registered gengym env id.
        num_tasks: Tasks to yield.
        seed: Seed of the task set.
        env_kwargs: Extra ``gym.make`` keyword arguments (on top of the variant).
        variant: An evaluation variant (``"id"``, ``"rule-ood"``, ``"visual-ood"``) or ``""``.
        max_steps_per_episode: At most this many tasks per episode (``None``:
            all; ``1``: only each episode's start state).

    Raises:
        ValueError: Bad arguments, unknown id or variant, settings the env refuses.
        RuntimeError: The oracle's answer is rejected (an env bug).
    """
    from gengym_core.registry import make

    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if max_steps_per_episode is not None and max_steps_per_episode < 1:
        raise ValueError(
            f"max_steps_per_episode must be >= 1 or None, got {max_steps_per_episode!r}"
        )
    kwargs = resolve_env_kwargs(env_id, env_kwargs, variant)
    env = make(env_id, **kwargs)
    produced = episode = 0
    try:
        while produced < num_tasks:
            reset_seed = episode_seed(seed, episode)
            _, info = env.reset(seed=reset_seed)
            step, done = 0, False
            while not done and produced < num_tasks:
                if max_steps_per_episode is not None and step >= max_steps_per_episode:
                    break
                yield _task_here(env, info, env_id, kwargs, seed, episode, reset_seed, step)
                produced += 1
                info, done = _oracle_step(env, env_id, reset_seed, step)
                step += 1
            episode += 1
    finally:
        env.close()


def _task_here(
    env: Any, info: dict[str, Any], env_id: str, kwargs: dict[str, Any], seed: int, episode: int,
    reset_seed: int, step: int,
) -> SingleTurnTask:
    """The task at the env's current state (``info``: the latest reset or step info)."""
    core = env.unwrapped
    scorer = scorer_for(env, info, env_id=env_id, env_kwargs=kwargs, reset_seed=reset_seed, step=step)
    return SingleTurnTask(
        env_id=env_id,
        env_kwargs=dict(kwargs),
        seed=seed,
        episode=episode,
        episode_seed=reset_seed,
        step=step,
        messages=copy_messages(core.chat_messages()),
        images=[np.asarray(image, dtype=np.uint8) for image in core.chat_images()],
        scorer=scorer,
        oracle_answer=core.oracle_answer(),
    )


def _oracle_step(env: Any, env_id: str, reset_seed: int, step: int) -> tuple[dict[str, Any], bool]:
    """Step the oracle's answer; return the step info and whether the episode ended."""
    _, _, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    if info.get("verdict") != "correct":
        raise RuntimeError(
            f"{env_id} (episode seed {reset_seed}, step {step}): the env rejects the oracle's answer "
            f"({info.get('verdict')}: {info.get('feedback')})"
        )
    return info, bool(terminated or truncated)


def single_turn_task(
    env: Any,
    episode: int,
    *,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    seed: int = 0,
    step: int | str = 0,
) -> SingleTurnTask:
    """Task ``episode`` of a task set, by index: a pure function of ``(seed, episode, step)``.

    The random-access counterpart of :func:`iter_single_turn_tasks` (same
    episode seeds, same tasks). ``env`` is an env made with ``env_id`` and
    ``env_kwargs`` (reused across calls; reset here).

    Args:
        step: Which task step of the episode: an index, or ``"random"`` for
            one drawn uniformly from the episode's steps with a generator
            seeded by ``(seed, episode)`` (V-IRL: any rail point; one-step
            families: always 0).

    Raises:
        ValueError: A negative episode, an unknown ``step`` or one past the
            episode's end.
        RuntimeError: The oracle's answer is rejected (an env bug).
    """
    if isinstance(episode, bool) or not isinstance(episode, int) or episode < 0:
        raise ValueError(f"episode must be a non-negative integer, got {episode!r}")
    reset_seed = episode_seed(seed, episode)
    kwargs = dict(env_kwargs)
    if step == "random":
        _, info = env.reset(seed=reset_seed)
        length, done = 0, False
        while not done:
            info, done = _oracle_step(env, env_id, reset_seed, length)
            length += 1
        rng = np.random.default_rng(np.random.SeedSequence([seed, episode, 1]))
        step = int(rng.integers(length))
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer or 'random', got {step!r}")
    _, info = env.reset(seed=reset_seed)
    for k in range(step):
        info, done = _oracle_step(env, env_id, reset_seed, k)
        if done:
            raise ValueError(f"{env_id}: episode {episode} has only {k + 1} task steps, not {step + 1}")
    return _task_here(env, info, env_id, kwargs, seed, episode, reset_seed, step)
