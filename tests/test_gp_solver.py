"""The exact GeneralPoints solver: known solution sets, unsolvable hands, engine agreement."""

from __future__ import annotations

import random
from itertools import permutations

import pytest

from gym_generalpoints import solver
from gym_generalpoints.solver import (
    count_solutions,
    is_solvable,
    solvable_hands,
    solve,
    solve_with_fractions,
)
from gym_generalpoints.verifier import evaluate_formula

KNOWN = {
    # The classic hands with a single, fraction-only solution.
    (3, 3, 8, 8): ("8/(3-8/3)",),
    (1, 5, 5, 5): ("5*(5-1/5)",),
    (1, 3, 4, 6): ("6/(1-3/4)",),
    (1, 4, 5, 6): ("6/(5/4-1)", "4/(1-5/6)"),
    (1, 6, 11, 13): ("(13*11+1)/6",),
    # Every way to make 24 from 1, 2, 3, 4 up to reordering: the product
    # (with the 1 multiplied or divided), 6*4 and 6*4 again as (4+2)*(3+1).
    (1, 2, 3, 4): ("4*3*2*1", "4*3*2/1", "(3+2+1)*4", "(4+2)*(3+1)"),
    # 7*2+10 with the 1 attached in each distinct place.
    (1, 2, 7, 10): ("7*2*1+10", "7*2+10*1", "7*2+10/1", "7*2/1+10", "(7*2+10)*1", "(7*2+10)/1"),
}


@pytest.mark.parametrize(("hand", "expected"), list(KNOWN.items()))
def test_known_solution_sets(hand, expected):
    assert set(solve(hand)) == set(expected)
    assert set(solve_with_fractions(hand)) == set(expected)
    assert count_solutions(list(reversed(hand))) == len(expected)


@pytest.mark.parametrize(
    ("hand", "target"),
    # Unsolvable because no formula over them exceeds 12 (or 36 for 1..4).
    [
        ((1, 1, 1, 1), 24),
        ((1, 1, 1, 2), 24),
        ((1, 1, 2, 2), 24),
        ((1, 1, 1, 3), 24),
        ((1, 1, 2, 3), 24),
        ((1, 2, 3, 4), 1000),
    ],
)
def test_known_unsolvable_hands(hand, target):
    assert solve(hand, target) == () and not is_solvable(hand, target)
    assert solve_with_fractions(hand, target) == ()


def test_solutions_are_printed_in_canonical_form_simplest_first():
    for hand in [(2, 2, 6, 6), (4, 4, 10, 10), (1, 2, 3, 4), (6, 6, 6, 6)]:
        solutions = solve(hand)
        assert list(solutions) == sorted(solutions, key=lambda s: (len(s), s))
        assert len(set(solutions)) == len(solutions)
    assert solve((4, 4, 10, 10)) == ("(10*10-4)/4",)
    assert "6*6-6-6" in solve((6, 6, 6, 6)) and "6+6+6+6" in solve((6, 6, 6, 6))


def test_every_solution_uses_each_number_once_and_makes_the_target():
    rng = random.Random(0)
    hands = rng.sample(sorted(solvable_hands(range(1, 14), 4, 24)), 60)
    for hand in hands:
        for formula in solve(hand):
            value, numbers, _ = evaluate_formula(formula)
            assert value == 24, formula
            assert sorted(numbers) == sorted(hand), formula


def test_solution_sets_do_not_depend_on_the_order_of_the_numbers():
    for hand in [(3, 3, 8, 8), (2, 5, 7, 11), (1, 2, 3, 4)]:
        sets = {frozenset(solve_with_fractions(p)) for p in set(permutations(hand))}
        assert len(sets) == 1
        assert sets.pop() == frozenset(solve(hand))


def test_vectorised_engine_agrees_with_the_fraction_engine():
    rng = random.Random(1)
    cases = [((rng.randint(1, 13),) * 2 + (rng.randint(1, 13), rng.randint(1, 13)), 24)]
    for _ in range(40):
        size = rng.choice([2, 3, 4, 4, 4])
        hand = tuple(rng.randint(1, 13) for _ in range(size))
        cases.append((hand, rng.choice([24, 24, 10, 1, 0, -3, 36, 100])))
    for hand, target in cases:
        assert solve(hand, target) == solve_with_fractions(hand, target), (hand, target)


def test_solvable_hands_agrees_with_single_hand_solving():
    table = solvable_hands(range(1, 8), 3, 10)
    for hand in [(1, 2, 3), (2, 3, 4), (1, 1, 1), (5, 5, 7), (7, 7, 7), (1, 1, 7)]:
        assert (hand in table) == bool(solve_with_fractions(hand, 10))


def test_five_numbers_and_other_targets():
    assert is_solvable((1, 2, 3, 4, 5)) and count_solutions((1, 2, 3, 4, 5)) > 20
    assert solve((3, 7), 21) == ("7*3",)
    assert solve((5,), 5) == ("5",)
    assert solve((2, 2), 1) == ("2/2",)


def test_large_values_fall_back_to_exact_fractions():
    hand, target = (100_000, 100_000, 3, 3), 10**10
    assert not solver._fits_int64(hand, target)
    assert solve(hand, target) == solve_with_fractions(hand, target)
    assert "100000*100000*3/3" in solve(hand, target)


def test_empty_hand_is_rejected():
    with pytest.raises(ValueError):
        solve(())
