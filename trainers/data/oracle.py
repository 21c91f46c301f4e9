"""Supervised fine-tuning data from an env's oracle, re-checked by its verifier.

The paper's SFT data are optimal single-turn prompt/answer pairs. gengym
makes them from the env itself, so they exist for every registered id and
every rule or visual variant: reset the env, take the conversation it would
show a model (:meth:`~gengym_core.protocol.GengymEnv.chat_messages`, with
the images of :meth:`~gengym_core.protocol.GengymEnv.chat_images`), ask the
oracle for the answer and step that answer through the env. Only an answer
the verifier accepts is kept -- an example is never written on the oracle's
word alone.

Episodes and examples:

* Every episode is reset with a seed derived from ``(seed, episode)``
  (:func:`episode_seed`), so an example is a pure function of the settings
  and its position: the same settings give the same dataset, and any example
  can be replayed alone (:func:`verify_example`).
* An episode with several task steps (V-IRL: one per rail point of the
  route) gives one example per step, walked with the oracle in order; every
  step's answer is stepped and must be judged ``correct``. The last episode
  is cut when ``num_examples`` is reached, so it may contribute only its
  first steps.
* ``multi_turn=True`` makes *revision dialogues* instead: at each step a
  wrong answer (:meth:`~gengym_core.protocol.GengymEnv.sample_wrong_answer`,
  which the verifier must reject), the verifier's feedback as the next user
  turn, then the oracle's answer (which it must accept). The conversation is
  the env's own chat up to the feedback plus the corrected answer.

Columns (:data:`FEATURES`):

``messages``
    The conversation in "content parts" form (:mod:`gengym_core.chat`), the
    form HF processors and TRL's vision-language SFT take, ending with the
    oracle's answer as the last assistant turn. Image parts are
    placeholders for the ``images`` column.
``images``
    PIL images, in placeholder order (stored losslessly as PNG); an empty
    list for text envs.
``env_id``, ``env_kwargs`` (JSON text of the ``gym.make`` kwargs, variant
included), ``variant``, ``seed`` (of the dataset), ``episode``,
``episode_seed`` (what ``reset`` got), ``step`` (task step in the episode),
``verdicts`` and ``rewards`` (of each assistant turn, oldest first; the last
is always ``"correct"``), ``answer`` (the final answer's text).

Why one stored format for text and image envs: the conversation is kept as
the env produced it (content parts), so that datasets of the four tasks share
one schema and a VLM can be trained on a text task too. Text-only chat
templates want ``content`` as a plain string; the SFT collator converts when
it feeds a text model (:func:`gengym_core.chat.to_text_only`), and
:func:`to_text_only_dataset` gives the plain-string form TRL's stock text
pipeline reads, for use outside gengym.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gengym_core.chat import Message, assistant_message, copy_messages, message_text
from gengym_core.single_turn import episode_seed, resolve_env_kwargs

#: Examples turned into one Arrow table at a time (bounds the memory of
#: not-yet-encoded images).
_CHUNK = 256


_BUDGET_HINT = (
    "{env_id}: after one wrong answer the env's budget leaves no verified turn for the correction; give it "
    "at least 2 attempts per step (GeneralPoints: verify_iter, V-IRL: tries_per_point)"
)


class OracleError(RuntimeError):
    """The env's oracle or wrong-answer sampler broke its contract (an env bug)."""


