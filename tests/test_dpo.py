"""DPO on env preference pairs (trainers.dpo) with tiny offline models on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import (  # noqa: E402
    REPO,
    SMALL_GP_VL,
    gengym_command,
    run_command,
    run_gengym,
    tiny_run_config,
)
from safetensors.torch import load_file  # noqa: E402

from trainers.common.compute import TRAINING_RECORD  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict, help_of  # noqa: E402
from trainers.common.inputs import completion_logprobs  # noqa: E402
from trainers.common.metrics import read_metrics  # noqa: E402
from trainers.common.modeling import get_tokenizer, load_model_and_processor  # noqa: E402
from trainers.dpo import GengymDPOConfig  # noqa: E402
from trainers.dpo.dpo_trainer import PreferenceCollator, train_dpo  # noqa: E402
from trainers.pairs.build import PAIRS_INFO, build_pairs_dataset, save_pairs_dataset  # noqa: E402
from trainers.pairs.config import PairsConfig  # noqa: E402


def dpo_config(model: Path, out: Path, **overrides) -> GengymDPOConfig:
    settings = dict(num_pairs=4, max_steps=2, per_device_batch_size=2, learning_rate=5e-3)
    return tiny_run_config(GengymDPOConfig, model, out, **{**settings, **overrides})


def pairs(env_id: str, n: int, **overrides):
    kwargs = SMALL_GP_VL if env_id == "GeneralPoints-VL-v0" else {}
    config = PairsConfig(env_id=env_id, num_pairs=n, env_kwargs=kwargs, progress_bar=False, **overrides)
    return build_pairs_dataset(config, progress=False)


def sequence_logprobs(model, batch) -> torch.Tensor:
    """Sum of log-probs of the completion tokens of each row, computed here (not by TRL)."""
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    with torch.no_grad():
        logits = model(**inputs).logits
    length = batch["input_ids"].shape[1]
    token_lp = completion_logprobs(logits, batch["input_ids"], length - 1)  # every position but the first
    return (token_lp * batch["completion_mask"][:, 1:]).sum(dim=1)


# ------------------------------------------------------------------ collator
@pytest.mark.parametrize(("family", "env_id"), [("qwen2", "GeneralPoints-L-v0"), ("llava", "GeneralPoints-VL-v0"), ("mllama", "GeneralPoints-VL-v0")])
def test_collator_marks_only_the_final_answer(tiny_model, family, env_id):
    loaded = tiny_model(family)
    dataset, _ = pairs(env_id, 2, revision_share=1.0, prompt_format="chat")
    rows = [dataset[i] for i in range(2)]
    batch = PreferenceCollator(loaded.processor, None)(rows)
    tokenizer = get_tokenizer(loaded.processor)
    ids, mask = batch["input_ids"], batch["completion_mask"].bool()
    assert ids.shape[0] == 4 and mask.shape == ids.shape
    for k, side in enumerate(["chosen"] * 2 + ["rejected"] * 2):
        row = rows[k % 2]
        answer = "".join(row[side][0]["content"][0]["text"].split())
        marked = "".join(tokenizer.decode(ids[k][mask[k]], skip_special_tokens=True).split())
        assert marked.startswith(answer) and len(marked) <= len(answer) + 2  # the answer (and its end of turn)
        earlier = "".join(row["prompt"][1]["content"][0]["text"].split())  # the wrong answer of the revision
        assert earlier not in marked
    if family == "mllama":
        assert batch["cross_attention_mask"].shape[:2] == ids.shape  # covers the answers too
    if family != "qwen2":
        assert "pixel_values" in batch


def test_too_long_pairs_stop_before_training(tiny_model_path, tmp_path):
    config = dpo_config(tiny_model_path("llava"), tmp_path / "run", env_id="GeneralPoints-VL-v0",
                        env_kwargs=SMALL_GP_VL, max_length=64)
    with pytest.raises(ConfigError, match="never truncated"):
        train_dpo(config)
    assert not (tmp_path / "run" / "final").exists()


def test_text_model_on_image_pairs_fails_before_loading(tiny_model_path, tmp_path, monkeypatch):
    import trainers.dpo.dpo_trainer as dpo_trainer
    import trainers.pairs.build as pairs_build

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model's kind is known from its config and the env: nothing should be built or loaded")

    # Generating many image pairs takes a while, so the kind is checked against the env first.
    monkeypatch.setattr(pairs_build, "build_pairs_dataset", must_not_run)
    monkeypatch.setattr(dpo_trainer, "load_model_and_processor", must_not_run)
    config = dpo_config(tiny_model_path("qwen2"), tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL)
    with pytest.raises(ConfigError, match="text-only model"):
        train_dpo(config)
    with pytest.raises(ConfigError, match="unknown GeneralPoints option"):
        train_dpo(dpo_config(tiny_model_path("qwen2"), tmp_path / "run", env_kwargs={"bogus": 1}))


# ------------------------------------------------------------------ training
def test_text_dpo_prefers_the_chosen_answer_and_records_its_compute(tiny_model_path, tmp_path):
    base = tiny_model_path("qwen2")
    config = dpo_config(base, tmp_path / "run", max_steps=4, num_pairs=4)
    final = train_dpo(config)

    before, after = load_file(base / "model.safetensors"), load_file(final / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("loss" in r for r in records[:-1]) and records[0]["loss"] == pytest.approx(0.6931, abs=1e-3)

    # DPO's implicit reward margin, measured here on the training pairs: positive after training.
    dataset, _ = pairs("GeneralPoints-L-v0", 4)
    policy, reference = load_model_and_processor(final), load_model_and_processor(base)
    batch = PreferenceCollator(policy.processor, None)([dataset[i] for i in range(4)])
    ratios = sequence_logprobs(policy.model, batch) - sequence_logprobs(reference.model, batch)
    margins = ratios[:4] - ratios[4:]
    assert bool((margins > 0).all()), margins

    # X = 6 N (D_init + D_DPO) + 2 N D_ref with D_ref = D_DPO; 4 steps of 2 pairs = every pair twice.
    record = json.loads((final / TRAINING_RECORD).read_text())
    single = [PreferenceCollator(policy.processor, None)([dataset[i]]) for i in range(4)]
    tokens = 2 * sum(int(b["attention_mask"].sum()) for b in single)
    assert record["train_tokens"] == tokens and record["method"] == "dpo"
    assert record["gflops"] == pytest.approx(8 * record["num_params"] * tokens / 1e9)


@pytest.mark.parametrize("family", ["llava", "mllama", "idefics3"])
def test_vlm_dpo_on_image_pairs_trains_and_reloads(tiny_model_path, tmp_path, family):
    base = tiny_model_path(family)
    final = train_dpo(dpo_config(base, tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL))
    before, after = load_file(base / "model.safetensors"), load_file(final / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and before.keys() == after.keys()
    assert load_model_and_processor(final).is_vision


def test_lora_dpo_writes_the_merged_model(tiny_model_path, tmp_path):
    base = tiny_model_path("qwen2")
    final = train_dpo(dpo_config(base, tmp_path / "run", lora=True, lora_r=4, learning_rate=5e-2))
    assert (final / "adapter" / "adapter_config.json").is_file()
    before, after = load_file(base / "model.safetensors"), load_file(final / "model.safetensors")
    assert before.keys() == after.keys()  # plain weights, adapters merged in
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_dpo_on_a_pairs_folder_charges_its_sampling(tiny_model_path, tmp_path):
    dataset, info = pairs("GeneralPoints-L-v0", 4)
    info["sampling"] = {"gflops": 1.5}  # as if a model had sampled them
    save_pairs_dataset(dataset, info, tmp_path / "pairs")
    base = tiny_model_path("qwen2")
    final = train_dpo(dpo_config(base, tmp_path / "run", dataset=str(tmp_path / "pairs"), max_steps=1))
    record = json.loads((final / TRAINING_RECORD).read_text())
    assert record["pair_sampling_gflops"] == 1.5 and record["dataset"] == str(tmp_path / "pairs")
    assert record["gflops"] == pytest.approx(8 * record["num_params"] * record["train_tokens"] / 1e9 + 1.5)
    with pytest.raises(ConfigError, match="holds pairs of GeneralPoints-L-v0"):
        train_dpo(dpo_config(base, tmp_path / "other", env_id="VIRL-L-v0", dataset=str(tmp_path / "pairs")))
    assert json.loads((tmp_path / "pairs" / PAIRS_INFO).read_text())["pairs"] == 4


# ------------------------------------------------------------------ config and command
def test_every_setting_is_documented():
    assert all(help_of(GengymDPOConfig).values())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"beta": 0}, "beta"),
        ({"loss_type": "dpo++"}, "loss_type"),
        ({"label_smoothing": 0.1}, "only applies to loss_type=robust"),
        ({"max_steps": 0}, "max_steps"),
        ({"dataset": "d", "revision_share": 0.5}, "only shape generated pairs"),
        ({"snapshot_steps": [5], "max_steps": 2}, "never be written"),
        ({"offload_params": True, "deepspeed": "zero2"}, "offload_params needs"),
    ],
)
def test_invalid_settings_say_what_to_change(settings, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(GengymDPOConfig, settings)


def test_example_configs_load():
    configs = sorted((REPO / "examples" / "configs").glob("*_dpo.yaml"))
    assert {p.name for p in configs} >= {"gp_l_dpo.yaml", "gp_vl_dpo.yaml"}
    from trainers.common.config import load_yaml

    for path in configs:
        config = config_from_dict(GengymDPOConfig, load_yaml(path), source=str(path))
        assert config.env_id


def test_command_rejects_bad_settings_with_exit_code_2(tmp_path):
    def gengym(*args):
        return run_gengym("dpo", *args)

    (tmp_path / "bad.yaml").write_text("bta: 0.2\n")
    out = gengym("--config", str(tmp_path / "bad.yaml"), "--model", "m", "--env", "GeneralPoints-L-v0")
    assert out.returncode == 2 and "did you mean beta" in out.stderr
    out = gengym("--env", "GeneralPoints-L-v0")
    assert out.returncode == 2 and "--model" in out.stderr


def test_deepspeed_zero3_through_the_command_line(tiny_model_path, tmp_path):
    """The real ZeRO-3 path (policy and reference partitioned) in one CPU process, as a user starts it."""
    base = tiny_model_path("mllama")
    out = tmp_path / "run"
    cmd = gengym_command(
        "dpo", "--env", "GeneralPoints-VL-v0", "--env-kwarg",
        "image_size=[64,64]", "--model", str(base), "--output-dir", str(out), "--deepspeed", "zero3",
        "--max-steps", "2", "--num-pairs", "4", "--per-device-batch-size", "2", "--gradient-accumulation-steps",
        "1", "--learning-rate", "1e-3", "--no-tensorboard", "--no-progress-bar", "--warmup-ratio", "0",
        "--snapshot-steps", "1",
    )
    returncode, stderr = run_command(cmd, timeout=600)
    assert returncode == 0, stderr[-3000:]
    before = load_file(base / "model.safetensors")
    for folder in (out / "snapshots" / "step-000001", out / "final"):
        after = load_file(folder / "model.safetensors")
        assert before.keys() == after.keys()  # gathered from the shards, under the model's own names
        assert any(not torch.equal(before[k], after[k]) for k in before)
    record = json.loads((out / "final" / TRAINING_RECORD).read_text())
    assert record["steps"] == 2 and record["train_tokens"] > 0


def test_deepspeed_zero2_through_the_command_line(tiny_model_path, tmp_path):
    """ZeRO-2 (optimizer states and gradients partitioned, the reference model whole) on a text model."""
    base = tiny_model_path("qwen2")
    out = tmp_path / "run"
    cmd = gengym_command(
        "dpo", "--env", "GeneralPoints-L-v0", "--model", str(base), "--output-dir", str(out),
        "--deepspeed", "zero2", "--max-steps", "2", "--num-pairs", "4", "--per-device-batch-size", "2",
        "--gradient-accumulation-steps", "1", "--learning-rate", "1e-3", "--no-tensorboard", "--no-progress-bar",
        "--warmup-ratio", "0",
    )
    returncode, stderr = run_command(cmd, timeout=600)
    assert returncode == 0, stderr[-3000:]
    before, after = load_file(base / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    record = json.loads((out / "final" / TRAINING_RECORD).read_text())
    assert record["steps"] == 2 and record["train_tokens"] > 0


def test_docstring_examples():
    import doctest

    import trainers.dpo

    result = doctest.testmod(trainers.dpo)
    assert result.attempted > 0 and result.failed == 0
