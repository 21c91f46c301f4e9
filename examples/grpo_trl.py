"""Train a model on a gengym env with TRL's GRPOTrainer, through gengym's adapters.

Two modes:

``--mode tools`` (multi-turn, default)
    Each rollout plays one episode: the env's first observation is the
    prompt, the model submits answers with the ``submit_answer`` tool, the
    env's verifier replies with feedback, and the episode return is the
    reward (``trainers.adapters.tool_env_factory``). All completions of a
    prompt start from the same state: the row's seed. Needs a model whose
    chat template supports tool calling and that TRL can parse (Qwen2.5,
    Qwen3, Llama 3.1/3.2 instruct, ...). Text envs; see
    docs/integrations.md for image envs.
``--mode single-turn``
    Each row is one task step with a frozen verifier; the reward function
    scores the completion exactly as the env scores a first attempt
    (``trainers.adapters.single_turn_dataset`` + ``verifier_reward``).
    Works for text LMs and VLMs (image envs send their images the standard
    TRL way).

In tools mode ``--max-tool-calls`` and ``--max-completion-length`` default
to what the env's episodes need (the oracle's rollouts of 16 episodes, plus
room for one wrong answer and half again the tokens, at least 512): V-IRL needs one tool
call per rail point, so its rollouts are long (short routes: up to about 13
calls and 2000 tokens). The adapter warns when the settings cannot hold an
episode.

Smoke run on a CPU, with tiny random models built offline (no download);
``--scripted`` makes the tiny model's generation call the tool (a wrong
answer, then the oracle's answers), so episodes are really played:

    python examples/grpo_trl.py --tiny --scripted --env VIRL-L-v0 --mode tools --max-steps 1
    python examples/grpo_trl.py --tiny --env GeneralPoints-L-v0 --mode tools --max-steps 1
    python examples/grpo_trl.py --tiny --env GeneralPoints-VL-v0 --mode single-turn \\
        --env-kwarg image_size=64 --max-steps 1

A real run (GPU), for example:

    python examples/grpo_trl.py --model Qwen/Qwen2.5-1.5B-Instruct --env GeneralPoints-L-v0 \\
        --num-prompts 2048 --max-steps 500 --num-generations 8 --bf16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", help="model id or local checkpoint (not with --tiny)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="build a tiny random model offline instead (qwen2 text, or llava for image envs)",
    )
    parser.add_argument("--env", default="GeneralPoints-L-v0", help="gengym env id")
    parser.add_argument(
        "--variant", default="", help="evaluation variant: id, rule-ood, visual-ood"
    )
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gym.make keyword argument (repeatable; values read as JSON when they parse)",
    )
    parser.add_argument("--mode", choices=("tools", "single-turn"), default="tools")
    parser.add_argument("--num-prompts", type=int, default=64, help="dataset rows (GRPO groups)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rows and of training")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--num-generations", type=int, default=4, help="completions per prompt")
    parser.add_argument("--batch-size", type=int, default=4, help="per-device train batch size")
    parser.add_argument(
        "--max-completion-length",
        type=int,
        default=None,
        help="completion tokens (default: 256 single-turn; tools mode: what the env's episodes need)",
    )
    parser.add_argument(
        "--max-tool-calls",
        type=int,
        default=None,
        help="tool-calling iterations per rollout (tools mode; default: what the env's episodes need)",
    )
    parser.add_argument(
        "--scripted",
        action="store_true",
        help="with --tiny and tools mode: generation calls the tool (a wrong answer, then the oracle's)",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--bf16", action="store_true", help="train in bfloat16 (GPU)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/grpo_trl"))
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.tiny):
        parser.error("give exactly one of --model and --tiny")
    if args.scripted and not (args.tiny and args.mode == "tools"):
        parser.error("--scripted needs --tiny and --mode tools")
    return args


def load_model(args: argparse.Namespace, image_env: bool) -> tuple[Any, Any]:
    """The model and its processing class (tokenizer, or processor for VLMs)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    path = args.model
    if args.tiny:
        from trainers.testing.tiny_models import build_tiny_model

        family = "llava" if image_env and args.mode == "single-turn" else "qwen2"
        path = build_tiny_model(family, Path(tempfile.mkdtemp(prefix=f"tiny-{family}-")))
    processing_class = AutoProcessor.from_pretrained(path)
    auto = (
        AutoModelForImageTextToText
        if hasattr(processing_class, "image_processor")
        else AutoModelForCausalLM
    )
    model = auto.from_pretrained(path)
    if args.tiny and args.mode == "tools":
        # The tiny model's own template has no tool calls; give it one TRL can parse.
        from trl.chat_template_utils import qwen2_5_chat_template

        processing_class.chat_template = qwen2_5_chat_template
    return model, processing_class


