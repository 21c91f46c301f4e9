"""Exact solver: every distinct formula that makes the target from a hand.

A *formula* combines each of the hand's numbers exactly once with the binary
operators ``+ - * /`` and parentheses (no unary minus, no other numbers).
Every such formula is reached by repeatedly picking two of the remaining
values and replacing them by one of the six results ``a+b, a-b, b-a, a*b,
a/b, b/a``. For four numbers that is ``6*6 * 3*6 * 1*6 = 3888`` *programs*.

Two engines walk that search space, with identical results:

* :func:`_program_hits` evaluates all programs of many hands at once with
  numpy, on **unreduced integer fractions** (numerator and denominator in
  ``int64``). Integer arithmetic is exact; the magnitudes are provably
  bounded by ``2**(n-1) * max_value**n`` (see :func:`_fits_int64`), so a
  program reaches the target exactly when ``num == target * den`` and no
  divisor was zero. This is what makes the table of solvable hands cheap
  (every hand of the default game in well under a second).
* :func:`solve_with_fractions` walks the same programs depth-first with
  :class:`fractions.Fraction`. It is the fallback when values are too large
  for ``int64`` and the reference the fast engine is tested against.

*Distinct* solutions are counted up to the laws of arithmetic that only
reorder a formula: ``+`` and ``*`` are commutative and associative, and
subtraction and division are folded in (``a-(b-c)`` is ``a-b+c``,
``a/(b/c)`` is ``a*c/b``). Each solution is printed in that canonical form
with the fewest parentheses, so ``(8-4)*(2+4)`` and ``(4+2)*(8-4)`` are one
solution. Equal values are interchangeable (two 6s give no extra solutions).

Example:
    >>> solve([3, 3, 8, 8])
    ('8/(3-8/3)',)
    >>> is_solvable([1, 1, 1, 1])
    False
    >>> solve([1, 2, 3, 4])
    ('4*3*2*1', '4*3*2/1', '(3+2+1)*4', '(4+2)*(3+1)')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import combinations, combinations_with_replacement
from math import comb, prod

import numpy as np

#: Largest hand the vectorised engine takes (five numbers are 233,280 programs).
MAX_VECTOR_HAND = 5
#: How many (hand, program) cells one numpy batch may hold.
_BATCH_CELLS = 1 << 21
#: The six results of combining the pair (a, b): operator and whether the
#: operands are swapped. ``+`` and ``*`` need only one order.
_PAIR_OPS: tuple[tuple[str, bool], ...] = (
    ("+", False),
    ("-", False),
    ("-", True),
    ("*", False),
    ("/", False),
    ("/", True),
)
_PAIRS: dict[int, tuple[tuple[int, int], ...]] = {}

Tree = int | tuple  # a leaf value or (operator, left, right)


def _pairs(k: int) -> tuple[tuple[int, int], ...]:
    if k not in _PAIRS:
        _PAIRS[k] = tuple(combinations(range(k), 2))
    return _PAIRS[k]


def _fits_int64(values: Sequence[int], target: int) -> bool:
    """Whether unreduced integer fractions of these values stay exact in int64.

    By induction over the formula, numerator and denominator of any
    sub-formula over ``k`` leaves are at most ``2**(k-1) * prod(leaves)`` in
    absolute value; comparing with the target multiplies once more by it.
    """
    n = len(values)
    largest = max([1, *(abs(v) for v in values)])
    return (1 << max(n - 1, 0)) * largest**n * max(1, abs(target)) < (1 << 62)


def _program_hits(values: np.ndarray, target: int) -> np.ndarray:
    """Which programs reach ``target``, for a batch of hands.

    Args:
        values: ``(hands, n)`` integer array, one hand a row.
        target: The number to make.

    Returns:
        ``(hands, programs)`` boolean array; program indices decode with
        :func:`_program_tree`.
    """
    hands, n = values.shape
    num = values.astype(np.int64).reshape(hands, 1, n)
    den = np.ones_like(num)
    valid = np.ones((hands, 1), dtype=bool)
    if n == 1:
        return valid & (num[:, :, 0] == target)
    for k in range(n, 2, -1):
        nums: list[np.ndarray] = []
        dens: list[np.ndarray] = []
        valids: list[np.ndarray] = []
        for i, j in _pairs(k):
            rest = [c for c in range(k) if c != i and c != j]
            an, ad = num[:, :, i], den[:, :, i]
            bn, bd = num[:, :, j], den[:, :, j]
            an_bd, bn_ad, ad_bd = an * bd, bn * ad, ad * bd
            rest_num, rest_den = num[:, :, rest], den[:, :, rest]
            results = (
                (an_bd + bn_ad, ad_bd, valid),
                (an_bd - bn_ad, ad_bd, valid),
                (bn_ad - an_bd, ad_bd, valid),
                (an * bn, ad_bd, valid),
                (an_bd, ad * bn, valid & (bn != 0)),
                (bn_ad, bd * an, valid & (an != 0)),
            )
            for res_num, res_den, ok in results:
                nums.append(np.concatenate([rest_num, res_num[:, :, None]], axis=2))
                dens.append(np.concatenate([rest_den, res_den[:, :, None]], axis=2))
                valids.append(ok)
        num = np.stack(nums, axis=2).reshape(hands, -1, k - 1)
        den = np.stack(dens, axis=2).reshape(hands, -1, k - 1)
        valid = np.stack(valids, axis=2).reshape(hands, -1)
    # Last pair: compare each of the six results with the target without building them.
    an, ad, bn, bd = num[:, :, 0], den[:, :, 0], num[:, :, 1], den[:, :, 1]
    an_bd, bn_ad, goal = an * bd, bn * ad, target * (ad * bd)
    hits = (
        an_bd + bn_ad == goal,
        an_bd - bn_ad == goal,
        bn_ad - an_bd == goal,
        an * bn == goal,
        (bn != 0) & (an_bd == target * (ad * bn)),
        (an != 0) & (bn_ad == target * (bd * an)),
    )
    return (np.stack(hits, axis=2) & valid[:, :, None]).reshape(hands, -1)


def _num_programs(n: int) -> int:
    return prod(comb(k, 2) * len(_PAIR_OPS) for k in range(2, n + 1))


def _program_tree(values: Sequence[int], program: int) -> Tree:
    """Replay program number ``program`` of :func:`_program_hits` symbolically."""
    n = len(values)
    branches = []
    for k in range(2, n + 1):
        program, branch = divmod(program, comb(k, 2) * len(_PAIR_OPS))
        branches.append(branch)
    items: list[Tree] = list(values)
    for k, branch in zip(range(n, 1, -1), reversed(branches), strict=True):
        pair, op_index = divmod(branch, len(_PAIR_OPS))
        i, j = _pairs(k)[pair]
        op, swapped = _PAIR_OPS[op_index]
        node = (op, items[j], items[i]) if swapped else (op, items[i], items[j])
        items = [items[c] for c in range(k) if c != i and c != j] + [node]
    return items[0]


class _Canonical:
    """A formula folded into sums of terms and products of factors.

    ``kind`` is ``"n"`` (a number), ``"+"`` (``pos`` minus ``neg`` terms) or
    ``"*"`` (``pos`` factors over ``neg`` factors). ``key`` is an injective
    string (sums in ``()``, products in ``[]``, parts sorted), so two
    formulas are the same solution exactly when their keys are equal.
    ``value`` is exact: an int, or a Fraction once a division is involved.
    """

    __slots__ = ("kind", "key", "value", "text")

    def __init__(self, kind: str, key: str, value: int | Fraction, text: str) -> None:
        self.kind = kind
        self.key = key
        self.value = value
        self.text = text


def _gather(tree: Tree, positive: bool, ops: str, pos: list, neg: list) -> None:
    if isinstance(tree, tuple) and tree[0] in ops:
        op, left, right = tree
        _gather(left, positive, ops, pos, neg)
        _gather(right, positive if op in "+*" else not positive, ops, pos, neg)
    else:
        (pos if positive else neg).append(_canonical(tree))


def _order(parts: list[_Canonical]) -> list[_Canonical]:
    # Larger parts first reads naturally ("10*3-6"); the key breaks ties.
    return sorted(parts, key=lambda c: (-c.value, c.key))


def _canonical(tree: Tree) -> _Canonical:
    if not isinstance(tree, tuple):
        return _Canonical("n", str(tree), tree, str(tree))
    pos: list[_Canonical] = []
    neg: list[_Canonical] = []
    if tree[0] in "+-":
        _gather(tree, True, "+-", pos, neg)
        key = "(" + "+".join(sorted(c.key for c in pos))
        key += "".join("-" + k for k in sorted(c.key for c in neg)) + ")"
        value = sum(c.value for c in pos) - sum(c.value for c in neg)
        # Terms of a folded sum are numbers or products: no parentheses needed.
        text = "+".join(c.text for c in _order(pos)) + "".join("-" + c.text for c in _order(neg))
        return _Canonical("+", key, value, text)
    _gather(tree, True, "*/", pos, neg)
    key = "[" + "*".join(sorted(c.key for c in pos))
    key += "".join("/" + k for k in sorted(c.key for c in neg)) + "]"
    value = prod(c.value for c in pos)
    divisor = prod(c.value for c in neg)
    if divisor != 1:
        value = Fraction(value) / divisor

    def factor(c: _Canonical) -> str:
        return f"({c.text})" if c.kind == "+" else c.text

    text = "*".join(factor(c) for c in _order(pos)) + "".join("/" + factor(c) for c in _order(neg))
    return _Canonical("*", key, value, text)


def _distinct(trees: Iterable[Tree], target: int) -> tuple[str, ...]:
    """Canonical texts of the distinct solutions among ``trees``, simplest first."""
    texts: dict[str, str] = {}
    for tree in trees:
        canonical = _canonical(tree)
        if canonical.value != target:  # an exact re-check of every solution
            raise AssertionError(
                f"solver produced {canonical.text} = {canonical.value}, not {target}"
            )
        texts.setdefault(canonical.key, canonical.text)
    return tuple(sorted(texts.values(), key=lambda t: (len(t), t)))


def solve_with_fractions(values: Sequence[int], target: int = 24) -> tuple[str, ...]:
    """All distinct solutions, by a plain depth-first search over Fractions.

    Slower than :func:`solve` (about 10 ms for four numbers) but free of any
    bound on the values; :func:`solve` uses it when ``int64`` could overflow.
    """
    goal = Fraction(target)
    found: list[Tree] = []

    def search(items: list[tuple[Fraction, Tree]]) -> None:
        if len(items) == 1:
            if items[0][0] == goal:
                found.append(items[0][1])
            return
        for i, j in _pairs(len(items)):
            (a, ta), (b, tb) = items[i], items[j]
            rest = [item for c, item in enumerate(items) if c != i and c != j]
            search([*rest, (a + b, ("+", ta, tb))])
            search([*rest, (a - b, ("-", ta, tb))])
            search([*rest, (b - a, ("-", tb, ta))])
            search([*rest, (a * b, ("*", ta, tb))])
            if b:
                search([*rest, (a / b, ("/", ta, tb))])
            if a:
                search([*rest, (b / a, ("/", tb, ta))])

    search([(Fraction(v), int(v)) for v in values])
    return _distinct(found, target)


def _check_hand(values: Sequence[int]) -> tuple[int, ...]:
    hand = tuple(sorted(int(v) for v in values))
    if not hand:
        raise ValueError("a hand needs at least one number")
    return hand


#: Program indices that reach the target, kept from the batched evaluation of
#: :func:`solvable_hands`, so that solving a hand seen there skips numpy.
_BATCH_HITS: dict[tuple[tuple[int, ...], int], np.ndarray] = {}
_BATCH_HITS_LIMIT = 20_000


@lru_cache(maxsize=8192)
def _solve_sorted(values: tuple[int, ...], target: int) -> tuple[str, ...]:
    if len(values) > MAX_VECTOR_HAND or not _fits_int64(values, target):
        return solve_with_fractions(values, target)
    programs = _BATCH_HITS.get((values, target))
    if programs is None:
        programs = np.flatnonzero(_program_hits(np.array([values], dtype=np.int64), target)[0])
    return _distinct((_program_tree(values, int(p)) for p in programs), target)


def solve(values: Sequence[int], target: int = 24) -> tuple[str, ...]:
    """Every distinct solution for a hand, simplest (shortest) first.

    Args:
        values: The numbers of the hand, in any order.
        target: The number to make.

    Returns:
        Formula texts (e.g. ``"(10-4)*(2+2)"``) in canonical form; empty when
        the hand is unsolvable. Results are cached per hand.
    """
    return _solve_sorted(_check_hand(values), int(target))


def count_solutions(values: Sequence[int], target: int = 24) -> int:
    """Number of distinct solutions of a hand (see :func:`solve`)."""
    return len(solve(values, target))


@lru_cache(maxsize=65536)
def _is_solvable_sorted(values: tuple[int, ...], target: int) -> bool:
    if len(values) > MAX_VECTOR_HAND or not _fits_int64(values, target):
        return bool(solve_with_fractions(values, target))
    return bool(_program_hits(np.array([values], dtype=np.int64), target).any())


def is_solvable(values: Sequence[int], target: int = 24) -> bool:
    """Whether any formula makes ``target`` from the hand (cached per hand)."""
    return _is_solvable_sorted(_check_hand(values), int(target))


def solvable_hands(
    domain: Iterable[int], hand_size: int, target: int = 24
) -> frozenset[tuple[int, ...]]:
    """Every solvable multiset of ``hand_size`` numbers drawn from ``domain``.

    Evaluates all hands in numpy batches, so the whole table of a default game
    (715 multisets of 1..10, or 1820 of 1..13) takes a fraction of a second.

    Args:
        domain: The distinct numbers a card can count.
        hand_size: Numbers per hand.
        target: The number to make.

    Returns:
        Sorted value tuples of the solvable hands.
    """
    numbers = sorted({int(v) for v in domain})
    hands = np.array(list(combinations_with_replacement(numbers, hand_size)), dtype=np.int64)
    if hands.size == 0:
        return frozenset()
    largest = max(abs(numbers[0]), abs(numbers[-1]))
    if hand_size > MAX_VECTOR_HAND or not _fits_int64([largest] * hand_size, target):
        return frozenset(tuple(int(v) for v in row) for row in hands if is_solvable(row, target))
    rows = max(1, _BATCH_CELLS // _num_programs(hand_size))
    solvable: list[tuple[int, ...]] = []
    for start in range(0, len(hands), rows):
        batch = hands[start : start + rows]
        hits = _program_hits(batch, target)
        ok = hits.any(axis=1)
        for row, row_hits in zip(batch[ok].tolist(), hits[ok], strict=True):
            hand = tuple(row)
            solvable.append(hand)
            if len(_BATCH_HITS) < _BATCH_HITS_LIMIT:
                _BATCH_HITS[hand, target] = np.flatnonzero(row_hits)
    return frozenset(solvable)
