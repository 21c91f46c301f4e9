"""Plain Gymnasium recipe: gengym envs in vector envs, with text actions.

No trainer library is needed to use gengym: every env is a Gymnasium env
whose action is the model's raw text. This script shows the loop any RL
code writes around a batch of them, and the single-turn "prompt, reward
function" view for libraries that only take reward functions.

1. A vector env of text envs: ``gym.make_vec(env_id, num_envs, ...)`` with
   ``SAME_STEP`` autoreset, so that after an episode ends the returned
   observation already is the next episode's prompt and every sub-env always
   has a prompt to answer (the default ``NEXT_STEP`` mode would spend the
   next call on the reset and ignore its action). Observations are batched
   as a tuple of prompt strings (``obs["text"]``) and, in image envs, an
   image array (``obs["image"]``, shape ``(num_envs, H, W, 3)``); the
   :class:`~gengym_core.wrappers.ChatMessages` wrapper adds each sub-env's
   chat conversation to ``info["messages"]``. Actions are a list of strings.
2. Group rollouts (as GRPO needs): ``envs.reset(seed=[s] * num_envs)`` starts
   every sub-env from the same state.
3. The single-turn view: :func:`gengym_core.single_turn.iter_single_turn_tasks`
   gives prompts (with images) and a pure, picklable ``task.score(answer)``
   per task -- here scored in a process pool, as a data-loader worker would.

Replace :func:`demo_policy` with your model: it maps a batch of prompts (or
chat conversations) to a batch of answers. The demo answers with the env's
oracle at random, and otherwise with a sentence the verifier rejects, so
that rewards, feedback and autoresets all show up.

    python examples/gymnasium_vector.py --env GeneralPoints-L-v0 --num-envs 4 --steps 20
    python examples/gymnasium_vector.py --env VIRL-L-v0 --async --group
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np

from gengym_core.registry import load_env_packages
from gengym_core.single_turn import episode_seed, iter_single_turn_tasks
from gengym_core.wrappers import ChatMessages

#: What the demo policy says when it does not use the oracle.
WRONG_ANSWER = "I am not sure; maybe the answer is 24."


def demo_policy(
    envs: gym.vector.VectorEnv, prompts: list[str], rng: np.random.Generator, p_correct: float
) -> list[str]:
    """A stand-in for a model: the oracle's answer with probability ``p_correct``, else a rejected one."""
    oracle = envs.call("oracle_answer")  # one answer per sub-env, from each env's own state
    return [answer if rng.random() < p_correct else WRONG_ANSWER for answer in oracle]


def run_vector(
    env_id: str,
    num_envs: int,
    steps: int,
    *,
    seed: int = 0,
    asynchronous: bool = False,
    group: bool = False,
    p_correct: float = 0.5,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Step ``num_envs`` copies of an env with the demo policy; return episode statistics."""
    load_env_packages()
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="async" if asynchronous else "sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        wrappers=[ChatMessages],
        **(env_kwargs or {}),
    )
    rng = np.random.default_rng(seed)
    seeds = (
        [episode_seed(seed, 0)] * num_envs
        if group
        else [episode_seed(seed, i) for i in range(num_envs)]
    )
    obs, info = envs.reset(seed=seeds)
    first_prompts = list(obs["text"])
    returns = np.zeros(num_envs)
    finished: list[dict[str, float]] = []
    verdicts: dict[str, int] = {}
    try:
        for _ in range(steps):
            # info["messages"][i] is the chat conversation of sub-env i (for chat models).
            actions = demo_policy(envs, list(obs["text"]), rng, p_correct)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            returns += rewards
            for i in range(num_envs):
                verdict = (
                    info["final_info"]["verdict"][i]
                    if (terminated[i] or truncated[i])
                    else info["verdict"][i]
                )
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
                if terminated[i] or truncated[i]:
                    # SAME_STEP: obs already holds the next episode; the last one is in info["final_obs"].
                    success = bool(info["final_info"]["success"][i])
                    finished.append({"return": float(returns[i]), "success": float(success)})
                    returns[i] = 0.0
    finally:
        envs.close()
    return {
        "first_prompts": first_prompts,
        "episodes": len(finished),
        "mean_return": float(np.mean([e["return"] for e in finished]))
        if finished
        else float("nan"),
        "success_rate": float(np.mean([e["success"] for e in finished]))
        if finished
        else float("nan"),
        "verdicts": verdicts,
    }


def run_single_turn(
    env_id: str, num_tasks: int, *, seed: int = 0, workers: int = 2
) -> dict[str, Any]:
    """Score oracle and rejected answers on single-turn tasks, in a process pool."""
    tasks = list(iter_single_turn_tasks(env_id, num_tasks, seed=seed))
    answers = [t.oracle_answer for t in tasks] + [WRONG_ANSWER] * len(tasks)
    scorers = [t.scorer for t in tasks] * 2
    # Scorers are picklable and need no env: send each one with its answer to a worker.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        scores = [
            f.result() for f in [pool.submit(s, a) for s, a in zip(scorers, answers, strict=True)]
        ]
    return {
        "tasks": len(tasks),
        "oracle_mean": float(np.mean(scores[: len(tasks)])),
        "wrong_mean": float(np.mean(scores[len(tasks) :])),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="GeneralPoints-L-v0", help="gengym env id")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="vector steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--async", dest="asynchronous", action="store_true", help="AsyncVectorEnv (subprocesses)"
    )
    parser.add_argument(
        "--group", action="store_true", help="start every sub-env from the same state"
    )
    parser.add_argument(
        "--p-correct", type=float, default=0.5, help="demo policy: share of oracle answers"
    )
    parser.add_argument(
        "--single-turn-tasks", type=int, default=8, help="tasks for the single-turn part"
    )
    args = parser.parse_args(argv)
    stats = run_vector(
        args.env,
        args.num_envs,
        args.steps,
        seed=args.seed,
        asynchronous=args.asynchronous,
        group=args.group,
        p_correct=args.p_correct,
    )
    print(
        f"{args.env}: {stats['episodes']} episodes, mean return {stats['mean_return']:+.2f}, "
        f"success {stats['success_rate']:.2f}, verdicts {stats['verdicts']}"
    )
    single = run_single_turn(args.env, args.single_turn_tasks, seed=args.seed)
    print(
        f"single-turn: {single['tasks']} tasks; oracle answers score {single['oracle_mean']:+.2f}, "
        f"rejected answers {single['wrong_mean']:+.2f}"
    )
    return {"vector": stats, "single_turn": single}


if __name__ == "__main__":
    main()
