"""Tiny Hugging Face models built offline: real architectures, random weights.

Every trainer in gengym must work with any vision-language model (VLM) or
text LM that the ``transformers`` Auto classes can load, with no per-model
code. The only honest way to check that on a CPU without downloading weights
is to build small but real instances of the main VLM families and run the
trainers on them. :func:`build_tiny_model` does that from nothing but code:

* a byte-level BPE tokenizer trained (in milliseconds) on a built-in corpus of
  gengym-like text (JSON answers, card names, formulas, compass words), with
  BOS/EOS/pad, the special tokens every family's processor looks up, and a
  ChatML-style chat template that takes plain strings or content-part lists,
  supports ``add_generation_prompt`` and wraps assistant turns in
  ``{% generation %}`` so that ``return_assistant_tokens_mask`` (and TRL's
  assistant-only loss) works;
* a tiny config of the family's real model class (hidden size 32, two or
  three text layers, 32-pixel image tiles) with seeded random weights;
* the family's real processor (image processor + tokenizer + template).

Everything is saved into one directory with ``save_pretrained`` and loads
back through ``AutoProcessor`` / ``AutoTokenizer`` and
``AutoModelForImageTextToText`` / ``AutoModelForCausalLM`` exactly like a
user's checkpoint, also with ``HF_HUB_OFFLINE=1``. The same seed gives the
same weights and byte-identical files.

Families (:data:`ALL_FAMILIES`):

``qwen2``
    Text-only ``Qwen2ForCausalLM`` with a tokenizer (no processor).
``llava``
    ``LlavaForConditionalGeneration``: CLIP vision tower; every image is
    resized and center-cropped to 32 px and costs 16 ``<image>`` tokens
    (one per 8-px patch, CLS dropped).
``idefics3``
    ``Idefics3ForConditionalGeneration`` (the SmolVLM architecture): images
    are resized to 64 px on the long side and split into 32-px crops plus a
    global view (a square image: 2x2 crops + global); each crop costs 4
    ``<image>`` tokens after pixel shuffle, framed by
    ``<fake_token_around_image>`` and ``<row_r_col_c>`` tags.
``mllama``
    ``MllamaForConditionalGeneration`` (Llama 3.2 Vision): one
    ``<|image|>`` token per image in the text; the text reads the image's
    tiles (up to 4 of 32 px, 17 vision tokens each) through a
    cross-attention layer steered by the per-token ``cross_attention_mask``.
    ``max_num_tiles`` is 4, as the default aspect-ratio table requires; the
    cross-attention gates are opened (real Mllama zero-initialises them, so
    a fresh model would ignore images).
``qwen2_vl``
    ``Qwen2VLForConditionalGeneration``: images are resized to 32x32 to
    48x48 pixels and cost 4 to 9 ``<|image_pad|>`` tokens (8-px patches,
    2x2 merge) between ``<|vision_start|>`` and ``<|vision_end|>``;
    multimodal rotary positions come from ``mm_token_type_ids``. Its
    processor needs a video processor, which in transformers 5 imports
    torchvision, so this family is only in :data:`TINY_FAMILIES` when
    torchvision is installed.

Example:
    >>> from trainers.testing.tiny_models import build_tiny_model  # doctest: +SKIP
    >>> path = build_tiny_model("llava", "/tmp/tiny-llava")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Every family this module knows how to build, text LM first.
ALL_FAMILIES: tuple[str, ...] = ("qwen2", "llava", "idefics3", "mllama", "qwen2_vl")


def missing_requirement(family: str) -> str | None:
    """Why ``family`` cannot be built here, or ``None`` when it can.

    Raises:
        ValueError: ``family`` is not one of :data:`ALL_FAMILIES`.
    """
    if family not in ALL_FAMILIES:
        raise ValueError(
            f"unknown tiny model family {family!r}; choose one of {', '.join(ALL_FAMILIES)}"
        )
    if family == "qwen2_vl" and importlib.util.find_spec("torchvision") is None:
        return "the Qwen2-VL processor needs torchvision (for its video processor), which is not installed"
    return None


#: The families that can be built in this environment.
TINY_FAMILIES: tuple[str, ...] = tuple(f for f in ALL_FAMILIES if missing_requirement(f) is None)

#: The families whose model takes images.
VISION_FAMILIES: tuple[str, ...] = tuple(f for f in ALL_FAMILIES if f != "qwen2")

# -- tokenizer ---------------------------------------------------------------

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|im_end|>"  # the end of an assistant turn is where generation stops
PAD_TOKEN = "<|pad|>"
TURN_START_TOKEN = "<|im_start|>"

# Tokens the families' processors look up by name. One vocabulary serves all
# families, so each family's tokens exist (unused) in the others' tokenizers.
_FAMILY_SPECIAL_TOKENS: tuple[str, ...] = (
    # LLaVA and Idefics3 image placeholder
    "<image>",
    # Idefics3 framing of image crops
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
    # Mllama
    "<|image|>",
    "<|python_tag|>",
    # Qwen2-VL
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

SPECIAL_TOKENS: tuple[str, ...] = (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    TURN_START_TOKEN,
    *_FAMILY_SPECIAL_TOKENS,
)

#: Longest sequence the tiny tokenizers declare.
MODEL_MAX_LENGTH = 8192

#: Target vocabulary size of the BPE training (reached only if the corpus has
#: enough distinct merges; the real size is ``len(tokenizer)``).
TOKENIZER_VOCAB_SIZE = 1024

_RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
_SUITS = ("spades", "hearts", "diamonds", "clubs")
_DIRECTIONS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
_RELATIVE = ("left", "right", "slightly left", "slightly right")
_SIDES = (
    "left",
    "right",
    "left front",
    "right front",
    "left behind",
    "right behind",
    "front",
    "behind",
)
_PLACES = ("cafe", "bank", "bakery", "pharmacy", "library", "park", "school", "gym", "bar", "hotel")


def _corpus_lines() -> list[str]:
    """Short gengym-like texts: JSON answers, cards, formulas, directions.

    Built from a fixed generator, so the tokenizer (and hence every tiny
    model) is the same on every machine.
    """
    rng = np.random.default_rng(20250101)
    lines: list[str] = []
    for _ in range(200):
        hand = [str(rng.choice(_RANKS)) for _ in range(4)]
        numbers = [int(rng.integers(1, 14)) for _ in range(4)]
        ops = [str(rng.choice(list("+-*/"))) for _ in range(3)]
        formula = f"({numbers[0]}{ops[0]}{numbers[1]}){ops[1]}{numbers[2]}{ops[2]}{numbers[3]}"
        if rng.random() < 0.5:
            formula += " = 24"
        lines.append(
            '{"cards": ['
            + ", ".join(f'"{c}"' for c in hand)
            + '], "number": ['
            + ", ".join(str(n) for n in numbers)
            + f'], "formula": "{formula}"}}'
        )
        lines.append(
            f"The cards are {', '.join(hand)} of {rng.choice(_SUITS)}. "
            "Use each number exactly once with + - * / and parentheses to make 24."
        )
    for _ in range(200):
        place = str(rng.choice(_PLACES))
        side = str(rng.choice(_SIDES))
        direction = str(rng.choice(_DIRECTIONS))
        relative = str(rng.choice(_RELATIVE))
        action = str(
            rng.choice(
                [
                    "forward()",
                    "stop()",
                    f"turn_direction({direction})",
                    f"turn_direction({relative})",
                ]
            )
        )
        lines.append(
            f'{{"current observation": "a {place} is on your {side}", '
            f'"current instruction": "Turn {relative} to face {direction}.", "action": "{action}"}}'
        )
        lines.append(
            f"{int(rng.integers(1, 9))}. Move forward until you reach the {place} on your {side}, "
            f"{int(rng.integers(10, 200))} meters."
        )
    lines += [
        "Your formula evaluates to 21, not 24. Try again.",
        "The numbers you used are not exactly the cards dealt.",
        "Wrong action: you are not at an intersection yet.",
        "Correct! The episode is solved.",
        "No landmark nearby. You are at an intersection.",
        " ".join(str(i) for i in range(100)),
        "+ - * / ( ) = [ ] { } , : ; . ' \" ? !",
    ]
    return lines


@functools.lru_cache(maxsize=1)
def _trained_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a byte-level BPE trained on :func:`_corpus_lines`.

    Training takes milliseconds and is deterministic; it is cached anyway.
    The special tokens come first, so their ids are small and stable.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus_lines(), trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    return dict(model["vocab"]), [tuple(pair) for pair in model["merges"]]


def build_tiny_tokenizer(image_marker: str | None = None, *, qwen2_class: bool = False) -> Any:
    """A fresh tokenizer with the tiny vocabulary and chat template.

    The tokenization pipeline is that of ``Qwen2Tokenizer`` (NFC, Qwen's
    pre-tokenization split, byte-level BPE) for every family. The reason is
    loading: for ``qwen2`` and ``qwen2_vl`` checkpoints ``AutoTokenizer``
    always instantiates ``Qwen2Tokenizer``, which rebuilds its pipeline from
    the vocabulary whatever ``tokenizer.json`` says; with one pipeline for
    all, every family round-trips through ``save_pretrained`` and the Auto
    classes to exactly the same token ids.

    Args:
        image_marker: What the chat template writes for an image content part
            (the family's image placeholder), or ``None`` for a text-only
            template that refuses images.
        qwen2_class: Return a ``Qwen2Tokenizer`` (as Qwen checkpoints ship)
            rather than a generic ``PreTrainedTokenizerFast``.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _trained_bpe()
    special = dict(
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[TURN_START_TOKEN, *_FAMILY_SPECIAL_TOKENS],
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=MODEL_MAX_LENGTH,
    )
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, **special)
    if not qwen2_class:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, **special)
    tokenizer.chat_template = chat_template(image_marker)
    return tokenizer


