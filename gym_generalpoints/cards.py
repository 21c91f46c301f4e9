"""Playing cards: ranks, suits, the 52-card deck, card codes and card values.

A card is written as a *code*: its rank (``A``, ``2`` ... ``10``, ``J``,
``Q``, ``K``) followed by its suit letter (``S`` spades, ``H`` hearts, ``D``
diamonds, ``C`` clubs), e.g. ``"AS"``, ``"10H"``, ``"KD"``. Codes are how users
name fixed hands (``env.reset(options={"cards": [...]})``) and how the
renderer keys its sprites.

What a card *counts* depends on the game's rule: the ace counts 1 and number
cards their face value under every rule; the face cards J, Q and K count
``face_card_values`` -- ``(10, 10, 10)`` in the paper's training rule and
``(11, 12, 13)`` in its rule variant.

Example:
    >>> parse_hand("AS 7h KD 2C")
    (Card(rank='A', suit='S'), Card(rank='7', suit='H'), Card(rank='K', suit='D'), Card(rank='2', suit='C'))
    >>> card_values(parse_hand(["QS", "5D"]), face_card_values=(11, 12, 13))
    (12, 5)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Ranks in deck order. ``10`` is written with two characters.
RANKS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
#: The face ranks, whose values the rule variants change.
FACE_RANKS: tuple[str, ...] = ("J", "Q", "K")
#: Suit letters in deck order: spades, hearts, diamonds, clubs.
SUITS: tuple[str, ...] = ("S", "H", "D", "C")
SUIT_NAMES: dict[str, str] = {"S": "spades", "H": "hearts", "D": "diamonds", "C": "clubs"}
#: The suits dealt under each ``suit_colors`` setting. The paper trains GP-VL on
#: black suits and evaluates visual generalisation on red ones.
SUITS_BY_COLOR: dict[str, tuple[str, ...]] = {
    "all": SUITS,
    "black": ("S", "C"),
    "red": ("H", "D"),
}
RED_SUITS: frozenset[str] = frozenset({"H", "D"})

#: Face card values of the paper's training rule and of its rule variant.
DEFAULT_FACE_CARD_VALUES: tuple[int, int, int] = (10, 10, 10)
VARIANT_FACE_CARD_VALUES: tuple[int, int, int] = (11, 12, 13)

_RANK_INDEX = {rank: i for i, rank in enumerate(RANKS)}
_CODE = re.compile(r"(10|[2-9AJQK])([SHDC])")


@dataclass(frozen=True, slots=True)
class Card:
    """One playing card.

    Attributes:
        rank: One of :data:`RANKS`.
        suit: One of :data:`SUITS`.
    """

    rank: str
    suit: str

    @property
    def code(self) -> str:
        """The card's code, rank then suit letter (``"10H"``)."""
        return self.rank + self.suit

    @property
    def is_face(self) -> bool:
        """Whether the card is a J, Q or K."""
        return self.rank in FACE_RANKS

    @property
    def is_red(self) -> bool:
        """Whether the card's suit is hearts or diamonds."""
        return self.suit in RED_SUITS

    @property
    def index(self) -> int:
        """Position in :data:`DECK` (``suit * 13 + rank``)."""
        return SUITS.index(self.suit) * 13 + _RANK_INDEX[self.rank]


#: The 52 cards, suit by suit, each suit in rank order.
DECK: tuple[Card, ...] = tuple(Card(rank, suit) for suit in SUITS for rank in RANKS)
_BY_CODE: dict[str, Card] = {card.code: card for card in DECK}


def parse_card(code: str) -> Card:
    """The card a code names; case and surrounding spaces are ignored.

    Raises:
        ValueError: ``code`` is not a card code; the message says what a code
            looks like.
    """
    if not isinstance(code, str):
        raise ValueError(f"a card code must be a string like 'AS' or '10H', got {code!r}")
    text = code.strip().upper()
    if not _CODE.fullmatch(text):
        raise ValueError(
            f"{code!r} is not a card code: write the rank (A, 2-10, J, Q, K) then the "
            "suit letter (S, H, D, C), e.g. 'AS', '10H', 'KD'"
        )
    return _BY_CODE[text]


def parse_hand(cards: str | Iterable[str]) -> tuple[Card, ...]:
    """Parse a hand given as codes, in a list or one string split by spaces or commas.

    Raises:
        ValueError: A code is invalid or a card appears twice (a hand is dealt
            from one deck).
    """
    if isinstance(cards, str):
        codes = [code for code in re.split(r"[\s,]+", cards) if code]
    elif isinstance(cards, Iterable) and not isinstance(cards, (bytes, Mapping)):
        codes = list(cards)
    else:
        raise ValueError(
            "a hand must be a list of card codes like ['AS', '7H', 'KD', '2C'] or one string "
            f"'AS 7H KD 2C', got {type(cards).__name__}"
        )
    hand = tuple(parse_card(code) for code in codes)
    seen: set[Card] = set()
    for card in hand:
        if card in seen:
            raise ValueError(f"card {card.code} appears twice; a hand is dealt from one deck")
        seen.add(card)
    return hand


def rank_values(face_card_values: Sequence[int] = DEFAULT_FACE_CARD_VALUES) -> tuple[int, ...]:
    """The value of each rank in :data:`RANKS` order under a face-card rule."""
    j, q, k = face_card_values
    return (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, int(j), int(q), int(k))


def card_value(card: Card, face_card_values: Sequence[int] = DEFAULT_FACE_CARD_VALUES) -> int:
    """What one card counts under a face-card rule."""
    return rank_values(face_card_values)[_RANK_INDEX[card.rank]]


def card_values(
    cards: Iterable[Card], face_card_values: Sequence[int] = DEFAULT_FACE_CARD_VALUES
) -> tuple[int, ...]:
    """What each card of a hand counts under a face-card rule, in hand order."""
    values = rank_values(face_card_values)
    return tuple(values[_RANK_INDEX[card.rank]] for card in cards)


def describe_rule(face_card_values: Sequence[int] = DEFAULT_FACE_CARD_VALUES) -> str:
    """The face-card rule in words, as prompts and feedback state it.

    Example:
        >>> describe_rule((10, 10, 10))
        'J, Q and K each count 10'
        >>> describe_rule((11, 12, 13))
        'J counts 11, Q counts 12 and K counts 13'
    """
    j, q, k = face_card_values
    if j == q == k:
        return f"J, Q and K each count {j}"
    return f"J counts {j}, Q counts {q} and K counts {k}"
