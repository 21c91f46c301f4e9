"""Preference pairs from a gengym env: built at env states, labelled by the verifier, re-verified.

The env is walked the way :mod:`trainers.data.oracle` walks it for SFT data:
episode ``e`` is reset with :func:`~trainers.data.oracle.episode_seed`
``(seed, e)`` and the oracle answers every task step (V-IRL: every rail
point), so each state is a pure function of the settings and its position.
At each state (optionally after one wrong answer and the verifier's
feedback, a *revision* state) the prompt is taken as the policy would see it
(:func:`~trainers.common.prompting.turn_prompt`) and both answers of the pair
are judged by stepping them through copies of the env at that state: the
chosen answer must be accepted (``correct``), the rejected one refused. An
answer is never labelled on anyone's word but the verifier's.

Before anything is written, every pair is replayed from a fresh env
(:func:`verify_pair`): reset with the stored seed, oracle walk to the stored
step, the stored wrong answers of a revision state, then the prompt and
images must equal what the env shows and both answers must get their stored
verdicts. A failure there is a bug, and nothing is written.

Columns (:func:`features`), in the conversational preference format TRL's
DPO and reward trainers read (explicit prompt):

``prompt``
    The conversation the policy answers (content-parts messages, ending with
    a user turn; image parts are placeholders for ``images``).
``chosen``, ``rejected``
    One assistant message each.
``images``
    The images of the prompt's placeholders (PNG, lossless).
``env_id``, ``env_kwargs`` (JSON), ``variant``, ``prompt_format``, ``seed``,
``episode``, ``episode_seed``, ``step``, ``prefix_answers``, ``earlier_answers``
    Where the state is: enough to replay it.
``chosen_verdict``, ``chosen_reward``, ``rejected_verdict``, ``rejected_reward``
    What the verifier said about each answer.
``chosen_source``, ``rejected_source``
    ``oracle``, ``sampler`` (the env's wrong-answer sampler) or ``model``.

Beside the Arrow files, ``gengym_pairs.json`` records how the pairs were made
and, for model-sampled pairs, the tokens the sampling model processed (its
forward compute, ``2 N D``), so experiment plots can charge it to the methods
trained on the pairs.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gengym_core.chat import Message, assistant_message, copy_messages, message_text
from gengym_core.single_turn import episode_seed
from trainers.data.oracle import (
    EnvCache,
    OracleError,
    arrow_messages,
    clean_messages,
    image_placeholders,
    png_image,
    same_images,
    verify_rows,
    walk_oracle_to,
)
from trainers.pairs.config import PairsConfig

#: File beside the Arrow files describing how the pairs were made.
PAIRS_INFO = "gengym_pairs.json"
#: Pairs turned into one Arrow table at a time.
_CHUNK = 256
#: Verdicts that are not errors of an answer.
_NOT_ERRORS = ("correct", "budget")
#: States skipped in a row (model pairs, ``fallback="skip"``) before giving up.
MAX_SKIPPED_IN_A_ROW = 64
#: Random streams of one episode (see :func:`_episode_rng`).
_REVISION_STREAM, _WRONG_STREAM = 2, 3

_BUDGET_HINT = (
    "{env_id}: after one wrong answer the env's budget leaves no verified turn, so revision states cannot be "
    "built; give it at least 2 attempts per step (GeneralPoints: verify_iter, V-IRL: tries_per_point) or set "
    "revision_share to 0"
)


class PairError(RuntimeError):
    """A pair failed its own verification (a bug in the env or the builder); nothing is written."""


def wrong_verdicts_of(env_id: str) -> tuple[str, ...]:
    """The answer-error categories of an env's family (its ``VERDICTS`` minus correct and budget).

    Raises:
        ValueError: Unknown env id, or a family package without ``VERDICTS``.
    """
    import gymnasium as gym

    from gengym_core.registry import gengym_env_ids

    if env_id not in gengym_env_ids():
        raise ValueError(f"unknown gengym env {env_id!r}; known ids: {', '.join(gengym_env_ids())}")
    package = gym.registry[env_id].entry_point.split(".")[0]
    verdicts = getattr(importlib.import_module(package), "VERDICTS", None)
    if not verdicts:
        raise ValueError(f"{package} exports no VERDICTS; cannot name its error categories")
    return tuple(v for v in verdicts if v not in _NOT_ERRORS)


def env_shows_images(config: PairsConfig) -> bool:
    """Whether the env of ``config`` shows images (it is made once; no episode is played).

    Raises:
        ValueError: Unknown env id or variant, or env settings the env refuses.
    """
    from trainers.eval.evaluate import env_shows_images as shows_images

    return shows_images(config.env_id, config.make_kwargs())


def _episode_rng(seed: int, episode: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, episode, stream]))


# -- states --------------------------------------------------------------------------


@dataclass
class PairState:
    """One env state a pair is built at.

    Attributes:
        env: A private copy of the (wrapped) env at this state; step answers
            through further copies of it (:meth:`judge`).
        messages, images: The prompt, as the policy sees it.
        episode, episode_seed, step: Where the state is.
        prefix_answers: Wrong answers stepped at this task step before the
            state (a revision state has one).
        earlier_answers: Every answer stepped at earlier task steps of the
            episode, in order (the oracle's, and the wrong ones of revision
            states): in the ``chat`` prompt format they are part of the
            prompt, so a replay must send them, not only the oracle's.
    """

    env: Any
    messages: list[Message]
    images: list[np.ndarray]
    episode: int
    episode_seed: int
    step: int
    prefix_answers: list[str] = field(default_factory=list)
    earlier_answers: list[str] = field(default_factory=list)

    @property
    def core(self) -> Any:
        return self.env.unwrapped

    def judge(self, answer: str) -> tuple[str, float]:
        """The verifier's verdict and reward for ``answer`` here (the state is not changed)."""
        trial = copy.deepcopy(self.env)
        try:
            _, reward, _, _, info = trial.step(answer)
        finally:
            trial.close()
        return str(info.get("verdict")), float(reward)