def chat_template(image_marker: str | None) -> str:
    """A ChatML-style Jinja chat template for the tiny tokenizer.

    It takes ``content`` as a string or as a list of ``text``/``image``
    parts (the form :mod:`gengym_core.chat` produces), starts with the BOS
    token, and wraps each assistant turn, including its end-of-turn token,
    in ``{% generation %}`` so that ``return_assistant_tokens_mask`` marks
    exactly the tokens a model must learn to produce.

    Args:
        image_marker: Text written for each image part (the processor expands
            it into the family's image tokens); ``None`` makes image parts an
            error, as in a text-only model's template.
    """
    if image_marker is None:
        on_image = (
            "{{- raise_exception('this is a text-only model: it cannot take image content') -}}"
        )
    else:
        on_image = "{{- '" + image_marker + "' -}}"
    return (
        _CHAT_TEMPLATE.replace("IMAGE_PART", on_image)
        .replace("TURN_START", TURN_START_TOKEN)
        .replace("TURN_END", EOS_TOKEN)
    )


# Every tag trims the whitespace around it, so the indentation and line
# breaks are for reading only: the rendered text holds exactly the '\n's the
# template writes. IMAGE_PART, TURN_START and TURN_END are filled in above.
_CHAT_TEMPLATE = """\
{%- macro render(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- else -%}
        {%- for part in content -%}
            {%- if part['type'] == 'text' -%}
                {{- part['text'] -}}
            {%- elif part['type'] == 'image' -%}
                IMAGE_PART
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- for message in messages -%}
    {{- 'TURN_START' + message['role'] + '\\n' -}}
    {%- if message['role'] == 'assistant' -%}
        {%- generation -%}
            {{- render(message['content']) + 'TURN_END' -}}
        {%- endgeneration -%}
        {{- '\\n' -}}
    {%- else -%}
        {{- render(message['content']) + 'TURN_END\\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'TURN_STARTassistant\\n' -}}
{%- endif -%}
"""


