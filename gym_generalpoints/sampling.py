"""Answers that are wrong on purpose: revision dialogues, preference pairs, baselines.

:func:`wrong_answer` builds a well-formed JSON answer that the verifier
rejects with a chosen verdict -- the first turn of an SFT revision dialogue or
the rejected side of a preference pair. Every candidate is checked with
:func:`~gym_generalpoints.verifier.verify` before it is returned, so the
verdict is guaranteed, not hoped for. :func:`random_answer` is the random
baseline agent: it knows the answer format and the rule, nothing else.

All randomness comes from the generator passed in (never the env's
``np_random``), so sampling answers does not change the episodes an env deals.

Example:
    >>> import numpy as np
    >>> from gym_generalpoints.cards import parse_hand
    >>> from gym_generalpoints.verifier import Hand, verify
    >>> hand = Hand.from_cards(parse_hand("AS 7H KD 2C"))
    >>> text = wrong_answer(hand, np.random.default_rng(0), "wrong_value")
    >>> verify(hand, text).verdict
    'wrong_value'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from gym_generalpoints.cards import RANKS, rank_values
from gym_generalpoints.solver import solve
from gym_generalpoints.verifier import Hand, verify

#: Verdicts an answer can earn, apart from ``correct`` (``budget`` is the env's, not an answer's).
WRONG_VERDICTS: tuple[str, ...] = ("wrong_value", "wrong_numbers", "wrong_cards", "illegal")
_TRIES = 500


def random_formula(numbers: Sequence[int], rng: np.random.Generator) -> str:
    """A random formula using each number once: random pairs, random operators.

    Example:
        >>> random_formula([1, 2, 3], np.random.default_rng(1))
        '(1/2)/3'
    """
    items = [str(n) for n in numbers]
    while len(items) > 1:
        i, j = (int(k) for k in rng.choice(len(items), size=2, replace=False))
        op = "+-*/"[int(rng.integers(4))]
        merged = f"{items[i]}{op}{items[j]}"
        items = [x for k, x in enumerate(items) if k not in (i, j)]
        items.append(merged if not items else f"({merged})")
    return items[0]


def _answer(cards: Sequence[str], numbers: Sequence[int], formula: str) -> str:
    return json.dumps(
        {"cards": list(cards), "number": [int(n) for n in numbers], "formula": formula}
    )


def random_answer(hand_size: int, face_card_values: Sequence[int], rng: np.random.Generator) -> str:
    """A well-formed answer drawn at random: random cards, their numbers, a random formula."""
    values = rank_values(face_card_values)
    ranks = [int(r) for r in rng.integers(len(RANKS), size=hand_size)]
    numbers = [values[r] for r in ranks]
    return _answer([RANKS[r] for r in ranks], numbers, random_formula(numbers, rng))


def _solution(hand: Hand, rng: np.random.Generator) -> str:
    solutions = solve(hand.values, hand.target)
    return solutions[int(rng.integers(len(solutions)))]


def _wrong_value(hand: Hand, rng: np.random.Generator) -> str:
    return _answer(hand.ranks, hand.values, random_formula(hand.values, rng))


def _wrong_numbers(hand: Hand, rng: np.random.Generator) -> str:
    formula = _solution(hand, rng)
    kind = int(rng.integers(3))
    if kind == 0:  # the formula uses a number no card counts, or one twice
        tokens = [t for t in _number_spans(formula)]
        start, end = tokens[int(rng.integers(len(tokens)))]
        other = int(rng.integers(1, max(hand.values) + 4))
        return _answer(hand.ranks, hand.values, formula[:start] + str(other) + formula[end:])
    if kind == 1:  # a card's number left out
        keep = list(hand.values)
        del keep[int(rng.integers(len(keep)))]
        return _answer(hand.ranks, hand.values, random_formula(keep, rng) if keep else "0")
    # The "number" list is off for one card (e.g. the wrong face-card rule).
    numbers = list(hand.values)
    k = int(rng.integers(len(numbers)))
    numbers[k] = numbers[k] + int(rng.choice([-3, -2, -1, 1, 2, 3]))
    return _answer(hand.ranks, numbers, formula)


def _wrong_cards(hand: Hand, rng: np.random.Generator) -> str:
    ranks = list(hand.ranks)
    k = int(rng.integers(len(ranks)))
    ranks[k] = RANKS[int(rng.integers(len(RANKS)))]
    return _answer(ranks, hand.values, _solution(hand, rng))


def _illegal(hand: Hand, rng: np.random.Generator) -> str:
    formula = _solution(hand, rng)
    spans = _number_spans(formula)
    kind = int(rng.integers(5))
    if kind == 0:  # a card symbol instead of its number
        k = int(rng.integers(len(spans)))
        start, end = spans[k]
        symbol = hand.ranks[hand.values.index(int(formula[start:end]))]
        formula = formula[:start] + (symbol if not symbol.isdigit() else "x") + formula[end:]
    elif kind == 1:  # an unfinished formula
        formula = formula + "+"
    elif kind == 2:  # an unclosed parenthesis
        formula = "(" + formula
    elif kind == 3:  # a unary minus
        formula = "-" + formula
    else:  # "x" for multiplication
        formula = formula.replace("*", " x ") if "*" in formula else formula + " x 1"
    return _answer(hand.ranks, hand.values, formula)


def _number_spans(formula: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, ch in enumerate(formula + " "):
        if ch.isdigit() and start is None:
            start = i
        elif not ch.isdigit() and start is not None:
            spans.append((start, i))
            start = None
    return spans


_BUILDERS: dict[str, Callable[[Hand, np.random.Generator], str]] = {
    "wrong_value": _wrong_value,
    "wrong_numbers": _wrong_numbers,
    "wrong_cards": _wrong_cards,
    "illegal": _illegal,
}


def wrong_answer(
    hand: Hand,
    rng: np.random.Generator,
    verdict: str | None = None,
    *,
    check_cards: bool = False,
    check_numbers: bool | None = None,
    check_stated_result: bool = False,
) -> str:
    """A well-formed answer the verifier rejects with ``verdict``.

    Args:
        hand: A solvable hand and its rules.
        rng: The only source of randomness.
        verdict: One of :data:`WRONG_VERDICTS`; ``None`` picks one of those
            that can occur at random.
        check_cards: Whether cards are judged (image mode); ``wrong_cards``
            can only occur when they are.
        check_numbers: Whether the ``number`` field is judged (``None``: as
            ``check_cards``), as in :func:`~gym_generalpoints.verifier.verify`.
        check_stated_result: Whether a trailing ``= N`` is judged.

    Raises:
        ValueError: The verdict cannot occur here.
    """
    possible = [v for v in WRONG_VERDICTS if check_cards or v != "wrong_cards"]
    if verdict is None:
        verdict = possible[int(rng.integers(len(possible)))]
    if verdict not in possible:
        raise ValueError(
            f"no answer earns {verdict!r} here; possible verdicts: {', '.join(possible)}"
            + ("" if check_cards else " (cards are not judged in this mode)")
        )
    build = _BUILDERS[verdict]
    for _ in range(_TRIES):
        text = build(hand, rng)
        judged = verify(hand, text, check_cards=check_cards, check_numbers=check_numbers,
                        check_stated_result=check_stated_result)
        if judged.verdict == verdict:
            return text
    raise RuntimeError(f"found no {verdict} answer for {hand.ranks} in {_TRIES} tries")