def iter_states(config: PairsConfig) -> Iterator[PairState]:
    """Every state of the oracle walk, episode after episode (endless; stop when done).

    Raises:
        ValueError: Unknown env id or variant; revision states the env's
            budget cannot hold.
        OracleError: The oracle's answer or the wrong-answer sampler broke
            their contract (an env bug).
    """
    from gengym_core.registry import make
    from trainers.common.prompting import turn_prompt

    env = make(config.env_id, **config.make_kwargs())
    core = env.unwrapped
    if config.revision_share > 0 and not callable(getattr(core, "sample_wrong_answer", None)):
        raise ValueError(f"{config.env_id} cannot make revision states: its env has no sample_wrong_answer()")
    episode = 0
    try:
        while True:
            reset_seed = episode_seed(config.seed, episode)
            revision_rng = _episode_rng(config.seed, episode, _REVISION_STREAM)
            obs, _ = env.reset(seed=reset_seed)
            step, done = 0, False
            sent: list[str] = []
            while not done:
                prefix: list[str] = []
                if config.revision_share > 0 and revision_rng.random() < config.revision_share:
                    wrong = core.sample_wrong_answer(revision_rng)
                    obs, _, terminated, truncated, info = env.step(wrong)
                    if info.get("verdict") == "correct":
                        raise OracleError(f"{config.env_id}: sample_wrong_answer gave an accepted answer: {wrong!r}")
                    if terminated or truncated or _next_answer_is_over_budget(env):
                        raise ValueError(_BUDGET_HINT.format(env_id=config.env_id))
                    prefix.append(wrong)
                messages, images = turn_prompt(env, obs, config.prompt_format)
                yield PairState(
                    env=copy.deepcopy(env),
                    messages=copy_messages(messages),
                    images=[np.asarray(image, dtype=np.uint8).copy() for image in images],
                    episode=episode,
                    episode_seed=reset_seed,
                    step=step,
                    prefix_answers=prefix,
                    earlier_answers=list(sent),
                )
                answer = core.oracle_answer()
                sent += [*prefix, answer]
                obs, _, terminated, truncated, info = env.step(answer)
                if info.get("verdict") != "correct":
                    raise OracleError(
                        f"{config.env_id} (episode seed {reset_seed}, step {step}): the verifier rejects the "
                        f"oracle's answer {answer!r} ({info.get('verdict')}: {info.get('feedback')})"
                    )
                step += 1
                done = terminated or truncated
            episode += 1
    finally:
        env.close()


