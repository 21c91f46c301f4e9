"""Tiny offline models and checkpoint loading (trainers.testing.tiny_models, trainers.common.modeling)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from gengym_core.chat import assistant_message, user_message
from trainers.testing.tiny_models import (
    ALL_FAMILIES,
    EOS_TOKEN,
    TINY_FAMILIES,
    VISION_FAMILIES,
    _corpus_lines,
    build_tiny_model,
    build_tiny_tokenizer,
    describe_tiny_model,
    missing_requirement,
)

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
IMAGE_MARKERS = {
    "llava": "<image>",
    "idefics3": "<image>",
    "mllama": "<|image|>",
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
}
EXPECTED_ARCHITECTURES = {
    "qwen2": "Qwen2ForCausalLM",
    "llava": "LlavaForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "mllama": "MllamaForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}


def _gp_image(seed: int = 0, size: int = 1200) -> np.ndarray:
    """A GeneralPoints-sized RGB image (the table picture is 1200x1200)."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _file_digests(path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


def test_family_lists():
    assert set(TINY_FAMILIES) <= set(ALL_FAMILIES)
    assert {"qwen2", "llava", "idefics3", "mllama"} <= set(TINY_FAMILIES)
    assert ("qwen2_vl" in TINY_FAMILIES) == HAS_TORCHVISION
    assert "qwen2" not in VISION_FAMILIES
    with pytest.raises(ValueError, match="unknown tiny model family"):
        missing_requirement("gpt5")


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed, so Qwen2-VL can be built")
def test_qwen2_vl_without_torchvision_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="torchvision"):
        build_tiny_model("qwen2_vl", tmp_path)


