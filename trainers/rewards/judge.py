"""``judge:PATH``: score each PPO turn with a local AI judge (RLAIF).

A Hugging Face chat model (text or vision-language) reads a grading request:
a rubric built from the env's rules, the task exactly as the policy saw it
(its images too, for a vision-language judge) and the policy's answer, and
replies with a score from 0 to 10. The score becomes the turn's reward,
``(score - 5) / 5``, so rewards lie in ``[-1, 1]`` with 0 for a middling
answer. Requests are answered in batches of ``batch_size`` with greedy
decoding, on ``device`` (the policy's GPU by default, or another).

The rubric: a fixed grading instruction, the criteria of the env family
(:data:`FAMILY_CRITERIA`: what a correct GeneralPoints or V-IRL answer must
satisfy), and the rules themselves, which every gengym prompt states (target,
card values, action space), so rule variants are judged by their own rules.
``rubric_file`` replaces the instruction and criteria with your own text.

The judge's reply is model output: it is parsed, never executed
(:func:`parse_judge_score`: a ``{"score": N}`` object, a ``Score: N`` line,
``N/10``, or a lone number; the last one wins). A reply without a score in
``[0, 10]`` counts as ``default_reward`` and is logged (the first few in
full, then a count), and :attr:`JudgeReward.stats` keeps the tallies.

Compute: every prompt token and generated token of the judge costs
``2 N_judge`` FLOPs, charged to the PPO run (see
:class:`~trainers.rewards.ScoringCompute`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gengym_core.chat import Message, message_text, user_message
from trainers.rewards import ScoringCompute, Turn, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

#: Score scale the judge is asked for.
SCORE_MIN, SCORE_MAX = 0.0, 10.0
#: Longest judge reply parsed (characters from its end): bounded work on any reply.
MAX_REPLY_CHARS = 4000
#: Longest policy answer shown to the judge (characters; longer ones are cut with a marker).
MAX_ANSWER_CHARS = 4000
#: Unparseable replies logged in full before only counting.
_LOGGED_FAILURES = 5

GRADING_INSTRUCTION = (
    "You grade one answer to a task. The task is shown exactly as the answering model saw it, including any "
    "earlier attempts and the feedback on them; its rules are the ones stated in the task. Judge only the final "
    "answer, by those rules and the criteria below."
)

#: What a correct answer must satisfy, per env family (id prefix).
FAMILY_CRITERIA: dict[str, str] = {
    "GeneralPoints": (
        "- The answer is one JSON object with the keys cards, number and formula.\n"
        "- cards lists exactly the dealt cards, as shown in the task (text or image).\n"
        "- number gives the value of each of those cards under the task's rule for J, Q and K.\n"
        "- formula uses each of those numbers exactly once, only + - * / and parentheses, and equals the target."
    ),
    "VIRL": (
        "- The answer is one JSON object with the keys current observation, current instruction and action.\n"
        "- The observation matches what is in view now, including whether the agent is at an intersection.\n"
        "- The instruction is the one the agent is carrying out at this point of the route.\n"
        "- The action is one from the task's action space and is the right next move for that instruction."
    ),
}
_GENERIC_CRITERIA = "- The answer follows the task's required format.\n- The answer is correct under the task's rules."

_SCORE_REQUEST = (
    "Give a score from 0 to 10: 10 for a fully correct answer in the required format, 0 for a wrong or unreadable "
    "one, values between for partly right answers. Think briefly if you need to, then end your reply with a line "
    "'Score: N'."
)

#: A plain decimal number, not the start of a longer token ("1e400", "7b", "3.5.1").
_NUMBER = r"[+-]?\d+(?:\.\d+)?(?!\w)(?!\.\d)"
#: "score: N", optionally "N/D" or "N out of D" (only D = 10 is the scale asked for).
_SCORE_LINE = re.compile(
    rf"score[^\w+-]{{0,4}}(?:is\s+|of\s+)?({_NUMBER})(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?", re.IGNORECASE
)
_FRACTION = re.compile(rf"({_NUMBER})\s*(?:/|out\s+of)\s*10(?!\d)(?!\.\d)", re.IGNORECASE)
_LONE_NUMBER = re.compile(rf"^\W*({_NUMBER})\W*$")


def parse_judge_score(text: str, *, low: float = SCORE_MIN, high: float = SCORE_MAX) -> float | None:
    """The score in a judge's reply, or ``None`` when there is none in ``[low, high]``.

    Looked for in this order, the last occurrence winning within each (a
    judge that reasons first states its verdict last): a JSON object with a
    ``score`` key, a ``score: N`` phrase, an ``N/10`` or ``N out of 10``
    fraction, or a reply that is just a number. Only the last
    :data:`MAX_REPLY_CHARS` characters are read.

    Example:
        >>> parse_judge_score("The formula is right. Score: 9")
        9.0
        >>> parse_judge_score('{"reason": "wrong value", "score": 2}')
        2.0
        >>> parse_judge_score("I'd give it 7/10.")
        7.0
        >>> parse_judge_score("12") is None, parse_judge_score("no idea") is None
        (True, True)
    """
    if not isinstance(text, str):
        return None
    text = text[-MAX_REPLY_CHARS:]
    candidates: list[str] = []
    if "{" in text:
        from gengym_core.answers import AnswerFormatError, normalize_key, parse_json_answer

        try:
            answer = parse_json_answer(text, expected_keys=("score",))
            for key, value in answer.items():
                if normalize_key(str(key)) == "score" and not isinstance(value, bool):
                    candidates.append(str(value))
        except AnswerFormatError:
            pass
    for pattern in (_SCORE_LINE, _FRACTION, _LONE_NUMBER):
        if candidates:
            break
        candidates = [
            m.group(1) for m in pattern.finditer(text) if pattern is not _SCORE_LINE or m.group(2) in (None, "10")
        ]
    if not candidates:
        return None
    try:
        value = float(candidates[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def criteria_for(env_id: str) -> str:
    """The criteria of an env id's family (generic ones for an unknown family)."""
    for prefix, criteria in FAMILY_CRITERIA.items():
        if env_id.startswith(prefix):
            return criteria
    return _GENERIC_CRITERIA