def _next_answer_is_over_budget(env: Any) -> bool:
    """Whether the env would refuse any answer now for lack of attempts (verdict ``budget``)."""
    probe = copy.deepcopy(env)
    try:
        _, _, _, _, info = probe.step(probe.unwrapped.oracle_answer())
    finally:
        probe.close()
    return info.get("verdict") == "budget"


# -- pairs ---------------------------------------------------------------------------


def _pair_row(
    config: PairsConfig,
    kwargs_text: str,
    state: PairState,
    chosen: tuple[str, str, float, str],
    rejected: tuple[str, str, float, str],
) -> dict[str, Any]:
    """One pair in the stored layout; ``chosen``/``rejected`` are (text, verdict, reward, source)."""
    return {
        "prompt": state.messages,
        "chosen": [assistant_message(chosen[0])],
        "rejected": [assistant_message(rejected[0])],
        "images": state.images,
        "env_id": config.env_id,
        "env_kwargs": kwargs_text,
        "variant": config.variant,
        "prompt_format": config.prompt_format,
        "seed": config.seed,
        "episode": state.episode,
        "episode_seed": state.episode_seed,
        "step": state.step,
        "prefix_answers": list(state.prefix_answers),
        "earlier_answers": list(state.earlier_answers),
        "chosen_verdict": chosen[1],
        "chosen_reward": chosen[2],
        "rejected_verdict": rejected[1],
        "rejected_reward": rejected[2],
        "chosen_source": chosen[3],
        "rejected_source": rejected[3],
    }


def _check_sides(config: PairsConfig, state: PairState, chosen: tuple, rejected: tuple) -> None:
    where = f"{config.env_id} (episode seed {state.episode_seed}, step {state.step})"
    if chosen[1] != "correct":
        raise PairError(f"{where}: the chosen answer {chosen[0]!r} is judged {chosen[1]!r}, not correct")
    if rejected[1] in _NOT_ERRORS:
        raise PairError(f"{where}: the rejected answer {rejected[0]!r} is judged {rejected[1]!r}")


class _OracleSides:
    """Chosen = the oracle's answer; rejected = a wrong answer, categories in rotation."""

    def __init__(self, config: PairsConfig) -> None:
        self.config = config
        self.verdicts: list[str] | None = None
        self.count = 0

    def _possible(self, state: PairState) -> list[str]:
        """The categories to rotate through, probed once at the first state."""
        wanted = list(self.config.rejected_verdicts) or list(wrong_verdicts_of(self.config.env_id))
        probe = np.random.default_rng(0)
        possible, impossible = [], []
        for verdict in wanted:
            try:
                state.core.sample_wrong_answer(probe, verdict=verdict)
                possible.append(verdict)
            except ValueError:
                impossible.append(verdict)
        if self.config.rejected_verdicts and impossible:
            raise ValueError(f"{self.config.env_id} cannot give wrong answers of category {', '.join(impossible)}")
        if not possible:
            raise ValueError(f"{self.config.env_id}: no wrong-answer category can occur")
        return possible

    def __call__(self, states: list[PairState]) -> list[tuple[tuple, tuple] | None]:
        out = []
        for state in states:
            if self.verdicts is None:
                self.verdicts = self._possible(state)
            rng = _episode_rng(self.config.seed, state.episode, _WRONG_STREAM * 1000 + state.step)
            chosen_text = state.core.oracle_answer()
            rejected_text = None
            for k in range(len(self.verdicts)):
                verdict = self.verdicts[(self.count + k) % len(self.verdicts)]
                try:
                    rejected_text = state.core.sample_wrong_answer(rng, verdict=verdict)
                    break
                except ValueError:
                    continue
            if rejected_text is None:
                raise ValueError(f"{self.config.env_id}: no wrong answer of {self.verdicts} can occur at a state")
            self.count += 1
            chosen = (chosen_text, *state.judge(chosen_text), "oracle")
            rejected = (rejected_text, *state.judge(rejected_text), "sampler")
            if rejected[1] != verdict:
                raise OracleError(
                    f"{self.config.env_id}: sample_wrong_answer(verdict={verdict!r}) gave an answer judged "
                    f"{rejected[1]!r}: {rejected_text!r}"
                )
            out.append((chosen, rejected))
        return out


