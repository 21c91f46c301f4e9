"""Judging a model's answer: a pure function from (hand, raw text) to a judgement.

The model answers with a JSON object holding ``cards`` (the card symbols it
sees), ``number`` (what they count under the rule in force) and ``formula``.
Parsing is tolerant (code fences, prose, trailing commas, single quotes: see
:func:`gengym_core.answers.parse_json_answer`); judging is strict and exact.

The formula is read with :mod:`ast` (never evaluated by Python) after a
character whitelist: ASCII digits, ``+ - * /``, parentheses and whitespace.
``x`` and ``X`` are rejected (a letter is not an operator), but the
typographic ``×``, ``÷`` and ``−`` (U+2212) are read as ``*``, ``/`` and
``-``. Only whole numbers without leading zeros and the four binary
operators are accepted: no unary minus (every card is used as dealt, so
``-`` must stand between two operands), no powers, no decimal points, no
implicit multiplication. A trailing ``= N`` is ignored, as the reference
code ignores everything from the first ``=`` on; with
``check_stated_result`` only one ``= <whole number>`` may follow, and an
``N`` that is not what the formula equals is a wrong value. The value is computed
exactly (ints, and :class:`fractions.Fraction` once a division appears), so
``8/(3-8/3)`` is exactly 24. Length (:data:`MAX_FORMULA_CHARS`) and
parenthesis depth (:data:`MAX_FORMULA_DEPTH`) are bounded before parsing,
which bounds the work; ``RecursionError`` and ``MemoryError`` are caught
anyway.

Stages and rewards (paper defaults, configurable through
:class:`GeneralPointsRewards`). Every stage is checked and every problem
found is reported in the feedback; the reward and verdict are those of the
*first* failing stage, in this order:

1. ``wrong_cards`` (-1.5, only where cards are checked -- image mode by
   default): the ``cards`` list is not the dealt cards (compared as a
   multiset of ranks; suits may be given and are ignored). Recognition comes
   first, as in the reference code: what follows from misread cards is a
   consequence, not a second offence.
2. ``illegal`` (-3): no readable JSON object, a missing or ill-typed key, or
   an illegal formula (characters, syntax, unary minus, division by zero).
3. ``wrong_numbers`` (-2): the formula does not use each card's number
   exactly once (unused, repeated or foreign numbers), or, where numbers are
   checked (image mode by default), the ``number`` list is not what the
   dealt cards count under the rule.
4. ``wrong_value`` (-1): a legal formula over exactly the right numbers whose
   value is not the target.
5. ``correct`` (+5).

In image mode the feedback never names a card the model has not shown it
sees: misread cards are named, missed ones only counted, and unused card
numbers are named only once the cards were read correctly.

Example:
    >>> from gym_generalpoints.cards import parse_hand
    >>> hand = Hand.from_cards(parse_hand("AS 7H KD 2C"))
    >>> verify(hand, '{"cards": ["A", "7", "K", "2"], "number": [1, 7, 10, 2], "formula": "7*2+10*1"}').reward
    5.0
    >>> j = verify(hand, "{'cards': ['A','7','K','2'], 'number': [1,7,10,2], 'formula': '(7+1)*(10-2)',}")
    >>> j.verdict, j.reward, j.feedback
    ('wrong_value', -1.0, 'The formula (7+1)*(10-2) equals 64, not 24.')
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gengym_core.answers import AnswerFormatError, get_field, parse_json_answer
from gengym_core.protocol import check_reward_values
from gengym_core.spaces import to_prompt_text
from gym_generalpoints.cards import (
    DEFAULT_FACE_CARD_VALUES,
    FACE_RANKS,
    RANKS,
    Card,
    card_values,
    describe_rule,
)

#: The verdict categories; ``correct`` is the only one that accepts the answer.
VERDICTS: tuple[str, ...] = (
    "correct",
    "wrong_value",
    "wrong_numbers",
    "wrong_cards",
    "illegal",
    "budget",
)
#: Keys of the answer object.
ANSWER_KEYS: tuple[str, ...] = ("cards", "number", "formula")
#: Longest formula read (characters, after stripping).
MAX_FORMULA_CHARS = 256
#: Deepest parenthesis nesting read.
MAX_FORMULA_DEPTH = 24
#: Longest piece of model text quoted back in feedback.
_QUOTE_CHARS = 60

_TRANSLATE = str.maketrans(
    {"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "\t": " ", "\n": " ", "\r": " "}
)
_FORMULA_CHARS = frozenset("0123456789+-*/() ")
_RHS = re.compile(r"\s*([+-]?[0-9]{1,12})\s*")
_IMPLICIT_PRODUCT = re.compile(r"[0-9)]\s*\(|\)\s*[0-9]")
_LEADING_ZERO = re.compile(r"(?<![0-9])0[0-9]")
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,18}\s*")
_RANK_WORDS = {"ACE": "A", "JACK": "J", "QUEEN": "Q", "KING": "K", "TEN": "10"}
_SUIT_SUFFIX = re.compile(
    r"(?:\s*(?:OF\s+)?(?:SPADES?|HEARTS?|DIAMONDS?|CLUBS?)|\s*[SHDC\u2660\u2665\u2666\u2663\u2664\u2661\u2662\u2667])$"
)
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True)
class GeneralPointsRewards:
    """The reward of each verdict (paper Appendix A.3 defaults).

    Attributes:
        correct: The formula makes the target with exactly the dealt numbers.
        wrong_value: A legal formula over the right numbers with another value.
        wrong_numbers: The ``number`` field or the formula's numbers are not
            exactly the cards' numbers (unused, repeated or foreign).
        wrong_cards: The ``cards`` field names other cards (image mode).
        illegal: Unreadable answer or illegal formula.
        budget: The verification budget is used up (given by the env).
        prefix: If set, the reward for an incomplete formula that is a prefix
            of a known solution (the reference code's +1 shaping reward);
            ``None`` (default) turns it off.
    """

    correct: float = 5.0
    wrong_value: float = -1.0
    wrong_numbers: float = -2.0
    wrong_cards: float = -1.5
    illegal: float = -3.0
    budget: float = -1.0
    prefix: float | None = None

    def __post_init__(self) -> None:
        check_reward_values(self, (*VERDICTS, "prefix"), optional=("prefix",))

    def for_verdict(self, verdict: str) -> float:
        """The reward of a verdict category."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
        return float(getattr(self, verdict))


DEFAULT_REWARDS = GeneralPointsRewards()


@dataclass(frozen=True, slots=True)
class Hand:
    """The dealt cards and the rules an answer is judged under.

    Attributes:
        cards: The dealt cards, in the order shown.
        values: What each card counts under ``face_card_values``.
        target: The number to make.
        face_card_values: What J, Q and K count.
        ranks: The card symbols in hand order, as the answer's ``cards`` lists
            them (derived from ``cards`` when not given).
    """

    cards: tuple[Card, ...]
    values: tuple[int, ...]
    target: int = 24
    face_card_values: tuple[int, int, int] = DEFAULT_FACE_CARD_VALUES
    ranks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.values) != len(self.cards):
            raise ValueError(f"{len(self.cards)} cards but {len(self.values)} values")
        if len(self.ranks) != len(self.cards):
            object.__setattr__(self, "ranks", tuple(card.rank for card in self.cards))

    @classmethod
    def from_cards(
        cls,
        cards: Sequence[Card],
        *,
        target: int = 24,
        face_card_values: Sequence[int] = DEFAULT_FACE_CARD_VALUES,
    ) -> Hand:
        """A hand whose values follow from the cards and the face-card rule."""
        faces = tuple(int(v) for v in face_card_values)
        return cls(tuple(cards), card_values(cards, faces), int(target), faces)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Judgement:
    """What the verifier concluded about one answer.

    Attributes:
        reward: The reward of the first failing stage (or of ``correct``).
        verdict: One of :data:`VERDICTS`.
        feedback: Every problem found, in words meant for the model.
        cards_correct: Whether ``cards`` named the dealt cards; ``None`` when
            cards were not checked or the answer could not be read.
        numbers_correct: Whether ``number`` listed the cards' values; ``None``
            when numbers were not checked or the answer could not be read.
        value: The formula's exact value, when it is legal.
        formula_numbers: The numbers the formula uses, in order, when legal.
        prefix_credit: The answer earned the optional prefix reward.
    """

    reward: float
    verdict: str
    feedback: str
    cards_correct: bool | None = None
    numbers_correct: bool | None = None
    value: Fraction | None = None
    formula_numbers: tuple[int, ...] | None = None
    prefix_credit: bool = False


