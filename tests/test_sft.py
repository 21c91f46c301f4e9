"""SFT on oracle data (trainers.sft) with tiny offline models on CPU."""

from __future__ import annotations

import doctest
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import REPO, SMALL_GP_VL, run_command, tiny_run_config  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from gengym_core.cli import main as gengym_main  # noqa: E402
from trainers.common.compute import TRAINING_RECORD, count_parameters  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict, help_of, resolve_config  # noqa: E402
from trainers.common.inputs import IGNORE_INDEX, encode_prompts  # noqa: E402
from trainers.common.metrics import read_metrics  # noqa: E402
from trainers.common.modeling import get_tokenizer, load_model_and_processor  # noqa: E402
from trainers.data import OracleDataConfig, build_oracle_dataset, clean_messages  # noqa: E402
from trainers.sft import GengymSFTConfig  # noqa: E402
from trainers.sft.sft_trainer import (  # noqa: E402
    SFTCollator,
    keep_last_labelled_run,
    load_training_data,
    train_sft,
)

EXAMPLE_CONFIGS = sorted((REPO / "examples" / "configs").glob("*_sft.yaml"))


def sft_config(model: Path, out: Path, **overrides) -> GengymSFTConfig:
    settings = dict(num_examples=8, max_steps=3, per_device_batch_size=2, learning_rate=5e-3)
    return tiny_run_config(GengymSFTConfig, model, out, **{**settings, **overrides})


def mean_loss(model_path: Path, examples: list[dict]) -> float:
    """Loss of a saved model on examples, with the collator's labels."""
    loaded = load_model_and_processor(model_path)
    batch = SFTCollator(loaded.processor, None)(examples)
    with torch.no_grad():
        return float(loaded.model(**batch).loss)


def changed_tensors(before: Path, after: Path) -> tuple[set[str], set[str]]:
    """(names in both files whose values differ, names that differ between the files)."""
    a, b = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return {k for k in a.keys() & b.keys() if not torch.equal(a[k], b[k])}, a.keys() ^ b.keys()


def generate_after_prompt(model_path: Path, example: dict) -> list[int]:
    """Greedy tokens the saved model writes after an example's prompt."""
    loaded = load_model_and_processor(model_path)
    messages = clean_messages(example["messages"])[:-1]
    images = [list(example["images"])] if example["images"] else None
    inputs = encode_prompts(loaded.processor, [messages], images)
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


# ------------------------------------------------------------------ collator
def test_only_the_last_answer_run_keeps_labels():
    labels = torch.tensor([[-100, 5, 6, -100, -100, 7, 8, -100], [1, 2, -100, -100, -100, -100, -100, -100]])
    kept = keep_last_labelled_run(labels)
    assert kept.tolist() == [[-100, -100, -100, -100, -100, 7, 8, -100], [1, 2, -100, -100, -100, -100, -100, -100]]
    assert keep_last_labelled_run(torch.full((1, 3), IGNORE_INDEX)).tolist() == [[-100] * 3]


@pytest.mark.parametrize(
    ("family", "env_id", "env_kwargs"),
    [("qwen2", "GeneralPoints-L-v0", {}), ("llava", "GeneralPoints-VL-v0", SMALL_GP_VL), ("mllama", "VIRL-VL-v0", {"view_size": 32})],
)
def test_collator_labels_only_the_verified_answer(tiny_model, family, env_id, env_kwargs):
    data = build_oracle_dataset(
        OracleDataConfig(env_id, num_examples=3, env_kwargs=env_kwargs, multi_turn=True), progress=False
    )
    loaded = tiny_model(family)
    tokenizer = get_tokenizer(loaded.processor)
    batch = SFTCollator(loaded.processor, 4096)(list(data))
    for row, example in enumerate(data):
        labels = batch["labels"][row]
        assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == example["answer"] + tokenizer.eos_token
    both = SFTCollator(loaded.processor, 4096, train_on="all_turns")(list(data))
    wrong = clean_messages(data[0]["messages"])[1]["content"][0]["text"]
    assert tokenizer.decode(both["labels"][0][both["labels"][0] != IGNORE_INDEX]).startswith(wrong)


def test_collator_without_generation_markers_finds_the_answer_by_offsets(tiny_model_path):
    loaded = load_model_and_processor(tiny_model_path("qwen2"))
    tokenizer = loaded.processor
    tokenizer.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", tokenizer.chat_template)
    data = build_oracle_dataset(OracleDataConfig("GeneralPoints-L-v0", num_examples=2, multi_turn=True), progress=False)
    batch = SFTCollator(tokenizer, 4096)(list(data))
    labels = batch["labels"][1]
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == data[1]["answer"] + tokenizer.eos_token