@dataclass(frozen=True)
class OracleDataConfig:
    """What oracle dataset to build.

    Attributes:
        env_id: A registered gengym env id.
        num_examples: Examples to write.
        seed: Seed of the whole dataset; episode ``e`` is reset with
            :func:`episode_seed` ``(seed, e)``.
        env_kwargs: Extra ``gym.make`` keyword arguments (rule or visual
            variants, image size...). Applied on top of ``variant``.
        variant: Name of an evaluation variant of the env id (``"id"``,
            ``"rule-ood"``, ``"visual-ood"``, see
            :func:`gengym_core.registry.variants_of`), or ``""`` for none.
        multi_turn: Revision dialogues (wrong answer, feedback, corrected
            answer) instead of single-turn optimal answers.
        wrong_verdict: Verdict category of the wrong answers in revision
            dialogues (e.g. ``"wrong_value"``); ``""`` draws an applicable
            one at random each time.
    """

    env_id: str
    num_examples: int = 1000
    seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    multi_turn: bool = False
    wrong_verdict: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` saying what to change (env id and variant are checked when built)."""
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError("env_id must name a gengym env, e.g. GeneralPoints-L-v0")
        if isinstance(self.num_examples, bool) or not isinstance(self.num_examples, int) or self.num_examples < 1:
            raise ValueError(f"num_examples must be a positive integer, got {self.num_examples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a mapping, got {self.env_kwargs!r}")
        if self.wrong_verdict and not self.multi_turn:
            raise ValueError("wrong_verdict only applies to revision dialogues: set multi_turn too")
        try:
            json.dumps(self.env_kwargs)
        except TypeError as err:
            raise ValueError(f"env_kwargs must be JSON-serialisable (they are stored with the data): {err}") from None

    def make_kwargs(self) -> dict[str, Any]:
        """The ``gym.make`` kwargs: the variant's, then ``env_kwargs`` on top.

        Raises:
            ValueError: Unknown env id or a variant the id does not have.
        """
        return resolve_env_kwargs(self.env_id, self.env_kwargs, self.variant)


def _wrong_answer_rng(seed: int, episode: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, episode, 1]))


def _json_kwargs(kwargs: dict[str, Any]) -> str:
    """Canonical JSON of make kwargs (tuples become lists; keys sorted)."""
    return json.dumps(kwargs, sort_keys=True)


def iter_oracle_examples(config: OracleDataConfig) -> Iterator[dict[str, Any]]:
    """Yield verified examples, in order, until ``config.num_examples``.

    Images are yielded as ``uint8`` arrays; :func:`build_oracle_dataset`
    stores them as PIL images.

    Raises:
        ValueError: Unknown env id or variant, or env settings the env
            refuses; a revision dialogue the env's budget cannot hold (the
            wrong answer already ends the episode).
        OracleError: The oracle's answer is not accepted, or a "wrong"
            answer is accepted: the env is broken, nothing is written.
    """
    from gengym_core.registry import make

    kwargs = config.make_kwargs()
    env = make(config.env_id, **kwargs)
    core = env.unwrapped
    if config.multi_turn and not callable(getattr(core, "sample_wrong_answer", None)):
        raise ValueError(
            f"{config.env_id} cannot make revision dialogues: its env has no sample_wrong_answer()"
        )
    kwargs_text = _json_kwargs(kwargs)
    produced = 0
    episode = 0
    try:
        while produced < config.num_examples:
            reset_seed = episode_seed(config.seed, episode)
            rng = _wrong_answer_rng(config.seed, episode)
            env.reset(seed=reset_seed)
            step = 0
            done = False
            while not done and produced < config.num_examples:
                verdicts: list[str] = []
                rewards: list[float] = []
                if config.multi_turn:
                    verdict, reward, done = _step_wrong_answer(env, rng, config, episode, step)
                    verdicts.append(verdict)
                    rewards.append(reward)
                messages = core.chat_messages()
                images = core.chat_images()
                answer = core.oracle_answer()
                _, reward, terminated, truncated, info = env.step(answer)
                if info.get("verdict") == "budget" and config.multi_turn:
                    raise ValueError(_BUDGET_HINT.format(env_id=config.env_id))
                if info.get("verdict") != "correct":
                    raise OracleError(
                        f"{config.env_id} (episode seed {reset_seed}, step {step}): the verifier rejects the "
                        f"oracle's answer {answer!r} ({info.get('verdict')}: {info.get('feedback')})"
                    )
                verdicts.append("correct")
                rewards.append(float(reward))
                yield {
                    "messages": copy_messages(messages) + [assistant_message(answer)],
                    "images": [np.asarray(image, dtype=np.uint8) for image in images],
                    "env_id": config.env_id,
                    "env_kwargs": kwargs_text,
                    "variant": config.variant,
                    "seed": config.seed,
                    "episode": episode,
                    "episode_seed": reset_seed,
                    "step": step,
                    "verdicts": verdicts,
                    "rewards": rewards,
                    "answer": answer,
                }
                produced += 1
                step += 1
                done = terminated or truncated
            episode += 1
    finally:
        env.close()


def _step_wrong_answer(
    env: Any, rng: np.random.Generator, config: OracleDataConfig, episode: int, step: int
) -> tuple[str, float, bool]:
    """Step one rejected answer; return its verdict and reward."""
    core = env.unwrapped
    try:
        wrong = core.sample_wrong_answer(rng, verdict=config.wrong_verdict or None)
    except ValueError as err:
        raise ValueError(
            f"{config.env_id}, episode {episode}, step {step}: cannot make a wrong answer"
            f"{' of category ' + repr(config.wrong_verdict) if config.wrong_verdict else ''}: {err}"
        ) from err
    _, reward, terminated, truncated, info = env.step(wrong)
    verdict = info.get("verdict")
    if verdict == "correct":
        raise OracleError(f"{config.env_id}: sample_wrong_answer gave an answer the verifier accepts: {wrong!r}")
    if config.wrong_verdict and verdict != config.wrong_verdict:
        raise OracleError(
            f"{config.env_id}: sample_wrong_answer(verdict={config.wrong_verdict!r}) gave an answer judged "
            f"{verdict!r}: {wrong!r}"
        )
    if terminated or truncated:
        raise ValueError(_BUDGET_HINT.format(env_id=config.env_id))
    return str(verdict), float(reward), False


def features() -> Any:
    """The ``datasets.Features`` of an oracle dataset (one schema for every env)."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    message = {"role": Value("string"), "content": List(part)}
    return Features(
        {
            "messages": List(message),
            "images": List(Image()),
            "env_id": Value("string"),
            "env_kwargs": Value("string"),
            "variant": Value("string"),
            "seed": Value("int64"),
            "episode": Value("int64"),
            "episode_seed": Value("int64"),
            "step": Value("int64"),
            "verdicts": List(Value("string")),
            "rewards": List(Value("float64")),
            "answer": Value("string"),
        }
    )


def png_image(image: np.ndarray) -> dict[str, Any]:
    """An image as the ``Image`` feature stores it: PNG bytes (lossless).

    Encoded here, one example at a time, so that only compressed images wait
    in memory for the next Arrow chunk (a 1200x1200 table is 4 MB raw, about
    30 kB as PNG).
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def arrow_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages with every content part holding both keys (Arrow stores one struct type)."""
    return [
        {"role": m["role"], "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]]}
        for m in messages
    ]


def _arrow_row(example: dict[str, Any]) -> dict[str, Any]:
    """An example in the stored layout: every content part has both keys, images are PNG."""
    row = dict(example)
    row["messages"] = arrow_messages(example["messages"])
    row["images"] = [png_image(image) for image in example["images"]]
    return row


def build_oracle_dataset(
    config: OracleDataConfig,
    *,
    progress: bool = True,
    on_example: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Build the oracle dataset of ``config`` as a ``datasets.Dataset``.

    Args:
        config: What to build.
        progress: Show a tqdm progress bar.
        on_example: Called with each raw example (arrays, not PIL) before it
            is stored; for callers that want counts or samples.

    Returns:
        A ``datasets.Dataset`` with :func:`features`, in memory; save it with
        ``save_to_disk`` (see :func:`save_oracle_dataset`).

    Raises:
        ValueError, OracleError: See :func:`iter_oracle_examples`.
    """
    from datasets import Dataset, concatenate_datasets
    from tqdm.auto import tqdm

    schema = features()
    tables = []
    rows: list[dict[str, Any]] = []
    bar = tqdm(
        total=config.num_examples,
        desc=f"oracle data {config.env_id}",
        unit="ex",
        disable=not progress,
    )
    with bar:
        for example in iter_oracle_examples(config):
            if on_example is not None:
                on_example(example)
            rows.append(_arrow_row(example))
            bar.update(1)
            if len(rows) == _CHUNK:
                tables.append(Dataset.from_list(rows, features=schema))
                rows = []
    if rows:
        tables.append(Dataset.from_list(rows, features=schema))
    return tables[0] if len(tables) == 1 else concatenate_datasets(tables)


def save_oracle_dataset(dataset: Any, out_dir: Any) -> None:
    """Write a dataset where ``datasets.load_from_disk`` reads it back."""
    dataset.save_to_disk(str(out_dir))


# -- reading back ----------------------------------------------------------------


def clean_messages(messages: list[Message]) -> list[Message]:
    """Messages as the env made them: drop the ``None`` fields Arrow adds to parts.

    Arrow stores every content part with the same keys, so an image part
    comes back as ``{"type": "image", "text": None}``; chat templates and
    :mod:`gengym_core.chat` want ``{"type": "image"}``.
    """
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{k: v for k, v in part.items() if v is not None} for part in content]
        out.append({"role": message["role"], "content": content})
    return out


def to_text_only_dataset(dataset: Any) -> Any:
    """A text-env dataset in TRL's plain conversational form (``content`` strings, no images).

    For training with TRL's own text pipeline outside gengym; gengym's SFT
    trainer converts on the fly and does not need it.

    Raises:
        ValueError: The dataset holds images (a text model cannot see them).
    """
    from gengym_core.chat import to_text_only

    def convert(example: dict[str, Any]) -> dict[str, Any]:
        return {"messages": to_text_only(clean_messages(example["messages"]))}

    if any(len(images) for images in dataset["images"]):
        raise ValueError("the dataset holds images; a text-only model cannot take it (use the env's text mode)")
    return dataset.map(convert, remove_columns=["images", "messages"])


def image_placeholders(messages: Any) -> int:
    """Image placeholders in a stored conversation, checking its structure (stored data are untrusted).

    Every message needs a role of ``system``, ``user`` or ``assistant`` and
    content that is text or a list of parts.

    Raises:
        ValueError: Saying what is wrong with the first malformed message.

    Example:
        >>> image_placeholders([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}])
        1
        >>> image_placeholders([{"role": "robot", "content": "hi"}])
        Traceback (most recent call last):
        ...
        ValueError: a message needs a role of system, user or assistant: {'role': 'robot', 'content': 'hi'}
    """
    placeholders = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"a message needs a role of system, user or assistant: {message!r:.80}")
        content = message.get("content")
        if isinstance(content, list):
            placeholders += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
        elif not isinstance(content, str):
            raise ValueError(f"content must be text or a list of parts: {content!r:.80}")
    return placeholders


class EnvCache:
    """One env per (id, kwargs JSON), reused while replaying many stored rows."""

    def __init__(self) -> None:
        self.envs: dict[tuple[str, str], Any] = {}

    def get(self, env_id: str, kwargs_text: str) -> Any:
        from gengym_core.registry import make

        key = (env_id, kwargs_text)
        if key not in self.envs:
            self.envs[key] = make(env_id, **json.loads(kwargs_text))
        return self.envs[key]

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def walk_oracle_to(env: Any, reset_seed: int, step: int) -> tuple[Any, str | None]:
    """Reset ``env`` with ``reset_seed`` and step the oracle's answers up to task step ``step``.

    Returns:
        ``(observation, problem)``: the observation there, and ``None``, or
        what went wrong when the walk ended or failed before the step.
    """
    obs, _ = env.reset(seed=reset_seed)
    for k in range(step):
        obs, _, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
        if info.get("verdict") != "correct" or terminated or truncated:
            return obs, f"the oracle walk ended or failed at step {k} before the stored step"
    return obs, None


def same_images(stored: Sequence[Any], shown: Sequence[np.ndarray]) -> bool:
    """Whether stored images (PIL images or arrays) equal what the env shows, pixel for pixel."""
    arrays = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image) for image in stored]
    return len(arrays) == len(shown) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(arrays, shown, strict=True)
    )


def verify_rows(
    rows: Iterable[dict[str, Any]],
    verify: Callable[..., list[str]],
    *,
    progress: bool = False,
    desc: str = "re-verifying",
    unit: str = "ex",
) -> dict[int, list[str]]:
    """``verify(row, envs=...)`` on every row, sharing one :class:`EnvCache`.

    Returns:
        Row index -> problems, for the rows that fail (empty when all pass).
    """
    from tqdm.auto import tqdm

    envs = EnvCache()
    failures: dict[int, list[str]] = {}
    try:
        for index, row in enumerate(tqdm(rows, desc=desc, unit=unit, disable=not progress)):
            problems = verify(row, envs=envs)
            if problems:
                failures[index] = problems
    finally:
        envs.close()
    return failures


def verify_example(example: dict[str, Any], *, envs: EnvCache | None = None) -> list[str]:
    """Replay one stored example in a fresh episode and list what does not hold.

    The env is made from the stored id and kwargs and reset with the stored
    episode seed, the oracle walks it to the stored step, and then each
    assistant turn of the stored conversation is stepped in order. Checked:
    every conversation prefix equals the env's own ``chat_messages()`` at
    that point (prompt, echoed answers, feedback), the images equal the
    env's ``chat_images()`` pixel for pixel, each answer gets its stored
    verdict, and the last is ``correct``.

    Returns:
        Problems found, empty when the example is valid.
    """
    own = envs is None
    envs = envs or EnvCache()
    problems: list[str] = []
    try:
        env = envs.get(example["env_id"], example["env_kwargs"])
        core = env.unwrapped
        _, walk_problem = walk_oracle_to(env, int(example["episode_seed"]), int(example["step"]))
        if walk_problem:
            return [walk_problem]
        messages = clean_messages(example["messages"])
        if not same_images(example["images"], core.chat_images()):
            problems.append("the images differ from what the env shows")
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not answers or answers[-1] != len(messages) - 1:
            return problems + ["the conversation does not end with an assistant answer"]
        verdicts = list(example["verdicts"])
        if len(verdicts) != len(answers):
            return problems + [f"{len(answers)} answers but {len(verdicts)} stored verdicts"]
        for n, index in enumerate(answers):
            if core.chat_messages() != messages[:index]:
                problems.append(f"the conversation before answer {n + 1} differs from the env's chat")
            _, _, terminated, truncated, info = env.step(message_text(messages[index]))
            if info.get("verdict") != verdicts[n]:
                problems.append(
                    f"answer {n + 1} is judged {info.get('verdict')!r}, stored as {verdicts[n]!r}"
                )
            if (terminated or truncated) and n < len(answers) - 1:
                problems.append(f"the episode ended after answer {n + 1}, before the last answer")
                break
        if verdicts[-1] != "correct":
            problems.append(f"the final answer is stored as {verdicts[-1]!r}, not correct")
        if example.get("answer") is not None and message_text(messages[-1]) != example["answer"]:
            problems.append("the answer column differs from the last assistant turn")
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        problems.append(f"cannot replay: {type(err).__name__}: {err}")
    finally:
        if own:
            envs.close()
    return problems


def verify_dataset(dataset: Any, *, progress: bool = False) -> dict[int, list[str]]:
    """Re-check every example (see :func:`verify_example`).

    Returns:
        Row index -> problems, for the rows that fail (empty when all pass).
    """
    return verify_rows(dataset, verify_example, progress=progress)