def build_rubric(env_id: str, rubric_text: str | None = None) -> str:
    """The grading instruction and criteria for ``env_id``, or ``rubric_text`` when given."""
    if rubric_text:
        return rubric_text.strip()
    return f"{GRADING_INSTRUCTION}\n\nCriteria:\n{criteria_for(env_id)}"


def _task_text(messages: Sequence[Message]) -> str:
    """The policy's conversation as plain text (one user turn: its text alone)."""
    if len(messages) == 1:
        return message_text(messages[0])
    return "\n\n".join(f"[{m['role']}]\n{message_text(m)}" for m in messages)


def judge_request(turn: Turn, rubric: str) -> tuple[list[Message], list[Any]]:
    """The conversation the judge answers for one turn, and its images (the task's).

    Image placeholders come first, in the order of the task's images, so a
    vision-language judge sees what the policy saw.
    """
    answer = turn.answer if len(turn.answer) <= MAX_ANSWER_CHARS else turn.answer[:MAX_ANSWER_CHARS] + " [cut]"
    text = (
        f"{rubric}\n\n{_SCORE_REQUEST}\n\n"
        f"=== TASK ===\n{_task_text(turn.messages)}\n\n"
        f"=== ANSWER ===\n{answer}\n\n=== END ==="
    )
    images = list(turn.images)
    return [user_message(text, num_images=len(images))], images


def score_to_reward(score: float) -> float:
    """``(score - 5) / 5``: the 0..10 scale onto ``[-1, 1]``.

    Example:
        >>> score_to_reward(10), score_to_reward(5), score_to_reward(0)
        (1.0, 0.0, -1.0)
    """
    middle = (SCORE_MAX + SCORE_MIN) / 2
    return (score - middle) / (SCORE_MAX - middle)