class _ModelSides:
    """Both sides from a model's samples, labelled by the verifier (see :class:`PairsConfig`)."""

    def __init__(self, config: PairsConfig) -> None:
        from trainers.pairs.sampler import AnswerSampler

        self.config = config
        self.sampler = AnswerSampler(config)
        self.fallback_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0, 4]))
        self.calls = 0

    def __call__(self, states: list[PairState]) -> list[tuple[tuple, tuple] | None]:
        cfg = self.config
        self.calls += 1
        samples = self.sampler.sample(
            [(s.messages, s.images) for s in states], cfg.samples_per_state, seed=cfg.seed * 1_000_003 + self.calls
        )
        out: list[tuple[tuple, tuple] | None] = []
        for state, texts in zip(states, samples, strict=True):
            judged = []
            for text in dict.fromkeys(texts):  # each distinct answer once, in sampling order
                if text.strip():  # an empty answer has no tokens to train on
                    judged.append((text, *state.judge(text), "model"))
            accepted = [j for j in judged if j[1] == "correct"]
            refused = [j for j in judged if j[1] not in _NOT_ERRORS]
            chosen = accepted[0] if accepted else None
            # The refused answer with the lowest reward: the clearest mistake.
            rejected = min(refused, key=lambda j: j[2]) if refused else None
            if cfg.fallback == "skip" and (chosen is None or rejected is None):
                out.append(None)
                continue
            if chosen is None:
                text = state.core.oracle_answer()
                chosen = (text, *state.judge(text), "oracle")
            if rejected is None:
                text = state.core.sample_wrong_answer(self.fallback_rng)
                rejected = (text, *state.judge(text), "sampler")
            out.append((chosen, rejected))
        return out

    @property
    def info(self) -> dict[str, Any]:
        return self.sampler.info


