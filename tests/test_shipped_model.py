"""The model gengym ships (tiny:gp-l): present, rebuildable, loadable by every command, and still playing.

A guard: a change of the compact prompt, the answer format or the tokenizer
that breaks the shipped model fails here; rebuild it then with the command
in its ``gengym_training.json`` (``gengym pretrain --config
examples/mini/pretrain.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gengym_core.cli import main as gengym_main  # noqa: E402
from trainers.common.config import load_yaml  # noqa: E402
from trainers.models import is_shipped_spec, resolve_model_spec, shipped_model_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = shipped_model_path("gp-l")
#: Floors on the fixed hands below (measured when it was shipped: 40% solved, 98% of the
#: unseen rule read right; a broken prompt or tokenizer gives about 0).
MIN_ID_SUCCESS = 0.25
MIN_OOD_NUMBERS_RIGHT = 0.6


def test_the_shipped_folder_is_a_small_safetensors_checkpoint_with_its_recipe():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "gengym_training.json",
            "training_log.jsonl"} <= names
    assert not names & {"pytorch_model.bin", "training_args.bin"}
    assert (MODEL / "model.safetensors").stat().st_size < 50 * 2**20
    record = json.loads((MODEL / "gengym_training.json").read_text())
    assert record["method"] == "pretrain" and record["init_tokens"] == 0 and record["gflops"] > 0
    assert record["command"].startswith("gengym pretrain --config examples/mini/pretrain.yaml")
    # The committed recipe rebuilds it: its settings are the ones the model was trained with.
    recipe = load_yaml(ROOT / "examples" / "mini" / "pretrain.yaml")
    assert {k: record["config"][k] for k in recipe} == recipe
    log = [json.loads(line) for line in (MODEL / "training_log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "end"


def test_specs_resolve_to_the_package_folder():
    assert is_shipped_spec("tiny:gp-l") and not is_shipped_spec("tiny:qwen2") and not is_shipped_spec("gp-l")
    assert resolve_model_spec("tiny:gp-l") == str(MODEL)
    assert resolve_model_spec("tiny:llava") == "tiny:llava"
    from trainers.ppo.ppo_config import PPOConfig
    from trainers.sft.sft_config import GengymSFTConfig

    assert GengymSFTConfig(model="tiny:gp-l", env_id="GeneralPoints-L-compact-v0").model == str(MODEL)
    assert PPOConfig(model="tiny:gp-l", env_id="GeneralPoints-L-compact-v0", deepspeed="none").model == str(MODEL)


def test_the_tokenizer_and_template_are_the_ones_the_code_builds():
    from transformers import AutoTokenizer

    from trainers.pretrain.tokenizer import CHAT_TEMPLATE, build_tokenizer

    shipped = AutoTokenizer.from_pretrained(MODEL)
    built = build_tokenizer()
    assert shipped.get_vocab() == built.get_vocab()
    assert shipped.chat_template == CHAT_TEMPLATE
    text = "J11 Q12 K13 T24|Q 2 10 A>12 2 10 1:12*2#=24"
    assert shipped(text)["input_ids"] == built(text)["input_ids"]


def test_the_shipped_model_still_plays_a_fixed_set_of_hands():
    """Greedy, one try, 60 fixed hands per rule: solves the training rule and reads the unseen rule."""
    import torch

    from trainers.common.modeling import load_model_and_processor
    from trainers.pretrain.data import ID_RULE, eval_prompts
    from trainers.pretrain.pretrain_trainer import quick_check

    torch.manual_seed(0)
    loaded = load_model_and_processor(resolve_model_spec("tiny:gp-l"))
    id_check = quick_check(loaded.model, loaded.processor, eval_prompts(ID_RULE, 60, seed=11))
    ood_check = quick_check(loaded.model, loaded.processor, eval_prompts((11, 12, 13), 60, seed=12))
    assert id_check["success"] >= MIN_ID_SUCCESS, id_check
    assert ood_check["numbers_right"] >= MIN_OOD_NUMBERS_RIGHT, ood_check


def test_gengym_eval_takes_the_spec(tmp_path, capsys):
    out = tmp_path / "eval"
    code = gengym_main(["eval", "--model", "tiny:gp-l", "--env", "GeneralPoints-L-compact-v0", "--variants", "all",
                        "--episodes", "6", "--batch-size", "6", "--max-new-tokens", "40", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"id", "rule-ood"}