# -- model families ------------------------------------------------------------

# Tiny but real: a forward+backward on a GeneralPoints-sized prompt takes a
# few tens of milliseconds on one CPU core.
_HIDDEN = 32
_FFN = 64
_HEADS = 4
_KV_HEADS = 2
_TEXT_LAYERS = 2
_VISION_LAYERS = 2
_TILE = 32  # pixels per vision-encoder input side
_PATCH = 8  # pixels per vision patch side
#: Keyword arguments of a tiny ViT-style vision encoder (CLIP, SigLIP-like Idefics3).
_VIT_CONFIG = dict(
    hidden_size=_HIDDEN,
    intermediate_size=_FFN,
    num_hidden_layers=_VISION_LAYERS,
    num_attention_heads=_HEADS,
    image_size=_TILE,
    patch_size=_PATCH,
)


def _llama_text_config(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny Llama-style decoder, shared by the VLMs."""
    config = dict(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=_FFN,
        num_hidden_layers=_TEXT_LAYERS,
        num_attention_heads=_HEADS,
        num_key_value_heads=_KV_HEADS,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.update(overrides)
    return config


def _build_qwen2(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_llama_text_config(tokenizer), tie_word_embeddings=True)
    return Qwen2ForCausalLM(config), tokenizer


def _build_llava(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava.processing_llava import LlavaProcessor

    num_patches = (_TILE // _PATCH) ** 2
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_VIT_CONFIG, projection_dim=_HIDDEN),
        text_config=LlamaConfig(**_llama_text_config(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=num_patches,
        vision_feature_select_strategy="default",  # drop CLS: one token per patch
        vision_feature_layer=-2,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": _TILE}, crop_size={"height": _TILE, "width": _TILE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token the "default" strategy drops
        chat_template=tokenizer.chat_template,
    )
    return LlavaForConditionalGeneration(config), processor


def _build_idefics3(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, LlamaConfig
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.idefics3.processing_idefics3 import Idefics3Processor

    scale_factor = 2
    image_seq_len = (_TILE // _PATCH) ** 2 // scale_factor**2
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_VIT_CONFIG),
        text_config=LlamaConfig(**_llama_text_config(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Long side 2 tiles: a square image becomes 2x2 crops plus a global view.
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * _TILE}, max_image_size={"longest_edge": _TILE}
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=tokenizer.chat_template,
    )
    return Idefics3ForConditionalGeneration(config), processor


def _build_mllama(tokenizer: Any) -> tuple[Any, Any]:
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
    from transformers.models.mllama.processing_mllama import MllamaProcessor

    intermediate_layers = [0, 1]
    config = MllamaConfig(
        vision_config=MllamaVisionConfig(
            hidden_size=_HIDDEN,
            intermediate_size=_FFN,
            num_hidden_layers=_VISION_LAYERS,
            num_global_layers=1,
            attention_heads=_HEADS,
            image_size=_TILE,
            patch_size=_PATCH,
            max_num_tiles=4,  # required by the default supported aspect ratios
            intermediate_layers_indices=intermediate_layers,
            vision_output_dim=_HIDDEN * (len(intermediate_layers) + 1),
        ),
        # Three text layers; index 1 (a text-layer index) is a cross-attention layer.
        text_config=MllamaTextConfig(
            **_llama_text_config(tokenizer, num_hidden_layers=3), cross_attention_layers=[1]
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    image_processor = MllamaImageProcessorPil(
        size={"height": _TILE, "width": _TILE}, max_image_tiles=4
    )
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )
    model = MllamaForConditionalGeneration(config)
    # Mllama initialises the gates of its cross-attention layers to zero, so
    # a fresh model ignores its images (trained checkpoints have them open).
    # Open them, or images would never reach the tiny model's logits and every
    # test of the image path would pass vacuously.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.uniform_(0.5, 1.0)
    return model, processor


def _build_qwen2_vl(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    head_dim = _HIDDEN // _HEADS
    text = _llama_text_config(tokenizer)
    # Multimodal RoPE splits each head's rotary half-dimension into
    # (temporal, height, width) sections.
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [2, 1, 1],
    }
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == head_dim
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(
            depth=_VISION_LAYERS,
            embed_dim=_HIDDEN,
            hidden_size=_HIDDEN,  # output width of the patch merger = text width
            num_heads=_HEADS,
            mlp_ratio=2,
            patch_size=_PATCH,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    # Between 32x32 and 48x48 pixels: 4 to 9 image tokens after the 2x2 merge.
    pixel_range = {"shortest_edge": _TILE * _TILE, "longest_edge": 48 * 48}
    image_processor = Qwen2VLImageProcessorPil(
        size=pixel_range, patch_size=_PATCH, merge_size=2, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        size=pixel_range,
        patch_size=_PATCH,
        merge_size=2,
        temporal_patch_size=2,
        cap_pixels_per_frame=True,
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )
    return Qwen2VLForConditionalGeneration(config), processor


@dataclass(frozen=True)
class _Family:
    """How to build one family."""

    image_marker: str | None  # what its chat template writes for an image part
    build: Callable[[Any], tuple[Any, Any]]  # tokenizer -> (model, processor or tokenizer)
    qwen2_tokenizer: bool = False  # ships a Qwen2Tokenizer, as real checkpoints do


_FAMILIES: dict[str, _Family] = {
    "qwen2": _Family(None, _build_qwen2, qwen2_tokenizer=True),
    "llava": _Family("<image>", _build_llava),
    "idefics3": _Family("<image>", _build_idefics3),
    "mllama": _Family("<|image|>", _build_mllama),
    "qwen2_vl": _Family(
        "<|vision_start|><|image_pad|><|vision_end|>", _build_qwen2_vl, qwen2_tokenizer=True
    ),
}


def build_tiny_model(family: str, out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Build a tiny ``family`` model and save it, with its processor, to ``out_dir``.

    The directory then holds what a user's checkpoint holds (``config.json``,
    ``model.safetensors``, ``generation_config.json``, tokenizer files, the
    chat template and, for VLMs, the processor and image-processor configs),
    and loads back through the Auto classes. Weights are float32.

    Args:
        family: One of :data:`TINY_FAMILIES`.
        out_dir: Directory to write (created if missing; files in it are
            overwritten).
        seed: Seed of the random weights; the same seed gives identical files.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Unknown family.
        RuntimeError: The family needs a package that is not installed
            (Qwen2-VL without torchvision).
    """
    reason = missing_requirement(family)
    if reason is not None:
        raise RuntimeError(f"cannot build the tiny {family!r} model: {reason}")
    import torch
    from transformers import GenerationConfig

    spec = _FAMILIES[family]
    tokenizer = build_tiny_tokenizer(spec.image_marker, qwen2_class=spec.qwen2_tokenizer)
    # A private RNG stream: seeding must not disturb the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = spec.build(tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def describe_tiny_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about a built tiny model: architecture, parameter count, sizes.

    Reads only ``config.json`` and the safetensors header, so it is cheap.
    """
    import json

    from safetensors import safe_open

    config = json.loads((Path(path) / "config.json").read_text())
    with safe_open(str(Path(path) / "model.safetensors"), framework="np") as f:
        names = list(f.keys())
        num_parameters = sum(int(np.prod(f.get_slice(name).get_shape())) for name in names)
    return {
        "architecture": config["architectures"][0],
        "model_type": config["model_type"],
        "num_parameters": num_parameters,
    }