def iter_pairs(config: PairsConfig, *, stats: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Yield pairs (stored layout, images as arrays) until ``config.num_pairs``.

    Args:
        config: What to build.
        stats: Filled in with counts (states seen and skipped) and, for
            model pairs, the sampler's compute record.

    Raises:
        ValueError: Settings the env refuses.
        OracleError, PairError: The env or the builder broke a contract.
    """
    config.validate()
    kwargs_text = json.dumps(config.make_kwargs(), sort_keys=True)
    sides = _ModelSides(config) if config.model else _OracleSides(config)
    per_call = max(1, config.batch_size // config.samples_per_state) if config.model else 1
    stats = stats if stats is not None else {}
    stats.update(states=0, skipped_states=0)
    produced = skipped_in_a_row = 0
    states = iter_states(config)
    try:
        while produced < config.num_pairs:
            # Never ask for more states than pairs still missing, so no sampling is wasted.
            batch = [next(states) for _ in range(min(per_call, config.num_pairs - produced))]
            stats["states"] += len(batch)
            for state, sides_of_state in zip(batch, sides(batch), strict=True):
                if sides_of_state is None:
                    stats["skipped_states"] += 1
                    skipped_in_a_row += 1
                    if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                        raise ValueError(
                            f"{config.model}'s samples gave no usable pair (an accepted and a refused answer) at "
                            f"{skipped_in_a_row} states in a row; sample more per state, or use fallback=oracle"
                        )
                    continue
                skipped_in_a_row = 0
                chosen, rejected = sides_of_state
                _check_sides(config, state, chosen, rejected)
                yield _pair_row(config, kwargs_text, state, chosen, rejected)
                produced += 1
    finally:
        states.close()
        if isinstance(sides, _ModelSides):
            stats["sampling"] = sides.info


# -- replay ----------------------------------------------------------------------------


def _replay_earlier_answers(env: Any, row: dict[str, Any]) -> tuple[Any, str | None]:
    """Reset with the row's seed and send its earlier answers; they must reach its step, alive."""
    obs, _ = env.reset(seed=int(row["episode_seed"]))
    accepted = 0
    for answer in row["earlier_answers"]:
        obs, _, terminated, truncated, info = env.step(answer)
        accepted += info.get("verdict") == "correct"
        if terminated or truncated:
            return obs, "the stored earlier answers end the episode before the stored step"
    if accepted != int(row["step"]):
        return obs, f"the stored earlier answers pass {accepted} steps, not the stored {row['step']}"
    return obs, None


def verify_pair(row: dict[str, Any], *, envs: EnvCache | None = None) -> list[str]:
    """Replay one stored pair in a fresh episode and list what does not hold.

    Checked: the stored earlier answers (or, in rows without them, the
    oracle's) reach the stored step, the stored wrong
    answers of a revision state are refused without ending the episode, the
    prompt and images equal what the env shows there (in the stored prompt
    format), the chosen answer is accepted and the rejected one refused, each
    with its stored verdict and reward.

    Returns:
        Problems found, empty when the pair is valid.
    """
    from trainers.common.prompting import turn_prompt

    own = envs is None
    envs = envs or EnvCache()
    problems: list[str] = []
    try:
        env = envs.get(row["env_id"], row["env_kwargs"])
        if row.get("earlier_answers") is None:  # written before the field existed: oracle steps only
            obs, walk_problem = walk_oracle_to(env, int(row["episode_seed"]), int(row["step"]))
        else:
            obs, walk_problem = _replay_earlier_answers(env, row)
        if walk_problem:
            return [walk_problem]
        for wrong in row.get("prefix_answers") or []:
            obs, _, terminated, truncated, info = env.step(wrong)
            if info.get("verdict") == "correct" or terminated or truncated:
                return ["a stored wrong answer before the prompt is accepted or ends the episode"]
        messages, images = turn_prompt(env, obs, row.get("prompt_format") or "observation")
        if messages != clean_messages(row["prompt"]):
            problems.append("the prompt differs from what the env shows at the stored state")
        if not same_images(row.get("images") or [], images):
            problems.append("the images differ from what the env shows")
        state = PairState(env=env, messages=messages, images=images, episode=0, episode_seed=0, step=0)
        for side in ("chosen", "rejected"):
            side_messages = clean_messages(row[side])
            if len(side_messages) != 1 or side_messages[0]["role"] != "assistant":
                problems.append(f"{side} must be one assistant message")
                continue
            verdict, reward = state.judge(message_text(side_messages[0]))
            if verdict != row[f"{side}_verdict"]:
                problems.append(f"the {side} answer is judged {verdict!r}, stored as {row[f'{side}_verdict']!r}")
            elif not np.isclose(reward, float(row[f"{side}_reward"])):
                problems.append(f"the {side} answer earns {reward}, stored as {row[f'{side}_reward']}")
        if row["chosen_verdict"] != "correct":
            problems.append(f"the chosen answer is stored as {row['chosen_verdict']!r}, not correct")
        if row["rejected_verdict"] in _NOT_ERRORS:
            problems.append(f"the rejected answer is stored as {row['rejected_verdict']!r}")
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        problems.append(f"cannot replay: {type(err).__name__}: {err}")
    finally:
        if own:
            envs.close()
    return problems


def verify_pairs(rows: Any, *, progress: bool = False) -> dict[int, list[str]]:
    """Re-check every pair (see :func:`verify_pair`); row index -> problems of the failing rows."""
    return verify_rows(rows, verify_pair, progress=progress, desc="re-verifying pairs", unit="pair")


# -- storage -------------------------------------------------------------------------


def features() -> Any:
    """The ``datasets.Features`` of a pair dataset (one schema for every env)."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    messages = List({"role": Value("string"), "content": List(part)})
    return Features(
        {
            "prompt": messages,
            "chosen": messages,
            "rejected": messages,
            "images": List(Image()),
            "env_id": Value("string"),
            "env_kwargs": Value("string"),
            "variant": Value("string"),
            "prompt_format": Value("string"),
            "seed": Value("int64"),
            "episode": Value("int64"),
            "episode_seed": Value("int64"),
            "step": Value("int64"),
            "prefix_answers": List(Value("string")),
            "earlier_answers": List(Value("string")),
            "chosen_verdict": Value("string"),
            "chosen_reward": Value("float64"),
            "rejected_verdict": Value("string"),
            "rejected_reward": Value("float64"),
            "chosen_source": Value("string"),
            "rejected_source": Value("string"),
        }
    )


def _arrow_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("prompt", "chosen", "rejected"):
        out[key] = arrow_messages(row[key])
    out["images"] = [png_image(image) for image in row["images"]]
    return out


def build_pairs_dataset(config: PairsConfig, *, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Build, re-verify and return the pairs of ``config``.

    Returns:
        ``(dataset, info)``: a ``datasets.Dataset`` with :func:`features`,
        and the record that :func:`save_pairs_dataset` writes as
        ``gengym_pairs.json``.

    Raises:
        ValueError: Settings the env refuses.
        OracleError, PairError: A pair failed verification (nothing is returned).
    """
    from datasets import Dataset, concatenate_datasets
    from tqdm.auto import tqdm

    schema = features()
    tables, rows, raw = [], [], []
    stats: dict[str, Any] = {}
    verdicts: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    with tqdm(total=config.num_pairs, desc=f"pairs {config.env_id}", unit="pair", disable=not progress) as bar:
        for row in iter_pairs(config, stats=stats):
            raw.append(row)
            verdicts[row["rejected_verdict"]] += 1
            sources[f"{row['chosen_source']}/{row['rejected_source']}"] += 1
            rows.append(_arrow_row(row))
            bar.update(1)
            if len(rows) == _CHUNK:
                _reverify(raw)
                tables.append(Dataset.from_list(rows, features=schema))
                rows, raw = [], []
    if rows:
        _reverify(raw)
        tables.append(Dataset.from_list(rows, features=schema))
    dataset = tables[0] if len(tables) == 1 else concatenate_datasets(tables)
    info = {
        "env_id": config.env_id,
        "env_kwargs": config.make_kwargs(),
        "variant": config.variant,
        "source": config.source,
        "model": config.model or None,
        "seed": config.seed,
        "prompt_format": config.prompt_format,
        "pairs": len(dataset),
        "states": stats.get("states", 0),
        "skipped_states": stats.get("skipped_states", 0),
        "rejected_verdicts": dict(sorted(verdicts.items())),
        "sources": dict(sorted(sources.items())),
        "sampling": stats.get("sampling"),
    }
    return dataset, info


def _reverify(raw_rows: list[dict[str, Any]]) -> None:
    failures = verify_pairs(raw_rows)
    if failures:
        index, problems = next(iter(failures.items()))
        raise PairError(f"{len(failures)} pairs fail re-verification; the first: {'; '.join(problems)} "
                        f"({raw_rows[index]['env_id']}, episode seed {raw_rows[index]['episode_seed']})")


def save_pairs_dataset(dataset: Any, info: dict[str, Any], out_dir: str | Path) -> None:
    """Write the pairs where ``datasets.load_from_disk`` reads them, with ``gengym_pairs.json``."""
    out = Path(out_dir)
    dataset.save_to_disk(str(out))
    (out / PAIRS_INFO).write_text(json.dumps(info, indent=2))


def read_pairs_info(folder: str | Path) -> dict[str, Any]:
    """The ``gengym_pairs.json`` of a pairs folder, or ``{}`` (foreign pair data has none)."""
    path = Path(folder) / PAIRS_INFO
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sampling_gflops(folder: str | Path) -> float:
    """Forward GFLOPs spent sampling the pairs of a folder (0 for oracle or foreign pairs)."""
    sampling = read_pairs_info(folder).get("sampling") or {}
    try:
        return max(0.0, float(sampling.get("gflops", 0.0)))
    except (TypeError, ValueError):
        return 0.0


# -- reading back -----------------------------------------------------------------------


def _side_text(messages: Any, side: str) -> str:
    if not isinstance(messages, list) or len(messages) != 1:
        raise ValueError(f"{side} must be a list holding one assistant message")
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "assistant":
        raise ValueError(f"{side} must be one assistant message, got {message!r:.80}")
    content = message.get("content")
    if isinstance(content, list):
        if any(isinstance(p, dict) and p.get("type") == "image" for p in content):
            raise ValueError(f"the {side} answer holds an image part")
        text = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    elif isinstance(content, str):
        text = content
    else:
        raise ValueError(f"{side} content must be text or a list of parts")
    if not text.strip():
        raise ValueError(f"the {side} answer is empty")
    return text


def check_pairs(dataset: Any) -> None:
    """Check every pair's structure before training (pair folders are untrusted input).

    Each row needs a ``prompt`` (system/user/assistant messages ending with a
    user turn, as many image placeholders as the row has images) and
    ``chosen`` and ``rejected`` holding one non-empty assistant message each,
    with different texts.

    Raises:
        ValueError: Naming the first malformed row and what is wrong.
    """
    import pyarrow.compute as pc

    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"preference data needs the columns prompt, chosen and rejected (conversational, explicit prompt); "
            f"missing: {', '.join(sorted(missing))}"
        )
    if "images" in dataset.column_names:
        image_counts = pc.list_value_length(dataset.data.column("images")).to_pylist()
    else:
        image_counts = [0] * len(dataset)
    columns = zip(dataset["prompt"], dataset["chosen"], dataset["rejected"], image_counts, strict=True)
    for row, (prompt, chosen, rejected, images) in enumerate(columns):
        try:
            if not isinstance(prompt, list) or not prompt:
                raise ValueError("the prompt holds no messages")
            placeholders = image_placeholders(prompt)
            if prompt[-1]["role"] != "user":
                raise ValueError("the prompt must end with a user turn (the answers follow it)")
            if placeholders != (images or 0):
                raise ValueError(f"{placeholders} image placeholders but {images or 0} images")
            if _side_text(chosen, "chosen") == _side_text(rejected, "rejected"):
                raise ValueError("chosen and rejected are the same text")
        except ValueError as err:
            raise ValueError(f"pair {row} is malformed: {err}") from None


