"""Generation throughput: ``hf`` against ``static`` on a Qwen2-VL-2B-shaped model.

The setting of issue 7: a Qwen2-VL model with the 2B architecture built from
a config (random bf16 weights, nothing downloaded), a GP-VL-like prompt of
873 tokens of which one 640x640 image is 529 (46x46 patches of 14 px, merged
2x2), 256 new tokens with no EOS, batches of 8, 32 and 64. For every batch
both backends run in the same process, one after the other, and the script
prints:

* tokens/s (new tokens of the whole batch per second of ``generate``);
* ms per decode step: (time of the full call - time of a 1-token call) / 255;
* the static backend's first call (which captures the CUDA graphs) apart
  from the steady calls;
* the weight-read limit: decoder weights (text layers + LM head) plus the
  KV cache the step reads, divided by a measured device-to-device copy
  bandwidth, i.e. the fastest a memory-bound decode step could be.

With ``--ppo`` it also times one full PPO update (rollout, scoring,
optimisation) of :class:`trainers.ppo.ppo_trainer.PPOTrainer` with each
backend on GeneralPoints-VL (needs the Qwen2-VL processor, hence
torchvision; the processor's image size is the tiny test processor's, so
prompts are shorter than 873 tokens there).

Run on a GPU (the figures only mean something there)::

    python benchmarks/bench_generation.py --json gen.json
    python benchmarks/bench_generation.py --ppo --batches 8

``--tiny`` runs the same code on a tiny config in seconds (CPU smoke test).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_PATCH = 14
MERGE = 2


def qwen2_vl_config(tiny: bool, vocab_size: int, special: dict[str, int]) -> Any:
    """The Qwen2-VL-2B architecture (or a tiny one), with untied LM head (2.4B parameters)."""
    from transformers import Qwen2VLConfig

    if tiny:
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 2, 2]}
        vision = dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2)
    else:
        text = dict(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
        )
        rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}
        vision = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4)
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            rope_parameters=rope,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            **text,
        ),
        vision_config=dict(
            patch_size=IMAGE_PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=2,
            in_chans=3,
            **vision,
        ),
        tie_word_embeddings=False,
        image_token_id=special["image"],
        video_token_id=special["video"],
        vision_start_token_id=special["start"],
        vision_end_token_id=special["end"],
    )


def build_model(args: Any, device: Any) -> tuple[Any, Any]:
    """Random-weight model on ``device`` and a tokenizer holding its pad id."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from trainers.common.modeling import prepare_tokenizer_for_generation
    from trainers.testing.tiny_models import build_tiny_tokenizer

    tokenizer = prepare_tokenizer_for_generation(build_tiny_tokenizer(None, qwen2_class=True))
    vocab = len(tokenizer) + 64 if args.tiny else 151_936
    special = {"image": vocab - 4, "video": vocab - 3, "start": vocab - 2, "end": vocab - 1}
    config = qwen2_vl_config(args.tiny, vocab, special)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    # No EOS: every row generates exactly --new-tokens tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def make_inputs(
    model: Any, batch: int, prompt_tokens: int, image_size: int, device: Any, seed: int = 0
) -> Any:
    """Left-padded-free prompts of ``prompt_tokens`` tokens with one image each, written as the processor would."""
    import torch
    from transformers import BatchFeature

    cfg = model.config
    side = max(
        MERGE, round(image_size / (IMAGE_PATCH * MERGE)) * MERGE
    )  # patches per side (smart resize)
    image_tokens = side * side // MERGE**2
    text_tokens = prompt_tokens - image_tokens - 2
    if text_tokens < 2:
        raise ValueError(f"{prompt_tokens} tokens cannot hold an image of {image_tokens} tokens")
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(10, cfg.text_config.vocab_size - 10, (batch, text_tokens), generator=gen)
    image = torch.cat(
        [
            torch.full((batch, 1), cfg.vision_start_token_id),
            torch.full((batch, image_tokens), cfg.image_token_id),
            torch.full((batch, 1), cfg.vision_end_token_id),
        ],
        dim=1,
    )
    input_ids = torch.cat([text[:, :8], image, text[:, 8:]], dim=1)
    patch_dim = 3 * 2 * IMAGE_PATCH * IMAGE_PATCH
    pixels = torch.randn(batch * side * side, patch_dim, generator=gen)
    return BatchFeature(
        dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            mm_token_type_ids=(input_ids == cfg.image_token_id).long(),
            pixel_values=pixels.to(model.dtype),
            image_grid_thw=torch.tensor([[1, side, side]] * batch),
        )
    ).to(device)


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, device: Any) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def copy_bandwidth(device: Any) -> float | None:
    """Bytes/s of a large device-to-device copy (read + write), or None on CPU."""
    import torch

    if device.type != "cuda":
        return None
    size, repeats = 2 * 1024**3, 10
    buffers = [torch.empty(size, dtype=torch.uint8, device=device) for _ in range(2)]

    def copies(n: int) -> None:
        for _ in range(n):
            buffers[1].copy_(buffers[0])

    copies(3)
    seconds, _ = timed(functools.partial(copies, repeats), device)
    buffers.clear()
    return 2 * size * repeats / seconds