def test_a_too_long_example_stops_before_training(tiny_model_path, tmp_path):
    config = sft_config(tiny_model_path("llava"), tmp_path / "run", env_id="GeneralPoints-VL-v0",
                        env_kwargs=SMALL_GP_VL, max_length=64)
    with pytest.raises(ConfigError, match=r"max_length=64.*never truncated") as err:
        train_sft(config)
    assert "image tokens" in str(err.value)
    assert not (tmp_path / "run" / "final").exists()


# ------------------------------------------------------------------ training
def test_text_sft_lowers_the_loss_and_records_its_compute(tiny_model_path, tmp_path):
    base = tiny_model_path("qwen2")
    config = sft_config(base, tmp_path / "run", max_steps=-1, num_train_epochs=2, tensorboard=True)
    examples = list(load_training_data(config, progress=False)[0])
    before = mean_loss(base, examples)

    final = train_sft(config)

    assert final == tmp_path / "run" / "final"
    after = mean_loss(final, examples)
    assert after < before - 0.2, (before, after)
    changed, renamed = changed_tensors(base, final)
    assert changed and not renamed
    assert len(generate_after_prompt(final, examples[0])) > 0

    record = json.loads((final / TRAINING_RECORD).read_text())
    tokenizer = load_model_and_processor(base).processor
    own_lengths = [int(SFTCollator(tokenizer, None)([e])["attention_mask"].sum()) for e in examples]
    num_params = count_parameters(load_model_and_processor(base).model)
    assert record["method"] == "sft" and record["env_id"] == "GeneralPoints-L-v0"
    assert record["base_model"] == str(base) and record["num_params"] == num_params
    assert record["train_tokens"] == 2 * sum(own_lengths)  # two epochs, padding not counted
    assert record["gflops"] == pytest.approx(6 * num_params * record["train_tokens"] / 1e9)

    from trainers.common.compute import init_tokens_of

    assert init_tokens_of(str(final)) == record["train_tokens"]  # PPO continues the compute axis

    logged = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert len(logged) == 8 and logged[-1]["compute/train_tokens"] == record["train_tokens"]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("family", ["llava", "idefics3", "mllama", "qwen2_vl"])
def test_vlm_sft_on_images_trains_and_reloads(tiny_model_path, tmp_path, family):
    base = tiny_model_path(family)
    final = train_sft(sft_config(base, tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL,
                                 num_examples=4, max_steps=2))
    changed, renamed = changed_tensors(base, final)
    assert changed and not renamed
    example = build_oracle_dataset(OracleDataConfig("GeneralPoints-VL-v0", num_examples=1, env_kwargs=SMALL_GP_VL),
                                   progress=False)[0]
    assert len(generate_after_prompt(final, example)) > 0
    assert json.loads((final / TRAINING_RECORD).read_text())["train_tokens"] > 0


def test_lora_trains_adapters_and_writes_the_merged_model(tiny_model_path, tmp_path):
    from peft import PeftModel

    base = tiny_model_path("qwen2")
    final = train_sft(sft_config(base, tmp_path / "run", lora=True, lora_r=4, lora_alpha=8, learning_rate=2e-2,
                                 snapshot_steps=[1]))
    assert (tmp_path / "run" / "snapshots" / "step-000001" / "adapter" / "adapter_config.json").is_file()
    changed, renamed = changed_tensors(base, final)
    assert not renamed and changed
    assert all("proj" in name for name in changed)  # only adapted linear layers moved; norms, embeddings kept
    assert (final / "adapter" / "adapter_config.json").is_file() and not (final / "adapter_config.json").exists()

    merged = load_model_and_processor(final).model
    with_adapter = PeftModel.from_pretrained(load_model_and_processor(base).model, str(final / "adapter")).eval()
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-5, rtol=1e-4)
    assert json.loads((final / TRAINING_RECORD).read_text())["lora"] is True