def load_pairs(path: str | Path) -> Any:
    """Read a pairs folder (``gengym pairs`` or any ``save_to_disk`` folder in the same format) and check it.

    Raises:
        ValueError: Unreadable folder, a split layout without ``train``, no
            rows, or a malformed row (see :func:`check_pairs`).
    """
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except IndexError:  # what datasets raises for a saved dataset without rows
        raise ValueError(f"{path} holds no preference pairs") from None
    # Mangled folders fail deep inside datasets and pyarrow, in several ways.
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"cannot read preference pairs at {str(path)!r} (expected a folder written by `gengym pairs` or "
            f"Dataset.save_to_disk): {err}"
        ) from err
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise ValueError(f"{path} holds splits {list(dataset)} but no 'train' split")
        dataset = dataset["train"]
    if not isinstance(dataset, Dataset) or len(dataset) == 0:
        raise ValueError(f"{path} holds no preference pairs")
    check_pairs(dataset)
    if "images" not in dataset.column_names:
        dataset = dataset.add_column("images", [[] for _ in range(len(dataset))])
    return dataset


def pair_conversations(row: dict[str, Any]) -> tuple[list[Message], list[Message], list[Any]]:
    """``(prompt + chosen, prompt + rejected, images)`` of a stored row, as the env made them."""
    prompt = clean_messages(row["prompt"])
    return (
        prompt + clean_messages(row["chosen"]),
        prompt + clean_messages(row["rejected"]),
        list(row.get("images") or []),
    )


