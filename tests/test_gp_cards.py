"""Cards, card values and dealing of the GeneralPoints envs (no Gymnasium needed)."""

from __future__ import annotations

from collections import Counter
from itertools import combinations_with_replacement
from math import comb, prod

import numpy as np
import pytest

from gym_generalpoints.cards import (
    DECK,
    RANKS,
    SUITS_BY_COLOR,
    Card,
    card_values,
    describe_rule,
    parse_card,
    parse_hand,
    rank_values,
)
from gym_generalpoints.dealing import DealRules, count_deals, deal, deal_table
from gym_generalpoints.solver import is_solvable, solvable_hands


def test_deck_has_52_distinct_cards_indexed_by_position():
    assert len(DECK) == 52 and len(set(DECK)) == 52
    assert all(card.index == i for i, card in enumerate(DECK))
    assert Counter(card.rank for card in DECK) == {rank: 4 for rank in RANKS}


@pytest.mark.parametrize(
    ("code", "rank", "suit"),
    [("AS", "A", "S"), ("10h", "10", "H"), (" kd ", "K", "D"), ("2C", "2", "C"), ("QS", "Q", "S")],
)
def test_parse_card_accepts_codes_in_any_case(code, rank, suit):
    assert parse_card(code) == Card(rank, suit)


@pytest.mark.parametrize(
    "code", ["", "A", "1S", "11H", "TS", "KX", "AS ", "A S", "10", 7, None, "♠A"]
)
def test_parse_card_rejects_non_codes_with_a_clear_message(code):
    if code == "AS ":  # surrounding spaces are fine
        assert parse_card(code).code == "AS"
        return
    with pytest.raises(ValueError, match="card code"):
        parse_card(code)


def test_parse_hand_accepts_lists_and_strings_and_rejects_repeats():
    expected = tuple(parse_card(c) for c in ("AS", "7H", "KD", "2C"))
    assert parse_hand(["AS", "7H", "KD", "2C"]) == expected
    assert parse_hand("AS, 7H  KD,2C") == expected
    with pytest.raises(ValueError, match="appears twice"):
        parse_hand(["AS", "7H", "as"])


def test_card_values_follow_the_face_card_rule():
    hand = parse_hand("AS JH QD KC 10S")
    assert card_values(hand) == (1, 10, 10, 10, 10)
    assert card_values(hand, (11, 12, 13)) == (1, 11, 12, 13, 10)
    assert rank_values((11, 12, 13))[-3:] == (11, 12, 13)
    assert describe_rule((10, 10, 10)) == "J, Q and K each count 10"
    assert describe_rule((11, 12, 13)) == "J counts 11, Q counts 12 and K counts 13"


def _expected_deal_count(rules: DealRules) -> int:
    """Count admissible deals combinatorially: per rank multiset, the ways to pick suits."""
    suits = len(rules.suits)
    values = rank_values(rules.face_card_values)
    solvable = solvable_hands(set(values), rules.hand_size, rules.target)
    total = 0
    for ranks in combinations_with_replacement(range(13), rules.hand_size):
        multiplicity = Counter(ranks)
        if any(m > suits for m in multiplicity.values()):
            continue
        if rules.require_face_card and not any(r >= 10 for r in ranks):
            continue
        if tuple(sorted(values[r] for r in ranks)) in solvable:
            total += prod(comb(suits, m) for m in multiplicity.values())
    return total


@pytest.mark.parametrize(
    "rules",
    [
        DealRules(),
        DealRules(face_card_values=(11, 12, 13), require_face_card=True),
        DealRules(suits=SUITS_BY_COLOR["black"]),
        DealRules(suits=SUITS_BY_COLOR["red"], hand_size=3, target=10),
    ],
    ids=["default", "rule-ood", "black", "red-3-cards-make-10"],
)
def test_deal_table_holds_exactly_the_admissible_deals(rules):
    table = deal_table(rules)
    assert len(table) == count_deals(rules) == _expected_deal_count(rules)
    assert not table.flags.writeable
    rows = {tuple(row) for row in table.tolist()}
    assert len(rows) == len(table)  # no deal twice
    values = rank_values(rules.face_card_values)
    for row in table[:: max(1, len(table) // 500)].tolist():
        cards = [DECK[i] for i in row]
        assert len(set(row)) == rules.hand_size
        assert all(card.suit in rules.suits for card in cards)
        assert not rules.require_face_card or any(card.is_face for card in cards)
        assert is_solvable([values[i % 13] for i in row], rules.target)


def test_default_game_solvable_counts_match_the_known_figures():
    # Well-known totals of the 24 game: 566 of the 715 multisets of 1..10 and
    # 1362 of the 1820 multisets of 1..13 can make 24.
    assert len(solvable_hands(range(1, 11), 4, 24)) == 566
    assert len(solvable_hands(range(1, 14), 4, 24)) == 1362


def test_deals_are_reproducible_from_the_generator_alone():
    rules = DealRules()
    first = [deal(rules, np.random.default_rng(7)) for _ in range(3)]
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    seq_a = [deal(rules, rng_a) for _ in range(50)]
    seq_b = [deal(rules, rng_b) for _ in range(50)]
    assert seq_a == seq_b
    assert first[0] == first[1] == first[2]
    assert len({hand for hand in seq_a}) > 45  # different draws differ
    # Cards come in random order, not sorted by deck position.
    assert any([c.index for c in hand] != sorted(c.index for c in hand) for hand in seq_a)


def test_deals_are_roughly_uniform_over_admissible_deals():
    rules = DealRules(suits=SUITS_BY_COLOR["black"], hand_size=2, target=10)
    table = deal_table(rules)
    rng = np.random.default_rng(0)
    seen = Counter(frozenset(c.index for c in deal(rules, rng)) for _ in range(200 * len(table)))
    assert len(seen) == len(table)
    counts = np.array(list(seen.values()))
    assert counts.min() > 120 and counts.max() < 290  # expected 200 each


def test_rule_ood_deals_always_hold_a_face_card():
    rules = DealRules(face_card_values=(11, 12, 13), require_face_card=True)
    rng = np.random.default_rng(3)
    for _ in range(300):
        hand = deal(rules, rng)
        assert any(card.is_face for card in hand)
        assert is_solvable(card_values(hand, (11, 12, 13)), 24)


def test_five_card_hands_are_dealt_by_rejection_sampling():
    rules = DealRules(hand_size=5, suits=SUITS_BY_COLOR["red"])
    rng = np.random.default_rng(5)
    hands = [deal(rules, rng) for _ in range(3)]
    for hand in hands:
        assert len(set(hand)) == 5 and all(card.suit in "HD" for card in hand)
        assert is_solvable(card_values(hand), 24)
    assert hands == [deal(rules, r) for r in [np.random.default_rng(5)] for _ in range(3)]


def test_unreachable_target_raises():
    with pytest.raises(ValueError, match="no hand"):
        deal(DealRules(hand_size=2, target=500), np.random.default_rng(0))
