"""Benchmark the GeneralPoints envs on one CPU core.

Measures, in this order (each from a cold start of what it measures):

1. the table of solvable hands: the first deal of a rule set builds it;
2. solving every distinct hand of the default game: all distinct solutions
   of every solvable multiset of card values, under the training rule (J, Q,
   K count 10: 715 multisets of 1..10) and the rule variant (11, 12, 13:
   1820 multisets of 1..13);
3. GP-L episodes per second from a cold start (empty caches, first 2,000
   episodes), then steady-state episodes per second, one episode being ``reset()`` plus one ``step`` with
   the oracle's answer (which the verifier parses and judges in full), for
   GP-L and GP-VL (1200x1200 image), through the raw env class and through
   ``gym.make`` (with its checker and order-enforcing wrappers).

The reference implementation manages about 4 episodes per second in both
modes (it searches for a solution with ``eval`` at every reset and reloads
card images from disk). Targets: GP-L >= 10,000 and GP-VL >= 300 episodes/s.

Usage::

    python benchmarks/bench_generalpoints.py [--seconds 3] [--json out.json] [--strict]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable

TARGETS = {"GP-L": 10_000.0, "GP-VL": 300.0}
REFERENCE_EPS = 4.0


def pin_to_one_core() -> str:
    """Run on a single core so figures compare across machines with many cores."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity on this platform)"


def episodes_per_second(env, seconds: float) -> tuple[float, int]:
    """Episodes (reset + one oracle-verified step) per second, and how many ran."""
    core = env.unwrapped
    env.reset(seed=0)
    for _ in range(200):  # warm sprite and prompt caches
        env.reset()
        env.step(core.oracle_answer())
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            env.reset()
            _, reward, terminated, _, _ = env.step(core.oracle_answer())
            if not (terminated and reward == 5.0):
                raise AssertionError(f"oracle answer not accepted (reward {reward})")
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start), count


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each episode measurement"
    )
    parser.add_argument(
        "--json", type=str, default=None, help="also write the figures to this file"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    pinned = pin_to_one_core()
    import gymnasium as gym

    import gym_generalpoints  # noqa: F401  (registers the ids)
    from gym_generalpoints import solver
    from gym_generalpoints.cards import VARIANT_FACE_CARD_VALUES, rank_values
    from gym_generalpoints.dealing import DealRules, count_deals, deal_table
    from gym_generalpoints.env import GeneralPointsEnv

    results: dict[str, float] = {}
    print(
        f"GeneralPoints benchmark: Python {platform.python_version()}, {platform.machine()}, {pinned}"
    )

    seconds, _ = timed(lambda: deal_table(DealRules()))
    results["deal_table_s"] = seconds
    print(
        f"\ntable of solvable deals, default rules: {seconds * 1e3:.0f} ms "
        f"({count_deals(DealRules()):,} of 270,725 four-card deals are solvable)"
    )

    for name, faces in (("J,Q,K=10", (10, 10, 10)), ("J,Q,K=11,12,13", VARIANT_FACE_CARD_VALUES)):
        solver._solve_sorted.cache_clear()
        solver._is_solvable_sorted.cache_clear()
        solver._BATCH_HITS.clear()
        domain = set(rank_values(faces))
        table_s, solvable = timed(lambda d=domain: solver.solvable_hands(d, 4, 24))
        solve_s, counts = timed(lambda s=solvable: [len(solver.solve(h, 24)) for h in s])
        total = len(list(itertools.combinations_with_replacement(sorted(domain), 4)))
        key = "rule10" if faces == (10, 10, 10) else "rule11"
        results[f"solvable_table_{key}_s"] = table_s
        results[f"solve_all_{key}_s"] = solve_s
        print(
            f"solve every distinct hand ({name}): {len(solvable)} of {total} solvable; "
            f"solvability of all in {table_s * 1e3:.0f} ms; all {sum(counts):,} distinct "
            f"solutions of all in {solve_s:.2f} s ({solve_s / len(solvable) * 1e3:.2f} ms a hand)"
        )

    # Cold start: empty caches, as in a fresh process; includes building the deal table
    # and enumerating the solutions of every newly seen hand.
    solver._solve_sorted.cache_clear()
    solver._is_solvable_sorted.cache_clear()
    solver._BATCH_HITS.clear()
    deal_table.cache_clear()
    env = GeneralPointsEnv(mode="L")
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(2000):
        env.reset()
        env.step(env.oracle_answer())
    cold = 2000 / (time.perf_counter() - start)
    results["GP-L_cold_first_2000_eps"] = cold
    print(f"GP-L cold start, first 2,000 episodes with empty caches: {cold:,.0f} episodes/s")

    print(f"\nepisodes per second (reset + one oracle-verified step), {args.seconds:g} s each:")
    print(f"{'env':8} {'through':16} {'episodes/s':>12} {'target':>8} {'vs reference':>13}")
    ok = True
    for label, env_id, mode in (
        ("GP-L", "GeneralPoints-L-v0", "L"),
        ("GP-VL", "GeneralPoints-VL-v0", "VL"),
    ):
        for through, make in (
            ("env class", lambda m=mode: GeneralPointsEnv(mode=m)),
            ("gym.make", lambda e=env_id: gym.make(e)),
        ):
            env = make()
            rate, _ = episodes_per_second(env, args.seconds)
            env.close()
            results[f"{label}_{through.replace(' ', '_').replace('.', '_')}_eps"] = rate
            passed = rate >= TARGETS[label]
            ok &= passed
            print(
                f"{label:8} {through:16} {rate:12,.0f} {TARGETS[label]:8,.0f} "
                f"{rate / REFERENCE_EPS:12,.0f}x {'' if passed else ' BELOW TARGET'}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
