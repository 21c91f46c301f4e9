"""Dealing solvable hands from one deck, reproducibly and in microseconds.

A deal draws ``hand_size`` distinct cards from one deck (restricted to some
suits for the visual variants), uniformly among the hands that are solvable
under the rules and, for the rule-OOD evaluation, that hold at least one face
card. The generator passed in is the env's ``np_random``: nothing here touches
global random state.

For hands of up to four cards the first deal under a set of rules builds a
table of every admissible deal (at most ``C(52, 4) = 270,725`` rows, built in
a fraction of a second with the vectorised solver) and keeps it; each deal
after that is one ``rng.integers`` call that picks a row and an order of its
cards. Larger hands have too many deals to tabulate; they are drawn by
rejection sampling with the per-hand solvability cache.

Example:
    >>> import numpy as np
    >>> rules = DealRules(suits=("S", "C"), face_card_values=(11, 12, 13), require_face_card=True)
    >>> hand = deal(rules, np.random.default_rng(0))
    >>> len(hand), all(card.suit in "SC" for card in hand), any(card.is_face for card in hand)
    (4, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, combinations, permutations
from math import comb

import numpy as np

from gym_generalpoints.cards import DECK, DEFAULT_FACE_CARD_VALUES, SUITS, Card, rank_values
from gym_generalpoints.solver import is_solvable, solvable_hands

#: Hands up to this size are dealt from a precomputed table.
MAX_TABLE_HAND = 4
#: Rejection sampling gives up after this many unsolvable draws.
MAX_REJECTIONS = 100_000


@dataclass(frozen=True)
class DealRules:
    """What a deal must satisfy.

    Attributes:
        hand_size: Cards per hand.
        target: The number a hand must be able to make.
        face_card_values: What J, Q and K count.
        suits: Suits in the deck dealt from.
        require_face_card: Deal only hands with at least one J, Q or K (the
            paper's rule-OOD evaluation, so that the face-card rule matters).
    """

    hand_size: int = 4
    target: int = 24
    face_card_values: tuple[int, int, int] = DEFAULT_FACE_CARD_VALUES
    suits: tuple[str, ...] = SUITS
    require_face_card: bool = False

    def deck(self) -> tuple[int, ...]:
        """Indices into :data:`~gym_generalpoints.cards.DECK` of the cards dealt from."""
        return tuple(i for i, card in enumerate(DECK) if card.suit in self.suits)

    def admits(self, cards: tuple[Card, ...]) -> bool:
        """Whether a hand of distinct cards satisfies the face-card and solvability rules."""
        if self.require_face_card and not any(card.is_face for card in cards):
            return False
        values = rank_values(self.face_card_values)
        return is_solvable([values[card.index % 13] for card in cards], self.target)


@lru_cache(maxsize=32)
def deal_table(rules: DealRules) -> np.ndarray:
    """Every admissible deal as sorted deck indices, one row each (read-only).

    Raises:
        ValueError: The hand is too large to tabulate.
    """
    if rules.hand_size > MAX_TABLE_HAND:
        raise ValueError(f"hands of {rules.hand_size} cards are not tabulated")
    deck = np.array(rules.deck(), dtype=np.int16)
    n = rules.hand_size
    flat = np.fromiter(
        chain.from_iterable(combinations(range(len(deck)), n)),
        dtype=np.int16,
        count=comb(len(deck), n) * n,
    )
    combos = deck[flat.reshape(-1, n)]
    ranks = combos % 13
    if rules.require_face_card:
        combos, ranks = combos[(ranks >= 10).any(axis=1)], ranks[(ranks >= 10).any(axis=1)]
    values = np.array(rank_values(rules.face_card_values), dtype=np.int64)[ranks]
    values.sort(axis=1)
    solvable = solvable_hands(
        set(rank_values(rules.face_card_values)), rules.hand_size, rules.target
    )
    if solvable:
        # Encode each sorted value tuple as one integer to look all rows up at once.
        base = int(values.max()) + 1
        weights = base ** np.arange(rules.hand_size - 1, -1, -1, dtype=np.int64)
        known = np.array(
            [sum(v * int(w) for v, w in zip(h, weights, strict=True)) for h in solvable]
        )
        keep = np.isin(values @ weights, known)
    else:
        keep = np.zeros(len(combos), dtype=bool)
    table = np.ascontiguousarray(combos[keep])
    table.flags.writeable = False
    return table


@lru_cache(maxsize=8)
def _orders(hand_size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(permutations(range(hand_size)))


def deal(rules: DealRules, rng: np.random.Generator) -> tuple[Card, ...]:
    """Deal one admissible hand, in random order, using only ``rng``.

    Raises:
        ValueError: No hand satisfies the rules (e.g. an unreachable target).
    """
    if rules.hand_size <= MAX_TABLE_HAND:
        table = deal_table(rules)
        if len(table) == 0:
            raise ValueError(f"no hand of {rules.hand_size} cards satisfies {rules}")
        orders = _orders(rules.hand_size)
        # One draw picks both the hand and the order its cards lie in.
        row, order = divmod(int(rng.integers(len(table) * len(orders))), len(orders))
        combo = table[row].tolist()
        return tuple(DECK[combo[i]] for i in orders[order])
    deck = np.array(rules.deck())
    for _ in range(MAX_REJECTIONS):
        hand = tuple(DECK[i] for i in rng.choice(deck, size=rules.hand_size, replace=False))
        if rules.admits(hand):
            return hand
    raise ValueError(f"found no admissible hand in {MAX_REJECTIONS} draws under {rules}")


def count_deals(rules: DealRules) -> int:
    """Number of admissible unordered hands (tabulated hand sizes only)."""
    return len(deal_table(rules))
