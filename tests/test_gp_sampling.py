"""Deliberately wrong and random GeneralPoints answers earn exactly the verdict asked for."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from gym_generalpoints.cards import Card
from gym_generalpoints.sampling import WRONG_VERDICTS, random_answer, random_formula, wrong_answer
from gym_generalpoints.solver import solvable_hands
from gym_generalpoints.verifier import Hand, evaluate_formula, verify

RANK_OF = {1: "A", 11: "J", 12: "Q", 13: "K"}


def hands(size: int, faces: tuple[int, int, int], count: int, seed: int) -> list[Hand]:
    domain = sorted(set(range(1, 11)) | set(faces))
    rank_for = {v: RANK_OF.get(v, str(v)) for v in range(1, 11)} | dict(
        zip(faces, "JQK", strict=False)
    )
    picked = random.Random(seed).sample(sorted(solvable_hands(domain, size, 24)), count)
    out = []
    for values in picked:
        used: dict[str, int] = {}
        cards = []
        for v in values:
            rank = rank_for[v]
            cards.append(Card(rank, "SHDC"[used.get(rank, 0)]))
            used[rank] = used.get(rank, 0) + 1
        out.append(Hand.from_cards(cards, face_card_values=faces))
    return out


@pytest.mark.parametrize(
    ("size", "faces"), [(4, (10, 10, 10)), (4, (11, 12, 13)), (3, (10, 10, 10)), (2, (11, 12, 13))]
)
def test_every_wrong_verdict_is_produced_on_many_hands(size, faces):
    rng = np.random.default_rng(size)
    for hand in hands(size, faces, 25 if size > 2 else 5, seed=size):
        for check_cards in (False, True):
            for verdict in WRONG_VERDICTS:
                if verdict == "wrong_cards" and not check_cards:
                    continue
                text = wrong_answer(hand, rng, verdict, check_cards=check_cards)
                assert verify(hand, text, check_cards=check_cards).verdict == verdict, text
            text = wrong_answer(hand, rng, check_cards=check_cards)
            assert verify(hand, text, check_cards=check_cards).verdict in WRONG_VERDICTS


def test_random_formulas_use_each_number_once():
    rng = np.random.default_rng(0)
    for _ in range(200):
        numbers = [int(n) for n in rng.integers(1, 14, size=int(rng.integers(1, 6)))]
        formula = random_formula(numbers, rng)
        try:
            _, used, _ = evaluate_formula(formula)
        except ValueError as err:  # only a division by zero can make it illegal
            assert "divides by zero" in str(err)
            continue
        assert sorted(used) == sorted(numbers)


def test_random_answers_are_well_formed_and_reproducible():
    a = [random_answer(4, (11, 12, 13), np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    answer = json.loads(a[0])
    assert len(answer["cards"]) == len(answer["number"]) == 4
    values = {"A": 1, "J": 11, "Q": 12, "K": 13}
    assert answer["number"] == [
        values.get(r, int(r) if r.isdigit() else None) for r in answer["cards"]
    ]