def chosen_then_rejected(rows: Sequence[dict[str, Any]]) -> tuple[list[list[Message]], list[list[Any]] | None]:
    """The ``B`` chosen conversations of a batch of rows, then the ``B`` rejected ones, with their images.

    The layout TRL's DPO and reward losses read; the images are ``None``
    when no row has any (text models take no image argument).
    """
    chosen, rejected, images = zip(*(pair_conversations(row) for row in rows), strict=True)
    all_images = [list(i) for i in images] * 2
    return list(chosen) + list(rejected), (all_images if any(all_images) else None)


# -- training data ----------------------------------------------------------------------


def load_training_pairs(
    *, dataset: str, env_id: str, generate: PairsConfig | None, progress: bool = True
) -> tuple[Any, str]:
    """The pairs a DPO or reward-model run trains on, and the env id they come from.

    Args:
        dataset: A pairs folder to read; empty to build pairs instead.
        env_id: The configured env id (``""`` = take the folder's).
        generate: What to build when ``dataset`` is empty.
        progress: Show a progress bar while building.

    Returns:
        ``(dataset, env_id)``; the env id is ``""`` for a folder without an
        ``env_id`` column and none configured.

    Raises:
        ConfigError: Unreadable or malformed pairs, pairs of another env than
            ``env_id``, or settings the env refuses.
    """
    from trainers.common.config import ConfigError

    if not dataset:
        if generate is None:
            raise ConfigError("give a pairs folder (dataset) or an env to build pairs from")
        try:
            pairs, _ = build_pairs_dataset(generate, progress=progress)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"cannot build preference pairs for {generate.env_id}: {err}") from err
        return pairs, generate.env_id
    try:
        pairs = load_pairs(dataset)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    env_ids = sorted(set(pairs["env_id"])) if "env_id" in pairs.column_names else []
    if env_id and env_ids and env_ids != [env_id]:
        raise ConfigError(
            f"env_id is {env_id!r} but {dataset} holds pairs of {', '.join(env_ids)}; leave env_id empty or name "
            "the pairs' env"
        )
    return pairs, env_id or (env_ids[0] if len(env_ids) == 1 else "")