def test_training_on_a_gengym_data_folder_of_revision_dialogues(tiny_model_path, tmp_path):
    data_dir = tmp_path / "data"
    assert gengym_main(["data", "--env", "VIRL-L-v0", "--n", "6", "--out", str(data_dir), "--multi-turn",
                        "--no-progress"]) == 0
    final = train_sft(sft_config(tiny_model_path("qwen2"), tmp_path / "run", env_id="", dataset=str(data_dir)))
    record = json.loads((final / TRAINING_RECORD).read_text())
    assert record["env_id"] == "VIRL-L-v0" and record["dataset"] == str(data_dir)
    assert record["multi_turn"] is True and record["examples"] == 6

    with pytest.raises(ConfigError, match="holds data of VIRL-L-v0"):
        train_sft(sft_config(tiny_model_path("qwen2"), tmp_path / "x", dataset=str(data_dir)))


def test_resume_continues_steps_and_token_count(tiny_model_path, tmp_path):
    base = tiny_model_path("qwen2")
    first = train_sft(sft_config(base, tmp_path / "run", max_steps=2, save_steps=1))
    tokens_first = json.loads((first / TRAINING_RECORD).read_text())["train_tokens"]
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    final = train_sft(sft_config(base, tmp_path / "run", max_steps=4, save_steps=1, resume=True))
    record = json.loads((final / TRAINING_RECORD).read_text())
    assert record["steps"] == 4 and record["train_tokens"] > tokens_first
    steps = [m["step"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert steps == [1, 2, 3, 4]


def test_resume_from_an_older_checkpoint_shows_redone_steps_once_in_tensorboard(tiny_model_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = tiny_model_path("qwen2")
    train_sft(sft_config(base, tmp_path / "run", max_steps=3, save_steps=2, tensorboard=True))
    # As if killed after logging step 3 but before its checkpoint was written.
    shutil.rmtree(tmp_path / "run" / "checkpoint-3")
    train_sft(sft_config(base, tmp_path / "run", max_steps=4, save_steps=2, tensorboard=True, resume=True))
    steps = [m["step"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert steps == [1, 2, 3, 4]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]


def test_snapshots_along_the_run_are_loadable_with_their_compute(tiny_model_path, tmp_path):
    final = train_sft(sft_config(tiny_model_path("qwen2"), tmp_path / "run", max_steps=3, snapshot_steps=[1, 2]))
    folders = [tmp_path / "run" / "snapshots" / "step-000001", tmp_path / "run" / "snapshots" / "step-000002", final]
    records = [json.loads((folder / TRAINING_RECORD).read_text()) for folder in folders]
    assert [r["steps"] for r in records] == [1, 2, 3]
    tokens = [r["train_tokens"] for r in records]
    assert 0 < tokens[0] < tokens[1] < tokens[2]
    weights = [load_file(folder / "model.safetensors")["model.norm.weight"] for folder in folders]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert load_model_and_processor(folders[0]).processor.chat_template


def test_deepspeed_zero3_through_the_command_line(tiny_model_path, tmp_path):
    """The real ZeRO-3 path in one CPU process, started as a user would."""
    base = tiny_model_path("llava")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gengym_core.cli", "sft", "--env", "GeneralPoints-VL-v0", "--env-kwarg",
           "image_size=[64,64]", "--model", str(base), "--output-dir", str(out), "--deepspeed", "zero3",
           "--max-steps", "2", "--num-examples", "4", "--per-device-batch-size", "2",
           "--gradient-accumulation-steps", "1", "--learning-rate", "1e-3", "--no-tensorboard", "--no-progress-bar",
           "--warmup-ratio", "0", "--snapshot-steps", "1"]
    returncode, stderr = run_command(cmd)
    assert returncode == 0, stderr[-3000:]
    final = out / "final"
    snapshot = out / "snapshots" / "step-000001"
    assert changed_tensors(base, snapshot)[0] and not changed_tensors(base, snapshot)[1]
    assert changed_tensors(snapshot, final)[0]  # the second step moved the weights on
    changed, renamed = changed_tensors(base, final)
    assert changed and not renamed  # gathered from the shards, saved under the model's own names
    record = json.loads((final / TRAINING_RECORD).read_text())
    assert record["steps"] == 2 and record["num_params"] == count_parameters(load_model_and_processor(base).model)
    example = build_oracle_dataset(OracleDataConfig("GeneralPoints-VL-v0", num_examples=1, env_kwargs=SMALL_GP_VL),
                                   progress=False)[0]
    assert len(generate_after_prompt(final, example)) > 0


def test_two_processes_share_the_data_and_count_every_token(tiny_model_path, tmp_path):
    """ZeRO-3 over two CPU processes (torchrun): each trains on its half, the record counts both."""
    base = tiny_model_path("qwen2")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gengym_core.cli", "sft", "--env", "GeneralPoints-L-v0", "--model", str(base), "--output-dir",
           str(out), "--deepspeed", "zero3", "--num-train-epochs", "1", "--num-examples", "8",
           "--per-device-batch-size", "2", "--gradient-accumulation-steps", "1", "--learning-rate", "1e-3",
           "--no-tensorboard", "--no-progress-bar"]
    returncode, stderr = run_command(cmd)
    assert returncode == 0, stderr[-3000:]
    record = json.loads((out / "final" / TRAINING_RECORD).read_text())
    examples = list(load_training_data(sft_config(base, out), progress=False)[0])
    tokenizer = load_model_and_processor(base).processor
    own_lengths = [int(SFTCollator(tokenizer, None)([e])["attention_mask"].sum()) for e in examples]
    assert record["steps"] == 2  # 8 examples / (2 processes x 2 per batch)
    assert record["train_tokens"] == sum(own_lengths)  # every example once, from both processes


def test_deepspeed_zero2_with_lora_through_the_command_line(tiny_model_path, tmp_path):
    base = tiny_model_path("qwen2")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gengym_core.cli", "sft", "--env", "GeneralPoints-L-v0", "--model", str(base),
           "--output-dir", str(out), "--deepspeed", "zero2", "--lora", "--lora-r", "4", "--max-steps", "2",
           "--num-examples", "4", "--learning-rate", "1e-2", "--no-tensorboard", "--no-progress-bar"]
    returncode, stderr = run_command(cmd)
    assert returncode == 0, stderr[-3000:]
    changed, renamed = changed_tensors(base, out / "final")
    assert changed and not renamed and (out / "final" / "adapter" / "adapter_model.safetensors").is_file()


# ------------------------------------------------------------ settings
def test_every_setting_is_documented():
    undocumented = [name for name, text in help_of(GengymSFTConfig).items() if len(text) < 10]
    assert not undocumented


def test_paper_defaults():
    config = GengymSFTConfig()
    assert (config.lr_scheduler, config.warmup_ratio, config.lora) == ("cosine", 0.03, False)
    assert config.resolved_learning_rate(has_images=False) == 1e-6
    assert config.resolved_learning_rate(has_images=True) == 5e-7
    assert GengymSFTConfig(learning_rate=3e-6).resolved_learning_rate(has_images=True) == 3e-6


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_examples": 0}, "num_examples"),
        ({"max_length": 8}, "max_length"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"max_steps": 0}, "max_steps"),
        ({"per_device_batch_size": 0}, "per_device_batch_size"),
        ({"offload_params": True, "deepspeed": "zero2"}, "offload_params needs deepspeed=zero3"),
        ({"offload_optimizer": True, "deepspeed": "none"}, "offload_optimizer"),
        ({"lora": True, "lora_r": 0}, "lora_r"),
        ({"max_steps": 10, "snapshot_steps": [5, 20]}, "snapshot_steps past max_steps"),
        ({"snapshot_steps": [0]}, "snapshot_steps"),
        ({"dataset": "d", "variant": "rule-ood"}, "only shape generated data"),
        ({"dataset": "d", "multi_turn": True}, "multi_turn"),
    ],
)
def test_invalid_settings_say_what_to_change(settings, message):
    with pytest.raises(ConfigError, match=message):
        GengymSFTConfig(**settings)


