"""The compact text format of GeneralPoints-L: short prompts for small models.

The default prompt of GeneralPoints-L is a paragraph of English and asks for
a JSON answer; a model of a few million parameters trained from scratch on a
CPU cannot afford that many tokens. ``gym.make("GeneralPoints-L-v0",
compact=True)`` (registered as ``GeneralPoints-L-compact-v0``) states the
same rules in a line and takes a one-line answer. Everything else -- the
deal, the solver, the verifier's stages and the reward table -- is the one
the default format uses.

Task (the first observation)::

    J10 Q10 K10 T24|K 7 7 A

what J, Q and K count, the target after ``T``, then the cards (``A`` counts
1, number cards their face value).

Answer::

    10 7 7 1:(10-7)*(1+7)

the numbers the cards count (in any order; the oracle writes them from
largest to smallest, a canonical order that does not depend on the order
the cards were dealt in), then ``:`` and a formula over exactly those
numbers (``= N`` may follow it). The
number list plays the JSON answer's ``number`` field and the formula its
``formula`` field: both are judged by
:func:`~gym_generalpoints.verifier.verify` with the same stages and rewards
(the part before ``:`` is read with a whitelist pattern of whole numbers;
the formula by the verifier's own grammar, never ``eval``).

Feedback (compact, one token group after ``#``):

* ``#OK`` correct;
* ``#=25`` a legal formula over the right numbers that makes 25, not the
  target (``#=7/2`` for a fraction; ``#=24`` when the formula is right but a
  trailing ``= N`` claims something else);
* ``#N-10+12`` wrong numbers: the listed numbers (or, when the list is
  right, the formula's numbers) hold a 10 that no card counts and lack the
  12 a card counts -- the same facts the default feedback spells out;
* ``#X`` an unreadable answer or an illegal formula;
* ``#B`` the answer came after the verification budget and was not judged.

Revision (sequential revision, defined here and not by the default
format): the observation after some answers is the task followed, for each
earlier answer in order, by ``>``, the answer (sanitised, at most
:data:`ECHO_CHARS` characters) and its feedback -- the whole episode so far::

    J10 Q10 K10 T24|K 7 7 A>10 7 7 1:10+7+7+1#=25

A chat template that ends each user turn with ``>`` shows a model the same
text in both prompt formats: observation (one user turn holding this line)
and chat (the task, then each answer as an assistant turn and each feedback
as a user turn).

Example:
    >>> from gym_generalpoints.cards import parse_hand
    >>> from gym_generalpoints.verifier import Hand
    >>> hand = Hand.from_cards(parse_hand("KS 7H 7D AC"))
    >>> task_text(hand)
    'J10 Q10 K10 T24|K 7 7 A'
    >>> judge(hand, "10 7 7 1:(10-7)*(1+7)").verdict
    'correct'
    >>> judged = judge(hand, "10 7 7 1:10+7+7+1")
    >>> judged.verdict, judged.reward, feedback(hand, judged)
    ('wrong_value', -1.0, '#=25')
    >>> feedback(hand, judge(hand, "11 7 7 1:(11-7)*(1+7)"))
    '#N-11+10'
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from gengym_core.spaces import to_prompt_text
from gym_generalpoints.sampling import random_answer, wrong_answer
from gym_generalpoints.verifier import (
    DEFAULT_REWARDS,
    GeneralPointsRewards,
    Hand,
    Judgement,
    verify,
)

#: Longest part of an earlier answer repeated in a revision observation.
ECHO_CHARS = 40
#: Longest answer read (characters, after stripping).
MAX_ANSWER_CHARS = 300
#: Marks the answer that follows in a revision observation (and ends a chat user turn).
ANSWER_MARK = ">"
#: Starts the feedback on an answer.
FEEDBACK_MARK = "#"

_ANSWER = re.compile(r"\s*([0-9]{1,4}(?:[ ,]+[0-9]{1,4}){0,7})\s*:(.*)", re.DOTALL)
_LAYOUT = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


class CompactAnswerError(ValueError):
    """The text is not ``numbers:formula``."""


@dataclass(frozen=True)
class CompactJudgement:
    """A judgement of a compact answer.

    Attributes:
        judgement: The verifier's judgement (reward, verdict, full feedback).
        numbers: The number list the answer gave, when it could be read.
    """

    judgement: Judgement
    numbers: tuple[int, ...] | None

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def reward(self) -> float:
        return self.judgement.reward


def task_text(hand: Hand) -> str:
    """The task line: the rule (J, Q, K values and target) and the cards."""
    j, q, k = hand.face_card_values
    return f"J{j} Q{q} K{k} T{hand.target}|{' '.join(hand.ranks)}"


def answer_text(numbers: Sequence[int], formula: str) -> str:
    """An answer: the numbers, ``:``, the formula."""
    return " ".join(str(int(n)) for n in numbers) + ":" + formula


def parse_answer(text: object) -> tuple[tuple[int, ...], str]:
    """The number list and the formula text of a compact answer.

    Raises:
        CompactAnswerError: ``text`` is not a string of the form
            ``numbers:formula`` (whole numbers of at most four digits).

    Example:
        >>> parse_answer(" 10 7 7 1:(10-7)*(1+7) ")
        ((10, 7, 7, 1), '(10-7)*(1+7)')
    """
    if not isinstance(text, str) or len(text.strip()) > MAX_ANSWER_CHARS:
        raise CompactAnswerError("not a short text")
    m = _ANSWER.fullmatch(text.strip())
    if m is None:
        raise CompactAnswerError("not numbers:formula")
    numbers = tuple(int(n) for n in re.split(r"[ ,]+", m.group(1)))
    return numbers, m.group(2).strip()


def judge(
    hand: Hand,
    text: object,
    *,
    rewards: GeneralPointsRewards = DEFAULT_REWARDS,
    check_numbers: bool = False,
    check_stated_result: bool = False,
    solutions: Sequence[str] = (),
) -> CompactJudgement:
    """Judge a compact answer with the verifier (same stages, same rewards).

    ``check_numbers`` and ``check_stated_result`` are the verifier's: by
    default, as for text-mode JSON answers, the number list is not judged
    (the formula must still use exactly the cards' numbers) and a trailing
    ``= N`` is ignored. Never raises: an answer that is not
    ``numbers:formula`` is ``illegal``.
    """
    try:
        numbers, formula = parse_answer(text)
    except CompactAnswerError as err:
        judged = Judgement(rewards.illegal, "illegal", f"Your answer could not be read: {err}.")
        return CompactJudgement(judged, None)
    fields = json.dumps({"number": list(numbers), "formula": formula})
    judged = verify(
        hand,
        fields,
        rewards=rewards,
        check_numbers=check_numbers,
        check_stated_result=check_stated_result,
        solutions=solutions,
    )
    return CompactJudgement(judged, numbers)


def _number_changes(wrong: Sequence[int], right: Sequence[int]) -> str:
    have, want = Counter(wrong), Counter(right)
    extra = sorted((have - want).elements())
    missing = sorted((want - have).elements())
    return "".join(f"-{n}" for n in extra) + "".join(f"+{n}" for n in missing)


def feedback(hand: Hand, judged: CompactJudgement) -> str:
    """The compact feedback on a judged answer (see the module docs)."""
    j = judged.judgement
    if j.verdict == "correct":
        return FEEDBACK_MARK + "OK"
    if j.verdict == "wrong_value":
        value = j.value if j.value is not None else Fraction(hand.target)
        text = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
        return f"{FEEDBACK_MARK}={text}"
    if j.verdict == "wrong_numbers":
        # The list when it was judged and is wrong, else the formula's numbers.
        listed = judged.numbers or ()
        if j.numbers_correct is False:
            return f"{FEEDBACK_MARK}N" + _number_changes(listed, hand.values)
        return f"{FEEDBACK_MARK}N" + _number_changes(j.formula_numbers or (), hand.values)
    if j.verdict == "budget":
        return FEEDBACK_MARK + "B"
    return FEEDBACK_MARK + "X"


def echo(answer: str) -> str:
    """An earlier answer as a revision observation repeats it: one line, printable, cut."""
    text = to_prompt_text(answer.translate(_LAYOUT)).strip()
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "~"


def revision_text(task: str, turns: Sequence[tuple[str, str]]) -> str:
    """The observation after ``turns`` ((answer, feedback) pairs, oldest first)."""
    return task + "".join(f"{ANSWER_MARK}{echo(answer)}{fb}" for answer, fb in turns)


def oracle_answer(hand: Hand, solution: str) -> str:
    """The answer that states the hand's numbers (largest first) and ``solution``."""
    return answer_text(sorted(hand.values, reverse=True), solution)


def wrong_compact_answer(
    hand: Hand,
    rng: np.random.Generator,
    verdict: str | None = None,
    *,
    check_numbers: bool = False,
    check_stated_result: bool = False,
) -> str:
    """A compact answer the verifier rejects with ``verdict`` (``None``: one at random).

    Built from :func:`~gym_generalpoints.sampling.wrong_answer` (the JSON
    format's wrong answers) and judged again in this format.

    Raises:
        ValueError: The verdict cannot occur in text mode.
    """
    checks = {"check_numbers": check_numbers, "check_stated_result": check_stated_result}
    for _ in range(100):
        data = json.loads(wrong_answer(hand, rng, verdict, **checks))
        text = answer_text(sorted(data["number"], reverse=True), data["formula"])
        judged = judge(hand, text, **checks)
        if judged.verdict != "correct" and (verdict is None or judged.verdict == verdict):
            return text
    raise RuntimeError(f"found no {verdict} compact answer for {hand.ranks}")


def random_compact_answer(
    hand_size: int, face_card_values: Sequence[int], rng: np.random.Generator
) -> str:
    """The random baseline's answer: random cards' numbers under the rule, a random formula."""
    data = json.loads(random_answer(hand_size, face_card_values, rng))
    return answer_text(sorted(data["number"], reverse=True), data["formula"])
