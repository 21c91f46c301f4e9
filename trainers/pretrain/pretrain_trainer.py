"""Pretraining from scratch: a small Llama on compact GeneralPoints-L oracle play, on CPU.

The whole run reads top to bottom in :func:`train_pretrain`: generate the
examples (:mod:`trainers.pretrain.data`), encode them with the model's own
chat template, build a ``LlamaForCausalLM`` from a ``LlamaConfig``, then
AdamW with a linear warm-up and a cosine decay over batches of examples of
similar length, the loss on the answer tokens only. Every ``eval_every``
steps a quick greedy one-try check on fixed hands of the training rule and
of the paper's OOD rule shows whether the model plays and reads the rule.

The result is an ordinary Hugging Face checkpoint (``save_pretrained``: the
model in safetensors, the tokenizer with its chat template) plus
``gengym_training.json`` -- the compute record the other trainers and the
experiment runner read (``D_init`` of a run that starts from it is the
pretraining tokens) -- and ``training_log.jsonl``. The folder is written
aside and renamed when complete, so ``output_dir`` holds a whole model or
nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from trainers.common.compute import TRAINING_RECORD, count_parameters, sft_flops
from trainers.common.config import ConfigError, config_to_dict
from trainers.pretrain.pretrain_config import PretrainConfig

logger = logging.getLogger(__name__)

#: The log of a run, one JSON object a line, beside the model.
TRAINING_LOG = "training_log.jsonl"
IGNORE_INDEX = -100
#: Examples per data-generation chunk handed to a worker process.
_CHUNK = 2000


def build_model(config: PretrainConfig, tokenizer: Any) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` of the configured size (seeded by the caller)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _make_chunk(args: tuple[dict[str, Any], int, int]) -> list[tuple[str, str, int]]:
    from trainers.pretrain.data import iter_examples

    settings, start, stop = args
    config = PretrainConfig(**settings)
    return [(e.prompt, e.answer, e.revisions) for e in iter_examples(config, start, stop)]


def generate_examples(config: PretrainConfig, workers: int = 1) -> list[tuple[str, str, int]]:
    """``(prompt, answer, revisions)`` of every example, in index order (``workers`` processes)."""
    settings = config_to_dict(config)
    chunks = [(settings, s, min(s + _CHUNK, config.num_examples)) for s in range(0, config.num_examples, _CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        return [row for chunk in chunks for row in _make_chunk(chunk)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return [row for part in pool.map(_make_chunk, chunks) for row in part]


def encode_examples(tokenizer: Any, examples: list[tuple[str, str, int]]) -> list[tuple[list[int], int]]:
    """Token ids of each example (prompt through the chat template, then answer and EOS)
    and where its answer starts."""
    prompts = tokenizer.apply_chat_template(
        [[{"role": "user", "content": p}] for p, _, _ in examples],
        add_generation_prompt=True,
        tokenize=True,
    )["input_ids"]
    answers = tokenizer([a for _, a, _ in examples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p + a + [eos], len(p)) for p, a in zip(prompts, answers, strict=True)]


def length_batches(lengths: list[int], batch_size: int, rng: Any) -> list[list[int]]:
    """Batches of example indices with similar lengths (less padding), in random order.

    Examples are shuffled, cut into pools of 50 batches, each pool sorted by
    length and cut into batches; then the batches are shuffled.
    """
    order = rng.permutation(len(lengths)).tolist()
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        part = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(encoded: list[tuple[list[int], int]], indices: list[int], pad_id: int) -> dict[str, Any]:
    """A right-padded batch with labels on the answers only."""
    import torch

    rows = [encoded[i] for i in indices]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, answer_start) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, answer_start : len(ids)] = input_ids[r, answer_start : len(ids)]
        mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def learning_rate_at(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to the peak, then a cosine down to ``min_lr_ratio`` of it."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return peak * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def quick_check(model: Any, tokenizer: Any, hands: list[tuple[Any, str]], batch_size: int = 128) -> dict[str, float]:
    """Greedy one-try success and rule reading (numbers right) on fixed hands."""
    import torch

    from gym_generalpoints import compact

    solved = numbers_right = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(hands), batch_size):
            part = hands[start : start + batch_size]
            batch = tokenizer.apply_chat_template(
                [[{"role": "user", "content": prompt}] for _, prompt in part],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                padding=True,
            )
            out = model.generate(**batch, max_new_tokens=40, do_sample=False)
            texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            for (hand, _), text in zip(part, texts, strict=True):
                judged = compact.judge(hand, text)
                solved += judged.verdict == "correct"
                numbers_right += judged.numbers is not None and sorted(judged.numbers) == sorted(hand.values)
    model.train()
    return {"success": solved / len(hands), "numbers_right": numbers_right / len(hands)}


def train_pretrain(config: PretrainConfig, *, command: str | None = None) -> Path:
    """Run the pretraining of ``config``; returns the folder of the model.

    Raises:
        ConfigError: ``output_dir`` exists already.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from trainers.pretrain.data import ID_RULE, eval_prompts
    from trainers.pretrain.pretrain_config import PAPER_OOD_RULE
    from trainers.pretrain.tokenizer import build_tokenizer

    out = Path(config.output_dir)
    if out.exists():
        raise ConfigError(f"{out} exists; pretraining writes a new folder (remove it or choose another output_dir)")
    if config.threads:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    started = time.perf_counter()

    # --- data
    tokenizer = build_tokenizer(config.max_position_embeddings)
    examples = generate_examples(config, workers=2)
    encoded = encode_examples(tokenizer, examples)
    too_long = max(len(ids) for ids, _ in encoded)
    if too_long > config.max_position_embeddings:
        raise ConfigError(f"an example is {too_long} tokens long; raise max_position_embeddings")
    data_seconds = time.perf_counter() - started
    checks = {
        "id": eval_prompts(ID_RULE, config.eval_hands, seed=1),
        "ood": eval_prompts(tuple(PAPER_OOD_RULE), config.eval_hands, seed=2),
    }

    # --- model and optimiser
    torch.manual_seed(config.seed)
    model = build_model(config, tokenizer)
    model.train()
    num_params = count_parameters(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    lengths = [len(ids) for ids, _ in encoded]
    plan: list[list[int]] = []

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    log_path = tmp / TRAINING_LOG
    log = log_path.open("w")

    def write_log(row: dict[str, Any]) -> None:
        log.write(json.dumps(row) + "\n")
        log.flush()

    write_log(
        {
            "event": "start",
            "num_params": num_params,
            "examples": len(encoded),
            "example_tokens": int(sum(lengths)),
            "data_seconds": round(data_seconds, 1),
            "threads": threads,
            "load": _load_average(),
        }
    )
    train_tokens = answer_tokens = 0
    window_tokens, window_loss, window_steps = 0, 0.0, 0
    window_start = train_start = time.perf_counter()
    bar = tqdm(total=config.max_steps, desc="pretrain", unit="step", disable=not config.progress_bar)
    for step in range(config.max_steps):
        if not plan:
            plan = length_batches(lengths, config.batch_size, rng)
        batch = collate(encoded, plan.pop(), tokenizer.pad_token_id)
        lr = learning_rate_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        tokens = int(batch["attention_mask"].sum())
        train_tokens += tokens
        answer_tokens += int((batch["labels"] != IGNORE_INDEX).sum())
        window_tokens += tokens
        window_loss += float(loss.detach())
        window_steps += 1
        bar.update(1)
        last = step + 1 == config.max_steps
        if (step + 1) % config.log_every == 0 or last:
            now = time.perf_counter()
            row = {
                "step": step + 1,
                "loss": round(window_loss / window_steps, 4),
                "lr": lr,
                "tokens_per_s": round(window_tokens / (now - window_start), 1),
                "train_tokens": train_tokens,
                "elapsed_s": round(now - train_start, 1),
            }
            if (config.eval_every and (step + 1) % config.eval_every == 0) or last:
                row.update({f"{name}/{k}": v for name, hands in checks.items() for k, v in quick_check(model, tokenizer, hands).items()})
                now = time.perf_counter()  # the check's time is not training throughput
            write_log(row)
            bar.set_postfix(loss=row["loss"], tok_s=row["tokens_per_s"], refresh=False)
            window_tokens, window_loss, window_steps, window_start = 0, 0.0, 0, now
    bar.close()
    seconds = time.perf_counter() - train_start

    # --- save (aside, then renamed)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    record = {
        "method": "pretrain",
        "env_id": "GeneralPoints-L-compact-v0",
        "base_model": "",
        "num_params": num_params,
        "init_tokens": 0,
        "train_tokens": train_tokens,
        "answer_tokens": answer_tokens,
        "gflops": sft_flops(num_params, 0, train_tokens) / 1e9,
        "steps": config.max_steps,
        "train_seconds": round(seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "tokens_per_s": round(train_tokens / seconds, 1),
        "threads": threads,
        "command": command or " ".join(sys.argv),
        "config": config_to_dict(config),
    }
    (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    write_log({"event": "end", "train_seconds": round(seconds, 1), "tokens_per_s": record["tokens_per_s"], "load": _load_average()})
    log.close()
    tmp.rename(out)
    return out


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