def env_kwargs_of(args: argparse.Namespace) -> dict[str, Any]:
    """The env's ``gym.make`` kwargs: the variant's, then ``--env-kwarg`` on top."""
    from gengym_core.play import parse_env_kwargs
    from gengym_core.single_turn import resolve_env_kwargs

    return resolve_env_kwargs(args.env, parse_env_kwargs(args.env_kwargs), args.variant)


def setup(args: argparse.Namespace) -> tuple[Any, dict[str, Any], bool]:
    """TRL's settings, the trainer's data arguments and whether the env shows images,
    all checked before any model loads.

    Raises:
        ValueError: Settings the env, the adapters or TRL refuse.
    """
    from trainers.eval.evaluate import env_shows_images

    env_kwargs = env_kwargs_of(args)
    image_env = env_shows_images(args.env, env_kwargs)
    if args.tiny and image_env and args.mode == "tools":
        raise ValueError(
            f"{args.env} shows images, and TRL's tool loop feeds them only to Qwen-VL-like models (see "
            "docs/integrations.md); the tiny model of tools mode is a text model. Use --mode single-turn"
        )

    os.environ.setdefault(
        "TRL_EXPERIMENTAL_SILENCE", "1"
    )  # the adapter pins the TRL it was tested with
    from trl import GRPOConfig

    from trainers.adapters import (
        env_success,
        single_turn_dataset,
        suggested_tool_settings,
        tool_env_factory,
        tool_prompt_dataset,
        verifier_reward,
    )

    max_tool_calls, max_length = args.max_tool_calls, args.max_completion_length
    if args.mode == "tools" and (max_tool_calls is None or max_length is None):
        needs = suggested_tool_settings(args.env, env_kwargs=env_kwargs)
        max_tool_calls = max_tool_calls or needs.tool_calls + 1
        max_length = max_length or max(512, 64 * -(-needs.completion_tokens * 3 // 2 // 64))
        print(f"{args.env}: max_tool_calling_iterations={max_tool_calls}, max_completion_length={max_length}")
    config = GRPOConfig(
        output_dir=str(args.output_dir),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=max_length or 256,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        seed=args.seed,
        bf16=args.bf16,
        use_cpu=args.tiny,
        gradient_checkpointing=not args.tiny,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        max_tool_calling_iterations=max_tool_calls if args.mode == "tools" else None,
        # Success is logged beside the env reward but not trained on (weight 0).
        reward_weights=[0.0] if args.mode == "tools" else None,
    )
    if args.mode == "tools":
        data = {
            "train_dataset": tool_prompt_dataset(args.env, args.num_prompts, seed=args.seed),
            "environment_factory": tool_env_factory(args.env, env_kwargs=env_kwargs, grpo_args=config),
            "reward_funcs": [env_success],
        }
    else:
        data = {
            "train_dataset": single_turn_dataset(
                args.env, args.num_prompts, seed=args.seed, env_kwargs=env_kwargs
            ),
            "reward_funcs": [verifier_reward],
        }
    return config, data, image_env


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train; return the metrics logged at the last step.

    Settings that cannot work stop with exit code 2 and a message, before
    any model loads.
    """
    args = parse_args(argv)
    try:
        config, data, image_env = setup(args)
    except ValueError as err:
        print(f"grpo_trl.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    from trl import GRPOTrainer

    model, processing_class = load_model(args, image_env)
    if args.scripted:
        from trainers.testing.scripted_policy import ScriptedToolPolicy, script_tool_calls

        seeds = data["train_dataset"]["seed"]
        script_tool_calls(model, processing_class, ScriptedToolPolicy(args.env, seeds, env_kwargs_of(args)))
    trainer = GRPOTrainer(model=model, args=config, processing_class=processing_class, **data)
    trainer.train()
    metrics = [entry for entry in trainer.state.log_history if "loss" in entry]
    last = metrics[-1] if metrics else {}
    print(f"{args.env} ({args.mode}): {len(metrics)} step(s); last reward {last.get('reward')}")
    return last


if __name__ == "__main__":
    main()
    sys.exit(0)
