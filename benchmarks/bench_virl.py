"""Benchmark the V-IRL envs on one CPU core.

Measures env steps per second, one step being ``env.step(answer)`` with the
oracle's answer (which the verifier parses and judges in full); the time to
compute the oracle's answer is the agent's and is not counted, resets are.
Each figure runs through ``gym.make`` (checker and order-enforcing wrappers)
and walks whole episodes of successive routes, so every step of image mode
renders a new position:

1. VIRL-L: route generation from a cold start (the first routes of a
   split), then steady-state steps per second over 1,000 cached routes;
2. VIRL-VL at the reference's image size (four 640x640 views) and at four
   256x256 views: *cold* over routes never seen in this process (textures
   of new buildings are drawn as they come into view) and *warm* over the
   same routes again (the city's textures cached; every view is still
   rendered).

Targets (issue 3): VIRL-L >= 20,000 steps/s; VIRL-VL >= 30 steps/s at
640 px and >= 200 steps/s at 256 px.

Every figure is given per second of wall-clock time and per second of this
process's CPU time. On a dedicated core they agree; on a machine other work
shares, the wall-clock figure drops with the share of the core the benchmark
gets, and the CPU-time figure is what one core delivers (still slowed
somewhat by the caches it shares). ``--clock`` picks the one the targets are
judged on. With ``--repeat N`` each VIRL-VL figure is measured N times, the
cold ones on fresh routes each time, and the best and the median are reported
(the best is the least disturbed by other work, as with ``timeit``).

Usage::

    python benchmarks/bench_virl.py [--seconds 3] [--repeat 1] [--clock wall|cpu]
                                    [--json out.json] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

TARGETS = {"VIRL-L": 20_000.0, "VIRL-VL-640": 30.0, "VIRL-VL-256": 200.0}


def pin_to_one_core() -> str:
    """Run on a single core so figures compare across machines with many cores."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity on this platform)"


def steps_per_second(env, routes: range, seconds: float) -> tuple[float, float, int, int]:
    """Oracle steps per second over whole episodes of ``routes`` (cycled), counting
    ``reset`` and ``step`` but not the oracle's answer: per wall-clock second and per
    CPU second, the number of steps, and the number of routes begun."""
    core = env.unwrapped
    wall = cpu = 0.0
    steps = 0
    deadline = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < deadline or steps == 0:
        route = routes[k % len(routes)]
        k += 1
        t0, c0 = time.perf_counter(), time.process_time()
        env.reset(options={"route": route})
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        while True:
            answer = core.oracle_answer()
            t0, c0 = time.perf_counter(), time.process_time()
            _, _, terminated, truncated, info = env.step(answer)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            steps += 1
            if terminated or truncated:
                assert info["success"], info
                break
    return steps / wall, steps / max(cpu, 1e-9), steps, k


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per VIRL-VL figure")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="the clock the targets are judged on")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    pinned = pin_to_one_core()

    import gymnasium as gym

    import gym_virl  # noqa: F401
    from gym_virl.render import texture_cache_info
    from gym_virl.routes import SHORT_ROUTES, route_for

    results: dict[str, float] = {}
    print(f"python {platform.python_version()} on {platform.machine()}, {pinned}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # Route generation, cold: the first 200 routes of the test split of a fresh city.
    t0 = time.perf_counter()
    for i in range(200):
        route_for(7, "test", i, SHORT_ROUTES)
    per_route = (time.perf_counter() - t0) / 200
    results["route_generation_ms"] = per_route * 1e3
    print(f"route generation (cold, incl. the city): {per_route * 1e3:.2f} ms per route")

    env = gym.make("VIRL-L-v0")
    env.reset(seed=0)
    for r in range(1000):
        env.reset(options={"route": r})  # generate and cache the routes
    wall, cpu, n, _ = steps_per_second(env, range(1000), args.seconds)
    results["VIRL-L"], results["VIRL-L-wall"], results["VIRL-L-cpu"] = (wall if args.clock == "wall" else cpu), wall, cpu
    print(f"VIRL-L: {wall:,.0f} steps/s wall-clock, {cpu:,.0f} per CPU second ({n} steps)")

    next_route = 0
    for size in (640, 256):
        env = gym.make("VIRL-VL-v0", view_size=size)
        env.reset(seed=0)
        misses_before = texture_cache_info()["facade"]["misses"]
        limit = env.unwrapped.num_routes()
        cold, warm, seen = [], [], None
        for _ in range(args.repeat):
            # Cold: routes this process has not rendered before.
            if next_route >= limit:
                raise SystemExit(f"out of unseen routes ({limit}); use fewer --repeat or --seconds")
            wall, cpu, n, used = steps_per_second(env, range(next_route, limit), args.seconds)
            cold.append((wall, cpu, n))
            seen = seen or range(next_route, next_route + used)
            next_route += used
        for _ in range(args.repeat):
            # Warm: the routes of the first cold run again (textures cached; every view still rendered).
            warm.append(steps_per_second(env, seen, args.seconds)[:3])
        key = f"VIRL-VL-{size}"
        for label, runs in (("cold", cold), ("warm", warm)):
            suffix = "" if label == "cold" else "-warm"
            walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
            results[f"{key}{suffix}-wall"] = max(walls)
            results[f"{key}{suffix}-cpu"] = max(cpus)
            results[f"{key}{suffix}-wall-median"] = statistics.median(walls)
            results[f"{key}{suffix}-cpu-median"] = statistics.median(cpus)
            results[f"{key}{suffix}"] = results[f"{key}{suffix}-{args.clock}"]
            spread = "" if len(runs) == 1 else (
                f" (best of {len(runs)}; medians {statistics.median(walls):,.1f} and {statistics.median(cpus):,.1f})")
            print(f"VIRL-VL, four {size}x{size} views, {label}: {max(walls):,.1f} steps/s wall-clock, "
                  f"{max(cpus):,.1f} per CPU second{spread}; {sum(r[2] for r in runs)} steps")
        # Facade textures drawn again after eviction cost about 6% of a 256 px step at a
        # 160 MB budget: how many this size drew, and how full the cache is.
        facade = texture_cache_info()["facade"]
        steps = sum(r[2] for r in cold + warm)
        drawn = facade["misses"] - misses_before
        results[f"{key}-facade-textures-per-step"] = drawn / steps
        print(f"  facade textures drawn: {drawn / steps:.2f} per step; cache {facade['bytes'] / 2**20:.0f} of "
              f"{facade['max_bytes'] / 2**20:.0f} MB")

    missed = [k for k, target in TARGETS.items() if results[k] < target]
    for k, target in TARGETS.items():
        mark = "ok" if results[k] >= target else "MISSED"
        print(f"  target {k} >= {target:,.0f} ({args.clock} clock): {results[k]:,.1f} [{mark}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "targets": TARGETS, "clock": args.clock, "repeat": args.repeat,
                       "load_average": os.getloadavg(), "platform": platform.platform()}, f, indent=2)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