def test_yaml_settings_are_checked_by_name_and_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 1e-6\n")
    with pytest.raises(ConfigError, match="did you mean learning_rate"):
        resolve_config(GengymSFTConfig, config_file=path)
    with pytest.raises(ConfigError, match="expected an integer"):
        config_from_dict(GengymSFTConfig, {"max_steps": "many"})
    with pytest.raises(ConfigError, match="must be one of"):
        config_from_dict(GengymSFTConfig, {"deepspeed": "zero1"})


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_configs_load(path):
    config = resolve_config(GengymSFTConfig, config_file=path)
    assert config.env_id in {"GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-L-v0", "VIRL-VL-v0"}
    assert config.model and config.learning_rate in (1e-6, 5e-7, None)


def test_example_configs_cover_the_four_tasks():
    envs = {resolve_config(GengymSFTConfig, config_file=p).env_id for p in EXAMPLE_CONFIGS}
    assert envs == {"GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-L-v0", "VIRL-VL-v0"}


def test_wrong_pairings_fail_before_any_weights_load(tiny_model_path, tmp_path, monkeypatch):
    # A checkpoint folder without its weights: reaching from_pretrained would fail differently.
    config_only = tmp_path / "config-only"
    shutil.copytree(tiny_model_path("qwen2"), config_only)
    (config_only / "model.safetensors").unlink()

    # ...and before the whole data set is generated: one example tells the env settings and the images apart.
    def no_full_generation(*args, **kwargs):
        raise AssertionError("the data set was generated before the settings were checked")

    monkeypatch.setattr("trainers.sft.sft_trainer.build_oracle_dataset", no_full_generation)
    with pytest.raises(ConfigError, match="text-only model but the data of GeneralPoints-VL-v0 hold images"):
        train_sft(sft_config(config_only, tmp_path / "a", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL,
                             num_examples=100_000))
    with pytest.raises(ConfigError, match="cannot generate oracle data"):
        train_sft(sft_config(config_only, tmp_path / "b", env_id="GeneralPoints-L-v0", variant="visual-ood"))
    with pytest.raises(ConfigError, match="unknown GeneralPoints option"):
        train_sft(sft_config(config_only, tmp_path / "b", env_id="GeneralPoints-L-v0", env_kwargs={"foo": 1}))
    with pytest.raises(ConfigError, match="no checkpoint folder"):
        train_sft(sft_config(tmp_path / "no-such-model", tmp_path / "b", env_id="GeneralPoints-L-v0"))
    with pytest.raises(ConfigError, match="no checkpoint folder"):
        train_sft(sft_config(config_only / "config.json", tmp_path / "b", env_id="GeneralPoints-L-v0"))
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ConfigError, match="cannot read a model config"):
        train_sft(sft_config(tmp_path / "not-a-model", tmp_path / "b", env_id="GeneralPoints-L-v0"))
    with pytest.raises(ConfigError, match="cannot read a dataset"):
        train_sft(sft_config(config_only, tmp_path / "c", env_id="", dataset=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="give the checkpoint"):
        train_sft(GengymSFTConfig(env_id="GeneralPoints-L-v0", output_dir=str(tmp_path / "d")))


@pytest.mark.parametrize(
    ("messages", "images", "message"),
    [
        ([{"role": "user", "content": "hi"}], [], "must end with the assistant"),
        ([{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}], [], "role"),
        ([{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "q"}]},
          {"role": "assistant", "content": [{"type": "text", "text": "a"}]}], [], "1 image placeholders but 0"),
    ],
)
def test_malformed_data_folders_fail_before_training(tiny_model_path, tmp_path, messages, images, message):
    from datasets import Dataset

    Dataset.from_dict({"messages": [messages], "images": [images]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match=message):
        train_sft(sft_config(tiny_model_path("qwen2"), tmp_path / "run", env_id="", dataset=str(tmp_path / "bad")))


def test_cli_rejects_bad_settings_with_exit_code_2(tmp_path, capsys):
    assert gengym_main(["sft", "--env", "GeneralPoints-L-v0", "--output-dir", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err
    assert gengym_main(["sft", "--env", "GeneralPoints-L-v0", "--model", "m", "--warmup-ratio", "2"]) == 2
    assert "warmup_ratio" in capsys.readouterr().err
    assert gengym_main(["sft", "--model", "m"]) == 2
    assert "--env" in capsys.readouterr().err


def test_docstring_examples():
    import trainers.data.oracle
    import trainers.sft
    import trainers.sft.sft_trainer

    for module in (trainers.data.oracle, trainers.sft, trainers.sft.sft_trainer):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.parametrize(
    ("spec", "local"),
    [("./ckpt", True), ("../ckpt", True), ("/abs/ckpt", True), ("~/ckpt", True), ("runs/x/final", True),
     ("gpt2", False), ("Qwen/Qwen2-VL-2B-Instruct", False), ("tiny:llava", False)],
)
def test_model_specs_that_can_only_be_local_folders(spec, local):
    from trainers.common.config import names_local_folder

    assert names_local_folder(spec) is local


def test_recorded_gflops_of_a_checkpoint(tmp_path):
    # The experiment's compute axis reads a checkpoint's record; a base model or a
    # hand-edited record without a usable figure counts as no compute, not a crash.
    import json

    from trainers.common.compute import TRAINING_RECORD, gflops_of

    assert gflops_of(tmp_path) == 0.0
    (tmp_path / TRAINING_RECORD).write_text(json.dumps({"gflops": 12.5}))
    assert gflops_of(tmp_path) == 12.5
    for bad in ("abc", None, [1]):
        (tmp_path / TRAINING_RECORD).write_text(json.dumps({"gflops": bad}))
        assert gflops_of(tmp_path) == 0.0
