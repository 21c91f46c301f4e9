"""One PPO update of a ~2B vision-language model on GeneralPoints-VL: speed and memory.

The setting of issue 5: a LLaVA-shaped model with random weights built from a
config (CLIP ViT-L/14 at 336 px, 576 image tokens, and a Qwen2-1.5B-shaped
decoder with a 151,936-token vocabulary: about 2.2B parameters), nothing
downloaded, trained with :class:`trainers.ppo.ppo_trainer.PPOTrainer` for one
update on GP-VL. Prints, per run:

* rollout tokens/s (generated tokens of the rollout per second) and, for
  comparison, plain ``model.generate`` tokens/s at the same batch size
  outside DeepSpeed (target: rollout >= 80% of it);
* update tokens/s and model FLOPs utilisation of the update phase,
  ``6 N tokens / time / peak`` with the GPU's dense bf16 peak (target on an
  H100: >= 30%);
* peak GPU memory and the time of each phase.

``--max-size`` instead searches the largest decoder (same shape family,
growing depth and width) whose update completes on this GPU with ZeRO-3,
for full fine-tuning and for LoRA: every attempt runs in a process of its
own (a failed one leaves no memory behind), a mode stops at its first
failure, and one random checkpoint at a time is kept on disk. Runs save no
checkpoints (not what is measured; optimizer states alone would fill the
disk from the 7B shape on), so the search is bounded by the GPU, or by the
disk when a checkpoint cannot be written (reported as such).

Run on a GPU::

    python benchmarks/bench_ppo.py --json ppo.json
    python benchmarks/bench_ppo.py --max-size

``--tiny`` runs the same code on a tiny config on the CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Dense bf16 peak FLOP/s of GPUs we may be lent (for MFU).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}

#: Decoder shapes for the size search: (hidden, intermediate, layers, heads, kv heads).
DECODER_SHAPES = {
    "1.5b": (1536, 8960, 28, 12, 2),
    "3b": (2048, 11008, 36, 16, 2),
    "7b": (3584, 18944, 28, 28, 4),
    "14b": (5120, 13824, 48, 40, 8),
    "32b": (5120, 27648, 64, 40, 8),
}
#: The same search on the CPU (``--max-size --tiny``): two tiny attempts, to check the script.
TINY_SHAPES = ("tiny-1", "tiny-2")


def build_checkpoint(out: Path, decoder: str, tiny: bool) -> Path:
    """Save a random LLaVA-shaped checkpoint (config, weights, processor) into ``out``."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from trainers.testing.tiny_models import build_tiny_tokenizer, chat_template

    tokenizer = build_tiny_tokenizer("<image>")
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
        hidden, ffn, layers, heads, kv = 32, 64, 2, 4, 2
        vocab = len(tokenizer)
    else:
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14)
        hidden, ffn, layers, heads, kv = DECODER_SHAPES[decoder]
        vocab = 151_936  # a real vocabulary's LM-head cost; the tokenizer uses the first ids
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **vision},
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": ffn,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=image_token,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    dtype = torch.float32 if tiny else torch.bfloat16
    # Built in its dtype: a float32 build of the 32B shape alone would fill the host's memory.
    model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": vision["image_size"]},
        crop_size={"height": vision["image_size"], "width": vision["image_size"]},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template("<image>"),
    )
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    return out


def plain_generate_tokens_per_s(path: Path, batch: int, new_tokens: int, device: str) -> float:
    """``model.generate`` on GP-VL prompts at ``batch``, outside any engine (the reference)."""
    import torch

    from gengym_core.registry import make
    from trainers.common.inputs import cast_floating_inputs, encode_prompts
    from trainers.common.modeling import load_model_and_processor
    from trainers.common.prompting import turn_prompt

    dtype = "float32" if device == "cpu" else "bfloat16"
    loaded = load_model_and_processor(path, dtype=dtype, device=device)
    env = make("GeneralPoints-VL-v0")
    prompts = []
    for k in range(batch):
        obs, _ = env.reset(seed=k)
        prompts.append(turn_prompt(env, obs, "observation"))
    inputs = encode_prompts(loaded.processor, [p[0] for p in prompts], [p[1] for p in prompts]).to(device)
    cast_floating_inputs(inputs, loaded.model.dtype)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=0.2)
    loaded.model.generate(**inputs, max_new_tokens=2)  # warm-up
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        loaded.model.generate(**inputs, **kwargs)
    _sync(device)
    seconds = time.perf_counter() - start
    del loaded
    _free(device)
    return batch * new_tokens / seconds