def test_importing_trainers_stays_light():
    code = (
        "import sys, trainers, trainers.testing.tiny_models, trainers.common.modeling, trainers.common.inputs\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'deepspeed') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- tokenizer and chat template ------------------------------------------------


def test_tokenizer_special_tokens_are_single_ids():
    tokenizer = build_tiny_tokenizer("<image>")
    for token in (
        "<|bos|>",
        EOS_TOKEN,
        "<|pad|>",
        "<|im_start|>",
        "<image>",
        "<|image|>",
        "<row_6_col_6>",
    ):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token
    text = '{"cards": ["A", "10", "K"], "formula": "(10-4)*4 = 24"} north-east caf\u00e9'
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_forms_and_assistant_mask():
    tokenizer = build_tiny_tokenizer("<image>")
    parts = [user_message("Make 24."), assistant_message('{"formula": "1+2"}')]
    strings = [{"role": m["role"], "content": m["content"][0]["text"]} for m in parts]
    rendered = tokenizer.apply_chat_template(parts, tokenize=False)
    assert rendered == tokenizer.apply_chat_template(strings, tokenize=False)
    assert rendered == (
        '<|bos|><|im_start|>user\nMake 24.<|im_end|>\n<|im_start|>assistant\n{"formula": "1+2"}<|im_end|>\n'
    )
    prompt = tokenizer.apply_chat_template(parts[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    with_image = tokenizer.apply_chat_template([user_message("look", num_images=1)], tokenize=False)
    assert "<image>look" in with_image

    encoded = tokenizer.apply_chat_template(
        parts, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = np.array(encoded["input_ids"])
    mask = np.array(encoded["assistant_masks"]).astype(bool)
    assert tokenizer.decode(ids[mask]) == '{"formula": "1+2"}' + EOS_TOKEN


def test_text_only_template_refuses_images():
    from jinja2.exceptions import TemplateError

    tokenizer = build_tiny_tokenizer(None)
    with pytest.raises(TemplateError, match="text-only"):
        tokenizer.apply_chat_template([user_message("look", num_images=1)], tokenize=False)


# -- built checkpoints ----------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_checkpoint_loads_through_auto_classes(family, tiny_model_path):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        PreTrainedTokenizerBase,
    )

    path = tiny_model_path(family)
    names = {f.name for f in path.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    info = describe_tiny_model(path)
    assert info["architecture"] == EXPECTED_ARCHITECTURES[family]
    assert info["num_parameters"] < 200_000

    reference = build_tiny_tokenizer()
    corpus = "\n".join(_corpus_lines()[:50]) + " caf\u00e9  \t\n\n x"
    if family in VISION_FAMILIES:
        processor = AutoProcessor.from_pretrained(path)
        assert processor.image_processor is not None
        tokenizer = processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(path)
    else:
        tokenizer = processor = AutoTokenizer.from_pretrained(path)
        assert isinstance(processor, PreTrainedTokenizerBase)
        model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == EXPECTED_ARCHITECTURES[family]
    # Whatever tokenizer class the Auto classes pick, it must encode exactly
    # like the tokenizer the model was built with.
    assert tokenizer(corpus)["input_ids"] == reference(corpus)["input_ids"]
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    if family in VISION_FAMILIES:
        rendered = processor.apply_chat_template(
            [user_message("look", num_images=1)], tokenize=False
        )
        assert IMAGE_MARKERS[family] + "look" in rendered


def test_mllama_config_constraints(tiny_model_path):
    config = json.loads((tiny_model_path("mllama") / "config.json").read_text())
    assert config["vision_config"]["max_num_tiles"] == 4
    layers = config["text_config"]["num_hidden_layers"]
    cross = config["text_config"]["cross_attention_layers"]
    assert cross and all(0 <= i < layers for i in cross)


@pytest.mark.parametrize("family", ["llava", "mllama"])
def test_same_seed_same_files(family, tmp_path, tiny_model_path):
    first = _file_digests(tiny_model_path(family))  # seed 0
    again = _file_digests(build_tiny_model(family, tmp_path / "again", seed=0))
    other = _file_digests(build_tiny_model(family, tmp_path / "other", seed=1))
    assert first == again
    assert {name for name in first if first[name] != other[name]} == {"model.safetensors"}


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_forward_backward_and_generate(family, tiny_model_path):
    """A real training step and a real generation on a GP-VL-sized prompt."""
    import torch

    from trainers.common.inputs import encode_for_sft, encode_prompts
    from trainers.common.modeling import load_model_and_processor

    model, processor, is_vision = load_model_and_processor(tiny_model_path(family))
    num_images = 1 if is_vision else 0
    images = [[_gp_image()]] if is_vision else None
    prompt = (
        "Cards: A, 7, K, Q (spades). Use each number once with + - * / to make 24. Answer in JSON."
    )
    answer = (
        '{"cards": ["A", "7", "K", "Q"], "number": [1, 7, 10, 10], "formula": "(7-1)*(10/10)*4"}'
    )
    conversation = [user_message(prompt, num_images=num_images), assistant_message(answer)]

    batch = encode_for_sft(processor, [conversation], images)
    model.train()
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(loss)
    assert elapsed < 3.0, f"forward+backward took {elapsed:.2f}s; the tiny models must stay tiny"
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert float(model.get_input_embeddings().weight.grad.abs().sum()) > 0
    if is_vision:
        # The image must actually reach the loss: the vision tower gets gradient.
        vision = [g for name, g in grads.items() if "vision" in name and g is not None]
        assert vision and any(float(g.abs().sum()) > 0 for g in vision)

    model.eval()
    prompt_inputs = encode_prompts(processor, [conversation[:1]], images)
    with torch.no_grad():
        out = model.generate(**prompt_inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1
    assert 1 <= out.shape[1] - prompt_inputs["input_ids"].shape[1] <= 5


# -- loading any checkpoint -------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_load_model_and_processor(family, tiny_model_path):
    from trainers.common.modeling import eos_token_ids, get_tokenizer, load_model_and_processor

    loaded = load_model_and_processor(tiny_model_path(family), dtype="float32")
    assert loaded.is_vision == (family in VISION_FAMILIES)
    assert type(loaded.model).__name__ == EXPECTED_ARCHITECTURES[family]
    tokenizer = get_tokenizer(loaded.processor)
    assert tokenizer is loaded.tokenizer
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<|pad|>"
    assert eos_token_ids(loaded.model, loaded.processor) == [
        tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    ]
    model, processor, is_vision = loaded
    assert (model, processor, is_vision) == (loaded.model, loaded.processor, loaded.is_vision)


def test_load_sets_missing_pad_token_to_eos(tiny_model_path, tmp_path):
    import shutil

    from trainers.common.modeling import load_model_and_processor

    path = tmp_path / "nopad"
    shutil.copytree(tiny_model_path("qwen2"), path)
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["pad_token"] = None
    config_file.write_text(json.dumps(config))
    loaded = load_model_and_processor(path)
    assert loaded.tokenizer.pad_token == EOS_TOKEN
    assert loaded.model.generation_config.pad_token_id is not None


def test_load_errors_name_the_path(tmp_path):
    from transformers import ViTConfig

    from trainers.common.modeling import load_model_and_processor

    missing = tmp_path / "nothing-here"
    with pytest.raises(ValueError, match="nothing-here"):
        load_model_and_processor(missing)
    encoder = tmp_path / "encoder"
    ViTConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    ).save_pretrained(encoder)
    with pytest.raises(
        ValueError, match=r"encoder.*AutoModelForImageTextToText nor AutoModelForCausalLM"
    ):
        load_model_and_processor(encoder)
    with pytest.raises(ValueError, match="dtype"):
        from trainers.common.modeling import _resolve_dtype

        _resolve_dtype("float8")


def test_vision_config_detection_prefers_image_text():
    """Mllama is in both Auto mappings; it must load as a VLM."""
    from transformers import MllamaConfig, Qwen2Config

    from trainers.common.modeling import is_vision_config

    assert is_vision_config(MllamaConfig()) is True
    assert is_vision_config(Qwen2Config()) is False


def test_load_with_dtype_and_device(tiny_model_path):
    import torch

    from trainers.common.modeling import load_model_and_processor

    loaded = load_model_and_processor(tiny_model_path("llava"), dtype="bfloat16", device="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