class FormulaError(ValueError):
    """The formula is illegal; the message is feedback for the model."""


def _quote(text: str, limit: int = _QUOTE_CHARS) -> str:
    return to_prompt_text(text, max_chars=limit)


def _char_name(ch: str) -> str:
    if ch.isascii() and ch.isprintable():
        return repr(ch)
    return f"U+{ord(ch):04X}"


def _fraction_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def _formula_ast(formula: str) -> tuple[ast.expr, Fraction | None]:
    """Check a formula's text and parse it; returns the expression and the claimed ``= N``."""
    text = formula.translate(_TRANSLATE).strip()
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(
            f"The formula is {len(text)} characters long; at most {MAX_FORMULA_CHARS} are read."
        )
    claimed: Fraction | None = None
    if "=" in text:
        expression, _, rhs = text.partition("=")
        m = _RHS.fullmatch(rhs)
        if m is None:
            raise FormulaError(
                "Only one trailing '= <whole number>' may follow the formula; "
                f"found '={_quote(rhs, 30)}'."
            )
        claimed, text = Fraction(int(m.group(1))), expression.strip()
    if not text:
        raise FormulaError("The formula is empty.")
    bad = [] if _FORMULA_CHARS.issuperset(text) else sorted(set(text) - _FORMULA_CHARS)
    if bad:
        names = ", ".join(_char_name(ch) for ch in bad[:8]) + (", ..." if len(bad) > 8 else "")
        hint = (
            " Write card numbers, not card symbols."
            if any(ch.upper() in "AJQK" for ch in bad)
            else ""
        )
        hint += " Only whole numbers are allowed." if "." in bad else ""
        raise FormulaError(
            f"The formula contains characters that are not allowed: {names}. Use whole "
            f"numbers, + - * / and parentheses only.{hint}"
        )
    depth = 0
    for pos, ch in enumerate(text):
        if ch == "(":
            depth += 1
            if depth > MAX_FORMULA_DEPTH:
                raise FormulaError(
                    f"Parentheses are nested deeper than {MAX_FORMULA_DEPTH} levels."
                )
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"The ')' at character {pos + 1} of the formula closes nothing.")
    if depth > 0:
        raise FormulaError(
            f"{depth} '(' of the formula {'is' if depth == 1 else 'are'} never closed."
        )
    m = _LEADING_ZERO.search(text)
    if m is not None:
        raise FormulaError(
            f"Numbers must not start with 0 ('{m.group(0)}' at character {m.start() + 1})."
        )
    m = _IMPLICIT_PRODUCT.search(text)
    if m is not None:
        raise FormulaError(
            f"Write '*' for multiplication: '{m.group(0)}' at character {m.start() + 1} of the "
            "formula puts a number and a parenthesis side by side."
        )
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        where = min(max((err.offset or 1), 1), len(text))
        raise FormulaError(
            f"The formula is not valid arithmetic: syntax error at character {where} "
            f"('{_quote(text[max(0, where - 6) : where + 5], 20)}')."
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError("The formula could not be read.") from None
    return tree, claimed


def _evaluate(node: ast.expr, numbers: list[int]) -> int | Fraction:
    """Exact value of a whitelisted expression tree; collects its numbers in order.

    Values stay Python ints until a division makes a Fraction: both are exact,
    and ints are several times cheaper.
    """
    kind = type(node)
    if kind is ast.BinOp:
        op = type(node.op)
        if op in _OPS:
            left = _evaluate(node.left, numbers)
            right = _evaluate(node.right, numbers)
            if op is ast.Add:
                return left + right
            if op is ast.Sub:
                return left - right
            if op is ast.Mult:
                return left * right
            if right == 0:
                raise FormulaError(
                    f"The formula divides by zero: {ast.unparse(node.right)} equals 0."
                )
            return Fraction(left) / right
        if op is ast.Pow:
            raise FormulaError("'**' (power) is not allowed; use + - * / only.")
        if op is ast.FloorDiv:
            raise FormulaError("'//' is not allowed; use a single '/' for division.")
    elif kind is ast.Constant and type(node.value) is int:
        numbers.append(node.value)
        return node.value
    elif kind is ast.UnaryOp:
        raise FormulaError(
            "Unary signs are not allowed: every + and - must stand between two numbers "
            f"(found '{_quote(ast.unparse(node), 30)}')."
        )
    raise FormulaError(f"'{_quote(ast.unparse(node), 30)}' is not allowed in a formula.")


def evaluate_formula(formula: str) -> tuple[Fraction, tuple[int, ...], Fraction | None]:
    """Exact value of a formula text, the numbers it uses and its claimed ``= N``.

    Raises:
        FormulaError: The formula is illegal; the message says why.

    Example:
        >>> evaluate_formula("8 / (3 - 8/3) = 24")
        (Fraction(24, 1), (8, 3, 8, 3), Fraction(24, 1))
    """
    if not isinstance(formula, str):
        raise FormulaError(f'"formula" must be a string, got {_type_name(formula)}.')
    tree, claimed = _formula_ast(formula)
    numbers: list[int] = []
    try:
        value = Fraction(_evaluate(tree, numbers))
    except RecursionError:
        raise FormulaError("The formula is nested too deeply.") from None
    return value, tuple(numbers), claimed


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _as_list(value: Any) -> list[Any] | None:
    """A list field, also accepting one string of comma- or space-separated items."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [item for item in re.split(r"[\s,]+", value.strip().strip("[]")) if item]
    return None


def read_rank(item: Any) -> str | None:
    """The rank a model wrote for one card, or ``None`` if it names none.

    Accepts rank symbols and English names in any case, an optional suit (as a
    letter, a symbol or ``of hearts``) and the number 2-10 written as a number.

    Example:
        >>> [read_rank(x) for x in ["a", "10", 7, "King of Hearts", "QS", "1", "T"]]
        ['A', '10', '7', 'K', 'Q', None, None]
    """
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return str(item) if 2 <= item <= 10 else None
    if not isinstance(item, str) or len(item) > 24:
        return None
    text = item.strip().upper()
    if text in RANKS:
        return text
    text = _SUIT_SUFFIX.sub("", text).strip()
    if text in RANKS:
        return text
    return _RANK_WORDS.get(text)


def _read_number(item: Any) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item if abs(item) < 10**18 else None
    if isinstance(item, float) and item.is_integer() and abs(item) < 1e18:
        return int(item)
    if isinstance(item, str) and _INTEGER.fullmatch(item):
        return int(item)
    return None


def _join(items: Sequence[Any]) -> str:
    words = [str(x) for x in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _parse_answer(text: Any) -> dict[str, Any]:
    """The answer object; clean JSON takes a fast path, anything else the tolerant parser."""
    if isinstance(text, str) and len(text) <= 4096:
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                obj = json.loads(stripped, parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                return obj
    return parse_json_answer(text, expected_keys=ANSWER_KEYS)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _check_cards(hand: Hand, raw: Any, problems: list[str]) -> bool:
    items = _as_list(raw)
    if items is None or len(items) > 64:
        problems.append(f'"cards" must be a list of card symbols, got {_type_name(raw)}.')
        return False
    read = [read_rank(item) for item in items]
    if len(read) == len(hand.ranks) and None not in read and sorted(read) == sorted(hand.ranks):
        return True
    unreadable = [item for item, rank in zip(items, read, strict=True) if rank is None]
    seen = Counter(rank for rank in read if rank is not None)
    dealt = Counter(hand.ranks)
    misread = seen - dealt
    missed = sum((dealt - seen).values())
    if not unreadable and not misread and not missed:
        return True
    parts = []
    if unreadable:
        names = _join([f"'{_quote(str(x), 12)}'" for x in unreadable[:6]])
        verb = "is not a card symbol" if len(unreadable) == 1 else "are not card symbols"
        parts.append(f"{names} {verb} (use A, 2-10, J, Q, K)")
    if misread:
        names = _join(sorted(misread.elements(), key=RANKS.index))
        verb = "is" if sum(misread.values()) == 1 else "are"
        parts.append(f"you listed {names}, which {verb} not among the dealt cards")
    if missed:
        verb = "is" if missed == 1 else "are"
        parts.append(f"{missed} of the {len(hand.cards)} dealt cards {verb} missing from your list")
    problems.append("Card recognition: " + "; ".join(parts) + ".")
    return False


def _check_number_field(hand: Hand, raw: Any, reveal: bool, problems: list[str]) -> bool:
    items = _as_list(raw)
    if items is None or len(items) > 64:
        problems.append(f'"number" must be a list of whole numbers, got {_type_name(raw)}.')
        return False
    read = [_read_number(item) for item in items]
    if len(read) == len(hand.values) and None not in read and sorted(read) == sorted(hand.values):
        return True
    not_numbers = [item for item, n in zip(items, read, strict=True) if n is None]
    listed = Counter(n for n in read if n is not None)
    dealt = Counter(hand.values)
    extra, missing = listed - dealt, dealt - listed
    if not not_numbers and not extra and not missing:
        return True
    parts = []
    if not_numbers:
        names = _join([f"'{_quote(str(x), 12)}'" for x in not_numbers[:6]])
        parts.append(
            f"{names} {'is not a whole number' if len(not_numbers) == 1 else 'are not whole numbers'}"
        )
    if extra:
        parts.append(f"it lists {_join(sorted(extra.elements()))}, which no card counts")
    if missing:
        if reveal:
            parts.append(f"it misses {_join(sorted(missing.elements()))}")
        else:
            count = sum(missing.values())
            parts.append(f"{count} card number{'s are' if count > 1 else ' is'} missing")
    faces = [r for r in hand.ranks if r in FACE_RANKS] if reveal else []
    rule = f" Remember: {describe_rule(hand.face_card_values)}." if faces or not reveal else ""
    problems.append('The "number" list does not match the cards: ' + "; ".join(parts) + "." + rule)
    return False


def _check_formula_numbers(
    hand: Hand, used: Sequence[int], reveal: bool, problems: list[str]
) -> bool:
    if len(used) == len(hand.values) and sorted(used) == sorted(hand.values):
        return True
    used_count, dealt = Counter(used), Counter(hand.values)
    parts = []
    foreign = sorted(n for n in used_count if n not in dealt)
    repeated = sorted(n for n in used_count if n in dealt and used_count[n] > dealt[n])
    unused = dealt - used_count
    if foreign:
        parts.append(
            f"it uses {_join(foreign)}, which {'is' if len(foreign) == 1 else 'are'} not the number of any card"
        )
    for n in repeated:
        times = {1: "once", 2: "twice"}.get(used_count[n], f"{used_count[n]} times")
        cards = "only one card counts" if dealt[n] == 1 else f"only {dealt[n]} cards count"
        parts.append(f"it uses {n} {times} but {cards} {n}")
    if unused:
        if reveal:
            parts.append(f"it does not use {_join(sorted(unused.elements()))}")
        else:
            count = sum(unused.values())
            parts.append(f"it leaves {count} card{'s' if count > 1 else ''} unused")
    problems.append(
        "The formula must use the number of every card exactly once: " + "; ".join(parts) + "."
    )
    return False


def _prefix_of_solution(formula: Any, solutions: Sequence[str]) -> bool:
    if not isinstance(formula, str) or not solutions:
        return False
    text = "".join(formula.translate(_TRANSLATE).split())
    return bool(text) and any(s.startswith(text) and s != text for s in solutions)


def verify(
    hand: Hand,
    text: Any,
    *,
    rewards: GeneralPointsRewards = DEFAULT_REWARDS,
    check_cards: bool = False,
    check_numbers: bool | None = None,
    check_stated_result: bool = False,
    solutions: Sequence[str] = (),
) -> Judgement:
    """Judge one raw model answer against a hand.

    Never raises on any ``text``: unreadable input is an ``illegal`` verdict
    with feedback saying why.

    Args:
        hand: The dealt cards and rules.
        text: The model's raw output (anything; non-strings are illegal).
        rewards: Reward of each verdict.
        check_cards: Judge the ``cards`` field (image mode); when ``False``
            the field may be absent and is ignored.
        check_numbers: Judge the ``number`` field; when ``False`` the field
            may be absent and is ignored. ``None`` (default): as
            ``check_cards`` (the reference judges neither in text mode).
        check_stated_result: Judge a trailing ``= N`` (a false one is a
            wrong value); when ``False`` everything from the first ``=`` on
            is ignored, as in the reference.
        solutions: Known solutions, used only for ``rewards.prefix``.

    Returns:
        The :class:`Judgement`; see the module docstring for the stages.
    """
    try:
        answer = _parse_answer(text)
    except AnswerFormatError as err:
        feedback = f"Your answer could not be read: {_quote(err.message, 160)}. Reply with one JSON object with the keys cards, number and formula."
        return Judgement(rewards.illegal, "illegal", feedback)

    if check_numbers is None:
        check_numbers = check_cards
    problems: list[str] = []
    missing = []
    fields: dict[str, Any] = {}
    for key in ANSWER_KEYS:
        try:
            fields[key] = answer[key] if key in answer else get_field(answer, key)
        except KeyError:
            if (key != "cards" or check_cards) and (key != "number" or check_numbers):
                missing.append(key)
    if missing:
        found = ", ".join(_quote(str(k), 20) for k in list(answer)[:6]) or "none"
        problems.append(
            f"The JSON object lacks the key{'s' if len(missing) > 1 else ''} {_join(missing)} "
            f"(keys found: {found})."
        )

    cards_correct: bool | None = None
    if check_cards and "cards" in fields:
        cards_correct = _check_cards(hand, fields["cards"], problems)
    # In image mode, name hidden card numbers only once the model has read the cards.
    reveal = not check_cards or bool(cards_correct)
    numbers_correct: bool | None = None
    if "number" in fields and check_numbers:
        numbers_correct = _check_number_field(hand, fields["number"], reveal, problems)

    value: Fraction | None = None
    used: tuple[int, ...] | None = None
    illegal = bool(missing)
    formula_numbers_ok = value_ok = False
    formula = fields.get("formula")
    if not check_stated_result and isinstance(formula, str):
        formula = formula.partition("=")[0]
    if "formula" in fields:
        try:
            value, used, claimed = evaluate_formula(formula)
        except FormulaError as err:
            problems.append(str(err))
            illegal = True
        else:
            formula_numbers_ok = _check_formula_numbers(hand, used, reveal, problems)
            shown = _quote(formula.partition("=")[0].strip(), 80)  # the expression, without "= N"
            if value != hand.target:
                problems.append(
                    f"The formula {shown} equals {_fraction_text(value)}, not {hand.target}."
                )
            elif claimed is not None and claimed != value:
                problems.append(
                    f"The formula equals {hand.target}, but you wrote '= {_fraction_text(claimed)}'."
                )
            else:
                value_ok = True
            cards_ok = bool(cards_correct) or not check_cards
            numbers_ok = bool(numbers_correct) or not check_numbers
            if formula_numbers_ok and numbers_ok and value_ok and cards_ok and not missing:
                return Judgement(
                    rewards.correct,
                    "correct",
                    f"Correct: {shown} = {hand.target}.",
                    cards_correct,
                    numbers_correct,
                    value,
                    used,
                )

    if cards_correct is False:
        verdict = "wrong_cards"
    elif illegal:
        verdict = "illegal"
    elif not formula_numbers_ok or (check_numbers and not numbers_correct):
        verdict = "wrong_numbers"
    else:
        verdict = "wrong_value"
    reward = rewards.for_verdict(verdict)
    prefix_credit = False
    if (
        rewards.prefix is not None
        and verdict != "correct"
        and _prefix_of_solution(formula, solutions)
    ):
        reward, prefix_credit = float(rewards.prefix), True
    return Judgement(
        reward,
        verdict,
        " ".join(problems),
        cards_correct,
        numbers_correct,
        value,
        used,
        prefix_credit,
    )