def run_update(path: Path, args: argparse.Namespace, *, lora: bool, out: Path) -> dict[str, Any]:
    """One PPO update with the paper's loop; figures from its metrics."""
    import torch

    from trainers.common.metrics import read_metrics
    from trainers.ppo.ppo_config import PPOConfig
    from trainers.ppo.ppo_trainer import PPOTrainer

    config = PPOConfig(
        env_id="GeneralPoints-VL-v0",
        model=str(path),
        output_dir=str(out),
        num_envs=args.batch,
        num_steps=args.steps,
        total_updates=1,
        minibatch_size=args.batch,
        micro_batch_size=args.micro_batch,
        ppo_epochs=1,
        max_new_tokens=args.new_tokens,
        deepspeed=args.engine,
        gradient_checkpointing=not args.tiny,
        lora=lora,
        tensorboard=False,
        save_every=10**6,
        generation_backend=args.generation_backend,
        device="cpu" if args.tiny else "cuda",
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = PPOTrainer(config)
    setup_s = time.perf_counter() - start
    # Saving is not what is measured, and a checkpoint with optimizer states
    # (12 bytes a parameter) would fill the disk from the 7B shape on.
    trainer.save_checkpoint = lambda update: None
    trainer.save_policy = lambda directory, **kwargs: directory
    trainer.train()
    (record,) = read_metrics(out / "metrics.jsonl")
    params = trainer.compute.num_params
    trained_tokens = record["perf/update_tokens_per_s"] * record["perf/update_s"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    flops_per_s = 6 * params * trained_tokens / record["perf/update_s"]
    return {
        "lora": lora,
        "parameters": params,
        "setup_s": setup_s,
        "rollout_s": record["perf/rollout_s"],
        "update_s": record["perf/update_s"],
        "rollout_tokens_per_s": record["perf/rollout_tokens_per_s"],
        "update_tokens_per_s": record["perf/update_tokens_per_s"],
        "update_tflops": flops_per_s / 1e12,
        "mfu": (flops_per_s / peak) if peak else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def max_size(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Largest decoder shape whose update completes, for full fine-tuning and LoRA.

    Shapes are tried from the smallest; each attempt runs in a process of its
    own (``--attempt``), so the memory of a failed one cannot make the next
    fail, and a mode stops at its first failure. Each checkpoint is deleted
    once both modes are done with it (the disk holds one at a time).
    """
    import shutil
    import subprocess

    shapes = TINY_SHAPES if args.tiny else DECODER_SHAPES
    found: dict[str, Any] = {"full": None, "lora": None, "attempts": []}
    going = {"full": True, "lora": True}
    for name in shapes:
        if not any(going.values()):
            break
        path = workdir / f"model-{name}"
        try:
            build_checkpoint(path, name, tiny=args.tiny)
        except (OSError, RuntimeError) as err:  # the disk or the host memory, not the GPU
            found["attempts"].append({"decoder": name, "error": f"cannot build the checkpoint: {err}"})
            break
        for mode in ("full", "lora"):
            if not going[mode]:
                continue
            figures = workdir / f"attempt-{name}-{mode}.json"
            command = [sys.executable, __file__, "--attempt", str(path), "--json", str(figures),
                       "--engine", args.engine, "--generation-backend", args.generation_backend, "--batch", str(args.batch),
                       "--steps", str(args.steps), "--micro-batch", str(args.micro_batch),
                       "--new-tokens", str(args.new_tokens)]
            command += ["--lora"] * (mode == "lora") + ["--tiny"] * args.tiny
            done = subprocess.run(command, capture_output=True, text=True)
            ok = done.returncode == 0 and figures.exists()
            attempt: dict[str, Any] = {"decoder": name, "mode": mode, "ok": ok}
            if ok:
                attempt.update(json.loads(figures.read_text()))
                found[mode] = name
            else:
                tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
                attempt["error"] = "out of memory" if "out of memory" in done.stderr.lower() else tail[0]
                going[mode] = False
            found["attempts"].append(attempt)
            print(f"  {mode} {name}: {'ok' if ok else attempt['error']}", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return found


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main() -> None:
    from trainers.generation import available_backends

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config on the CPU (smoke run)")
    parser.add_argument("--decoder", default="1.5b", choices=list(DECODER_SHAPES), help="decoder shape")
    parser.add_argument("--batch", type=int, default=16, help="envs per process = generation batch")
    parser.add_argument("--steps", type=int, default=2, help="turns per env in the rollout")
    parser.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    parser.add_argument("--new-tokens", type=int, default=256, help="max new tokens per answer")
    parser.add_argument("--engine", default="zero3", choices=["zero3", "zero2", "none"])
    parser.add_argument(
        "--generation-backend", default="hf", choices=available_backends(), help="generation backend"
    )
    parser.add_argument("--max-size", action="store_true", help="search the largest trainable decoder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    # One attempt of the size search, in its own process.
    parser.add_argument("--attempt", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lora", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.steps, args.micro_batch, args.new_tokens = 2, 1, 1, 8
        args.engine = "none" if args.engine == "zero3" else args.engine
    device = "cpu" if args.tiny else "cuda"
    if args.attempt is not None:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run_update(args.attempt, args, lora=args.lora, out=Path(tmp) / "run")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.max_size:
            figures: dict[str, Any] = {"max_size": max_size(args, workdir)}
        else:
            path = build_checkpoint(workdir / "model", args.decoder, args.tiny)
            figures = {"plain_generate_tokens_per_s": plain_generate_tokens_per_s(path, args.batch, args.new_tokens, device)}
            figures["update"] = run_update(path, args, lora=False, out=workdir / "run")
            figures["rollout_vs_plain_generate"] = (
                figures["update"]["rollout_tokens_per_s"] / figures["plain_generate_tokens_per_s"]
            )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
