"""The pretraining stage: tokenizer, data, encoding as the trainers encode, and a few steps of the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gengym_core.cli import main as gengym_main  # noqa: E402
from gengym_core.registry import make  # noqa: E402
from gym_generalpoints import compact  # noqa: E402
from trainers.common.config import ConfigError  # noqa: E402
from trainers.pretrain.data import ENV_ID, ExampleMaker  # noqa: E402
from trainers.pretrain.pretrain_config import PretrainConfig  # noqa: E402
from trainers.pretrain.pretrain_trainer import (  # noqa: E402
    collate,
    encode_examples,
    learning_rate_at,
    length_batches,
)
from trainers.pretrain.tokenizer import build_tokenizer  # noqa: E402

TINY = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--intermediate-size", "64"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_round_trips_text_and_reads_10_to_13_as_one_token(tokenizer):
    text = "J11 Q12 K13 T24|Q 2 10 A>12 2 10 1:12*2*(10-10+1)#N-10+13 {}~ 113"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(tokenizer("10 11 12 13 14", add_special_tokens=False)["input_ids"]) == [
        "10", " ", "11", " ", "12", " ", "13", " ", "1", "4"
    ]
    assert len(tokenizer) < 128


def test_chat_template_marks_the_answer_and_ends_it_with_eos(tokenizer):
    messages = [{"role": "user", "content": "J10 Q10 K10 T24|K 7 7 A"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<bos>J10 Q10 K10 T24|K 7 7 A>"
    full = messages + [{"role": "assistant", "content": [{"type": "text", "text": "10 7 7 1:(10-7)*(1+7)"}]}]
    enc = tokenizer.apply_chat_template(full, return_dict=True, return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer) == "10 7 7 1:(10-7)*(1+7)<eos>"


def test_examples_are_pure_verified_and_what_the_env_shows():
    config = PretrainConfig(seed=3, revision_share=0.5)
    maker, again = ExampleMaker(config), ExampleMaker(config)
    examples = [maker.example(i) for i in range(150)]
    assert [again.example(i) for i in (7, 3, 120)] == [examples[7], examples[3], examples[120]]
    assert any(e.revisions for e in examples) and any(not e.revisions for e in examples)
    assert len({e.target for e in examples}) > 3 and len({e.rule for e in examples}) > 50
    for e in examples:
        assert e.rule != (11, 12, 13)
        # The task line states the rule and target the example was made under.
        j, q, k = e.rule
        assert e.prompt.startswith(f"J{j} Q{q} K{k} T{e.target}|")
        assert e.prompt.count(">") == e.revisions and e.prompt.count("#") == e.revisions
        numbers, _ = compact.parse_answer(e.answer)
        assert len(numbers) == 4


def test_revision_prompts_replay_through_the_env():
    config = PretrainConfig(seed=1, revision_share=1.0)
    maker = ExampleMaker(config)
    for index in range(30):
        e = maker.example(index)
        env = make(ENV_ID, face_card_values=list(e.rule), target=e.target)
        task, *turns = e.prompt.split(">")
        # Replay: the task's cards (any suits), then every wrong answer; the env must show the same text.
        ranks = task.split("|")[1].split()
        suits = iter("SHDC" * 2)
        codes = [r + next(suits) for r in ranks]
        obs, _ = env.reset(options={"cards": codes})
        for turn in turns:
            answer, _, fb = turn.rpartition("#")
            obs, _, terminated, _, info = env.step(answer)
            assert info["feedback"] == "#" + fb and not terminated
        assert obs["text"] == e.prompt
        assert env.step(e.answer)[1] == 5.0
        env.close()


def test_encoding_matches_the_trainers_sft_encoding(tokenizer):
    from trainers.common.inputs import encode_for_sft

    examples = [("J10 Q10 K10 T24|K 7 7 A", "10 7 7 1:(10-7)*(1+7)", 0), ("J3 Q5 K9 T12|Q 2 A 3>1:1#X", "5 2 1 3:5*2-1+3", 1)]
    encoded = encode_examples(tokenizer, examples)
    batch = collate(encoded, [0, 1], tokenizer.pad_token_id)
    conversations = [
        [{"role": "user", "content": [{"type": "text", "text": p}]}, {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        for p, a, _ in examples
    ]
    sft = encode_for_sft(tokenizer, conversations)
    assert batch["input_ids"].tolist() == sft["input_ids"].tolist()
    assert batch["labels"].tolist() == sft["labels"].tolist()


def test_schedule_and_length_batches():
    config = PretrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert learning_rate_at(0, config) == pytest.approx(0.1)
    assert learning_rate_at(9, config) == pytest.approx(1.0)
    assert learning_rate_at(99, config) == pytest.approx(0.1, abs=1e-3)
    lengths = list(np.random.default_rng(0).integers(10, 100, size=1000))
    batches = length_batches(lengths, 64, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))


def test_config_is_validated():
    with pytest.raises(ConfigError, match="divide by num_heads"):
        PretrainConfig(hidden_size=100, num_heads=6)
    with pytest.raises(ConfigError, match="face values"):
        PretrainConfig(face_value_max=14)


def test_pretrain_command_trains_a_few_steps_and_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "model"
    args = ["pretrain", "--output-dir", str(out), "--num-examples", "96", "--max-steps", "3", "--batch-size", "16",
            "--warmup-steps", "1", "--log-every", "1", "--eval-every", "0", "--eval-hands", "4", "--no-progress-bar", *TINY]
    assert gengym_main(args) == 0
    record = json.loads((out / "gengym_training.json").read_text())
    assert record["method"] == "pretrain" and record["steps"] == 3 and record["train_tokens"] > 0
    assert record["gflops"] == pytest.approx(6 * record["num_params"] * record["train_tokens"] / 1e9)
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    steps = [row for row in log if "step" in row]
    assert [row["step"] for row in steps] == [1, 2, 3] and all(row["tokens_per_s"] > 0 for row in steps)
    assert "id/success" in steps[-1] and "ood/numbers_right" in steps[-1]
    assert not (tmp_path / "model.tmp").exists()

    from trainers.common.modeling import load_model_and_processor

    loaded = load_model_and_processor(out)
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and not loaded.is_vision
    # Existing output folders are never overwritten.
    capsys.readouterr()
    assert gengym_main(args) == 2
    assert "exists" in capsys.readouterr().err