def decode_bytes(model: Any, batch: int, context: int) -> int:
    """Bytes one decode step must read: text weights, LM head, and the KV cache."""
    text = model.model.language_model
    weights = sum(p.numel() * p.element_size() for p in text.parameters())
    weights += sum(p.numel() * p.element_size() for p in model.lm_head.parameters())
    tcfg = model.config.text_config
    head_dim = tcfg.hidden_size // tcfg.num_attention_heads
    kv = 2 * tcfg.num_hidden_layers * tcfg.num_key_value_heads * head_dim * model.dtype.itemsize
    return weights + batch * context * kv


def bench_generation(args: Any, model: Any, tokenizer: Any, device: Any) -> list[dict[str, Any]]:
    from trainers.generation import make_backend
    from trainers.generation.base import SamplingParams

    bandwidth = copy_bandwidth(device)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=args.temperature, seed=0)
    one = SamplingParams(max_new_tokens=1, temperature=args.temperature, seed=0)
    rows = []
    for batch in args.batches:
        inputs = make_inputs(model, batch, args.prompt_tokens, args.image_size, device)
        for name in args.backends:
            backend = make_backend(name, model, tokenizer)
            backend.eos_ids = set()
            row: dict[str, Any] = {
                "backend": name,
                "batch": batch,
                "prompt_tokens": inputs["input_ids"].shape[1],
            }
            with backend.rollout_phase():
                full = functools.partial(backend.generate, inputs, params)
                first, gen = timed(full, device)
                if name == "static":
                    row["first_call_s"] = round(first, 3)  # includes graph capture
                    row["decoder"] = backend.last_decoder
                    row["fallbacks"] = sorted(set(backend.fallback_reasons))
                prefill, _ = timed(functools.partial(backend.generate, inputs, one), device)
                runs = [timed(full, device)[0] for _ in range(args.repeats)]
            total = min(runs)
            new_tokens = sum(len(ids) for ids in gen.token_ids)
            row.update(
                total_s=round(total, 3),
                prefill_s=round(prefill, 3),
                tokens_per_s=round(new_tokens / total, 1),
                ms_per_step=round(1000 * (total - prefill) / max(1, args.new_tokens - 1), 2),
            )
            if bandwidth:
                context = inputs["input_ids"].shape[1] + args.new_tokens
                limit_ms = 1000 * decode_bytes(model, batch, context) / bandwidth
                row["weight_read_limit_ms"] = round(limit_ms, 2)
                row["x_limit"] = round(row["ms_per_step"] / limit_ms, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            backend.close()
            del backend
    by = {(r["backend"], r["batch"]): r for r in rows}
    print("\nbatch | backend | tokens/s | ms/step | x weight-read limit")
    for r in rows:
        print(
            f"{r['batch']:5d} | {r['backend']:7s} | {r['tokens_per_s']:8.1f} | {r['ms_per_step']:7.2f} | {r.get('x_limit', '-')}"
        )
    for batch in args.batches:
        if ("hf", batch) in by and ("static", batch) in by:
            speedup = by[("static", batch)]["tokens_per_s"] / by[("hf", batch)]["tokens_per_s"]
            print(f"batch {batch}: static is {speedup:.1f}x hf")
    return rows


def bench_ppo(args: Any, model: Any, device: Any) -> list[dict[str, Any]]:
    """One full PPO update per backend, on a checkpoint of the benchmark model."""
    from trainers.ppo.ppo_config import PPOConfig
    from trainers.ppo.ppo_trainer import PPOTrainer, UpdateStats
    from trainers.testing.tiny_models import build_tiny_model, missing_requirement

    family = "qwen2_vl"
    reason = missing_requirement(family)
    if reason is not None:
        print(f"PPO timing skipped: {reason}")
        return []
    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    processor_dir = build_tiny_model(family, work / "processor")
    checkpoint = work / "policy"
    model.save_pretrained(checkpoint)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(processor_dir)
    processor.save_pretrained(checkpoint)
    rows = []
    for name in args.backends:
        cfg = PPOConfig(
            env_id="GeneralPoints-VL-v0",
            model=str(checkpoint),
            output_dir=str(work / f"run-{name}"),
            num_envs=args.batches[0],
            num_steps=1,
            total_updates=1,
            minibatch_size=args.batches[0],
            micro_batch_size=math.gcd(4, args.batches[0]),  # must divide the minibatch
            ppo_epochs=1,
            max_new_tokens=args.new_tokens,
            deepspeed="none",
            dtype="float32" if device.type == "cpu" else "bfloat16",
            gradient_checkpointing=device.type == "cuda",
            tensorboard=False,
            generation_backend=name,
        )
        trainer = PPOTrainer(cfg)
        trainer.backend.eos_ids = set()
        start = time.perf_counter()
        buffer, episodes = trainer.rollout(0)
        buffer.rewards = trainer.score_rewards(buffer)
        synchronize(device)
        rollout = time.perf_counter() - start
        trainer.compute_advantages(buffer)
        trainer.engine.train(True)
        trainer.train_minibatch(buffer, range(buffer.size), UpdateStats())  # one epoch of one minibatch
        synchronize(device)
        total = time.perf_counter() - start
        row = {
            "ppo_backend": name,
            "envs": cfg.num_envs,
            "rollout_s": round(rollout, 2),
            "update_s": round(total, 2),
            "rollout_tokens": episodes.tokens,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del trainer
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--backends", nargs="+", default=["hf", "static"])
    parser.add_argument("--prompt-tokens", type=int, default=873)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.2, help="0 for greedy")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed calls per setting (the fastest counts)"
    )
    parser.add_argument("--ppo", action="store_true", help="also time one PPO update per backend")
    parser.add_argument("--tiny", action="store_true", help="tiny config (a CPU smoke test)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.tiny and args.prompt_tokens == 873:
        args.prompt_tokens, args.image_size, args.new_tokens = 40, 56, 8
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer = build_model(args, device)
    params = sum(p.numel() for p in model.parameters())
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "parameters": params,
        "dtype": str(model.dtype),
    }
    import transformers

    info["transformers"] = transformers.__version__
    print(json.dumps(info), flush=True)
    rows = bench_generation(args, model, tokenizer, device)
    ppo = bench_ppo(args, model, device) if args.ppo else []
    if args.json:
        args.json.write_text(json.dumps({"info": info, "generation": rows, "ppo": ppo}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