def load_pairs_for_model(config: Any, *, not_generative: str, text_only_hint: str) -> tuple[Any, str, bool, bool]:
    """The pairs a DPO or reward-model run trains on, checked against its model's kind.

    Pairs to generate are checked against the model (from its config alone)
    before any is built, since building many image pairs takes a while; the
    pairs read or built are checked again for what they hold.

    Args:
        config: A DPO or reward-model config (pair settings, ``model``,
            ``trust_remote_code``, ``progress_bar``).
        not_generative, text_only_hint: The method's wording for a model that
            cannot be trained, and for a text model given image pairs.

    Returns:
        ``(dataset, env_id, has_images, is_vision)``.

    Raises:
        ConfigError: As :func:`load_training_pairs`, or a model that does not
            fit the pairs.
    """
    from trainers.common.config import ConfigError
    from trainers.common.hf_trainer_support import (
        check_model_kind,
        is_main_process,
        max_images_per_example,
    )

    def model_kind(has_images: bool, data: str) -> bool:
        return check_model_kind(
            config.model,
            trust_remote_code=config.trust_remote_code,
            has_images=has_images,
            data=f"the pairs of {data}",
            not_generative=not_generative,
            text_only_hint=text_only_hint,
        )

    generate = config.pairs_config(progress_bar=config.progress_bar)
    if generate is not None:
        try:
            shows_images = env_shows_images(generate)
        except ValueError as err:
            raise ConfigError(f"cannot build preference pairs for {generate.env_id}: {err}") from err
        model_kind(shows_images, generate.env_id)
    dataset, env_id = load_training_pairs(
        dataset=config.dataset,
        env_id=config.env_id,
        generate=generate,
        progress=config.progress_bar and is_main_process(),
    )
    has_images = max_images_per_example(dataset) > 0
    return dataset, env_id, has_images, model_kind(has_images, env_id or config.dataset)


def longest_pairs(dataset: Any, count: int) -> list[int]:
    """Indices of the ``count`` pairs with the most text (to encode first and catch overlong ones early).

    Within one env the images have one size, so the most text makes the
    longest sequences.
    """
    sizes = [
        len(json.dumps(p)) + max(len(json.dumps(c)), len(json.dumps(r)))
        for p, c, r in zip(
            dataset.data.column("prompt").to_pylist(),
            dataset.data.column("chosen").to_pylist(),
            dataset.data.column("rejected").to_pylist(),
            strict=True,
        )
    ]
    return sorted(range(len(sizes)), key=lambda i: -sizes[i])[:count]