class JudgeReward:
    """Scores turns by asking a local judge model (see the module docs).

    Args:
        path: The judge checkpoint (local folder or hub id), any chat model
            :func:`~trainers.common.modeling.load_model_and_processor` loads.
        device: ``auto`` (the policy's GPU if any, else CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 on capable GPUs, else float32), ``bfloat16``
            or ``float32``.
        batch_size: Requests answered in one generation batch.
        max_new_tokens: Longest judge reply.
        default_reward: Reward of a turn whose judge reply holds no score.
        rubric_file: A text file replacing the built-in instruction and
            criteria ("" = built in).
        max_length: Longest request in tokens (``None``: no limit).
        compute: The PPO run's ``ComputeTracker``, charged for every token.
    """

    def __init__(
        self,
        path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 32,
        default_reward: float = 0.0,
        rubric_file: str = "",
        max_length: int | None = None,
        compute: Any = None,
    ) -> None:
        from trainers.common.compute import count_parameters
        from trainers.common.modeling import load_model_and_processor
        from trainers.generation import make_backend
        from trainers.generation.base import SamplingParams

        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be at least 1")
        if not math.isfinite(default_reward):
            raise ValueError(f"default_reward must be a finite number, got {default_reward}")
        self.rubric_text = Path(rubric_file).read_text() if rubric_file else None
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        loaded = load_model_and_processor(path, dtype=self.dtype, device=self.device)
        loaded.model.requires_grad_(False)
        self.path = str(path)
        self.model, self.processor, self.is_vision = loaded.model, loaded.processor, loaded.is_vision
        self.backend = make_backend("hf", self.model, self.processor)
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        self.batch_size = batch_size
        self.default_reward = float(default_reward)
        self.max_length = max_length
        self.compute = ScoringCompute(count_parameters(self.model), compute)
        self.stats = {"judged": 0, "unparseable": 0}

    def __call__(self, turns: Sequence[Turn]) -> list[float]:
        rewards: list[float] = []
        for start in range(0, len(turns), self.batch_size):
            chunk = turns[start : start + self.batch_size]
            for turn, reply in zip(chunk, self.replies(chunk), strict=True):
                score = parse_judge_score(reply)
                self.stats["judged"] += 1
                if score is None:
                    self.stats["unparseable"] += 1
                    self._log_failure(turn, reply)
                    rewards.append(self.default_reward)
                else:
                    rewards.append(score_to_reward(score))
        return rewards

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        """The judge's raw replies to the grading requests of ``turns`` (one batch)."""
        from trainers.common.inputs import cast_floating_inputs, encode_prompts

        requests = [judge_request(turn, build_rubric(turn.env_id, self.rubric_text)) for turn in turns]
        images = [pictures for _, pictures in requests]
        if any(images) and not self.is_vision:
            raise ValueError(
                f"the judge {self.path} is text-only but {turns[0].env_id} shows images it would have to see; use a "
                "vision-language judge for -VL- envs"
            )
        inputs = encode_prompts(
            self.processor,
            [messages for messages, _ in requests],
            images if any(images) else None,
            max_length=self.max_length,
        ).to(self.device)
        cast_floating_inputs(inputs, self.dtype)
        with self.backend.rollout_phase():
            generation = self.backend.generate(inputs, self.params)
        self.compute.add(int(inputs["attention_mask"].sum()) + generation.num_tokens)
        return generation.texts

    def _log_failure(self, turn: Turn, reply: str) -> None:
        count = self.stats["unparseable"]
        if count <= _LOGGED_FAILURES:
            logger.warning(
                "judge reply without a score in [0, 10] (counted as %s) for an answer to %s: %r",
                self.default_reward,
                turn.env_id,
                reply[:300],
            )
        elif count in (_LOGGED_FAILURES * 10, _LOGGED_FAILURES * 100) or count % 1000 == 0:
            logger.warning("%d of %d judge replies held no score so far", count, self.stats["judged"])
