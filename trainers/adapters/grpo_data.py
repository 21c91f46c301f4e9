"""Datasets and reward functions that feed gengym tasks to TRL's ``GRPOTrainer``.

Two ways in, for two kinds of trainer setup:

* Multi-turn, with tools (:func:`tool_prompt_dataset` + the env adapter of
  :mod:`trainers.adapters.grpo_env`): rows hold only an instruction and a
  ``seed``; the env makes the task at ``reset`` and judges every submitted
  answer, with feedback, until the episode ends. Needs a model whose chat
  template supports tool calling.
* Single-turn, reward function only (:func:`single_turn_dataset` +
  :func:`verifier_reward`): rows hold the task's full prompt (with its
  images, for VLMs, in TRL's standard ``images`` column) and a ``verifier``
  column, the JSON form of the frozen verifier state of
  :mod:`gengym_core.single_turn`. The reward function rebuilds the scorer
  and scores the completion exactly as the env would score a first
  attempt. This is TRL's ordinary (VLM) GRPO path: no tools, no env at
  training time, any model TRL's GRPO supports.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gengym_core.chat import message_text, to_text_only
from gengym_core.single_turn import (
    Scorer,
    episode_seed,
    iter_single_turn_tasks,
    resolve_env_kwargs,
    scorer_from_json,
)

#: Instruction put before the env's first observation in tool-mode prompts.
TOOL_INSTRUCTION = (
    "Solve the task below. Submit your answer by calling the submit_answer tool with the JSON "
    "answer the task asks for. The tool replies with the verifier's verdict and feedback; while "
    "the episode continues, submit your next answer the same way.\n\n"
)


def tool_prompt_dataset(
    env_id: str,
    num_prompts: int,
    *,
    seed: int = 0,
    instruction: str = TOOL_INSTRUCTION,
    environment: str | None = None,
) -> Any:
    """Rows for ``GRPOTrainer(environment_factory=tool_env_factory(env_id))``.

    Each row is ``prompt`` (one user message holding ``instruction``; the env's
    observation is appended to it at ``reset``), ``seed`` (row ``i``:
    ``episode_seed(seed, i)``, the start state of its GRPO group) and
    ``episode`` (``i``). ``environment`` adds TRL's routing column for a dict
    of factories (several envs in one run).

    Args:
        env_id: The env the rows are for (checked to exist).
        num_prompts: Rows to make.
        seed: Seed of the row set.
        instruction: Text of the user message before the observation.
        environment: Name of the env in a dict ``environment_factory``.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        ValueError: Unknown env id or a bad count or seed.
    """
    from datasets import Dataset

    from gengym_core.registry import gengym_env_ids

    if env_id not in gengym_env_ids():
        raise ValueError(f"unknown gengym env {env_id!r}; known ids: {', '.join(gengym_env_ids())}")
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be a positive integer, got {num_prompts!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    columns: dict[str, list[Any]] = {
        "prompt": [[{"role": "user", "content": instruction}] for _ in range(num_prompts)],
        "seed": [episode_seed(seed, i) for i in range(num_prompts)],
        "episode": list(range(num_prompts)),
    }
    if environment is not None:
        columns["environment"] = [environment] * num_prompts
    return Dataset.from_dict(columns)


def single_turn_dataset(
    env_id: str,
    num_prompts: int,
    *,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    variant: str = "",
    max_steps_per_episode: int | None = None,
) -> Any:
    """Single-turn GRPO rows of an env: the task prompt, its images, its verifier.

    Columns: ``prompt`` (the conversation; plain-string content for text
    envs, content parts with image placeholders for image envs), ``images``
    (image envs only: PIL images in placeholder order, the column TRL's VLM
    path reads), ``verifier`` (the scorer as JSON, for :func:`verifier_reward`),
    ``env_id``, ``episode_seed`` and ``step``.

    Args:
        env_id: A registered gengym env id.
        num_prompts: Rows to make (one per task step; see
            :func:`gengym_core.single_turn.iter_single_turn_tasks`).
        seed: Seed of the set (episode ``e`` is reset with ``episode_seed(seed, e)``).
        env_kwargs: Extra ``gym.make`` keyword arguments.
        variant: Evaluation variant of the id, or ``""``.
        max_steps_per_episode: At most this many rows per episode.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        ValueError: Unknown env id or variant, or env settings the env refuses.
    """
    from datasets import Dataset, Features, Image, List, Value

    from trainers.data.oracle import arrow_messages, png_image

    kwargs = resolve_env_kwargs(env_id, env_kwargs, variant)
    rows: dict[str, list[Any]] = {
        "prompt": [],
        "images": [],
        "verifier": [],
        "env_id": [],
        "episode_seed": [],
        "step": [],
    }
    for task in iter_single_turn_tasks(
        env_id,
        num_prompts,
        seed=seed,
        env_kwargs=kwargs,
        max_steps_per_episode=max_steps_per_episode,
    ):
        messages = task.messages
        rows["prompt"].append(arrow_messages(messages) if task.images else to_text_only(messages))
        rows["images"].append([png_image(image) for image in task.images])
        rows["verifier"].append(task.scorer.to_json())
        rows["env_id"].append(env_id)
        rows["episode_seed"].append(task.episode_seed)
        rows["step"].append(task.step)
    has_images = any(rows["images"])
    if not has_images:
        del rows["images"]
        return Dataset.from_dict(rows)
    part = {"type": Value("string"), "text": Value("string")}
    features = Features(
        {
            "prompt": List({"role": Value("string"), "content": List(part)}),
            "images": List(Image()),
            "verifier": Value("string"),
            "env_id": Value("string"),
            "episode_seed": Value("int64"),
            "step": Value("int64"),
        }
    )
    return Dataset.from_dict(rows, features=features)


def completion_text(completion: Any) -> str:
    """The answer text of a GRPO completion.

    TRL passes a plain string for standard prompts, and a list of messages
    for conversational ones; there the last assistant message holds the
    answer (content as a string or as content parts).

    Example:
        >>> completion_text([{"role": "assistant", "content": "{'formula': '4*6'}"}])
        "{'formula': '4*6'}"
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if content is None:
                    return ""
                return content if isinstance(content, str) else message_text(message)
        return ""
    raise TypeError(
        f"a completion is a string or a list of messages, got {type(completion).__name__}"
    )


@functools.lru_cache(maxsize=4096)
def _scorer(verifier: str) -> Scorer:
    return scorer_from_json(verifier)


def verifier_reward(completions: list[Any], verifier: list[str], **kwargs: Any) -> list[float]:
    """GRPO reward function: each completion's reward under its row's frozen verifier.

    Use it with :func:`single_turn_dataset`. The reward is exactly what the
    env would give the completion as the first attempt at the task.
    Scorers are rebuilt from the ``verifier`` JSON (checked, never
    unpickled) and cached.

    Raises:
        ValueError: A ``verifier`` value is not a scorer's JSON, or the
            lengths differ.
    """
    if len(completions) != len(verifier):
        raise ValueError(f"{len(completions)} completions but {len(verifier)} verifier values")
    return [_scorer(v)(completion_text(c)) for c, v in zip(completions, verifier, strict=True)]
