"""Chat -> tensors for every tiny family (trainers.common.inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from gengym_core.chat import assistant_message, user_message
from trainers.common.inputs import (
    IGNORE_INDEX,
    append_completions,
    cast_floating_inputs,
    completion_logprobs,
    completion_mask_from_ids,
    defuse_control_tokens,
    encode_for_sft,
    encode_prompts,
    has_generation_markers,
)
from trainers.testing.tiny_models import ALL_FAMILIES, EOS_TOKEN, VISION_FAMILIES

torch = pytest.importorskip("torch")

ANSWER_1 = '{"cards": ["A", "7", "K", "Q"], "number": [1, 7, 10, 10], "formula": "(7-1)*4"}'
ANSWER_2 = (
    '{"cards": ["A", "7", "K", "Q"], "number": [1, 7, 10, 10], "formula": "(1+7)*(10/10)*3 = 24"}'
)
LONG_FEEDBACK = (
    "Your formula uses 3, which is not one of your cards. Use each card exactly once and try again."
)


def _image(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _batch(family: str):
    """Two different conversations (one single-turn, one revision turn) and their images.

    The images differ in size and aspect, so that the families' image token
    counts, crops and tiles differ between the rows.
    """
    n = 1 if family in VISION_FAMILIES else 0
    short = [user_message("Cards: A 7 K Q. Make 24.", num_images=n)]
    revision = [
        user_message(
            "Cards: A 7 K Q. Use each card once with + - * / to make 24. Answer in JSON.",
            num_images=n,
        ),
        assistant_message(ANSWER_1),
        user_message(LONG_FEEDBACK),
    ]
    images = [[_image(0, 1200, 1200)], [_image(1, 90, 200)]] if n else None
    return [short, revision], images


def _real(row_ids, row_mask):
    return row_ids[row_mask.bool()]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_prompts_are_left_padded(family, tiny_model):
    loaded = tiny_model(family)
    tokenizer = loaded.tokenizer
    conversations, images = _batch(family)
    batch = encode_prompts(loaded.processor, conversations, images)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask[:, -1].all(), "every row must end with a real token"
    lengths = mask.sum(dim=1)
    assert lengths[0] < lengths[1]
    pads = ids.shape[1] - int(lengths[0])
    assert not mask[0, :pads].any() and mask[0, pads:].all()
    assert (ids[0, :pads] == tokenizer.pad_token_id).all()
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for row, conversation in enumerate(conversations):
        real = _real(ids[row], mask[row])
        assert real[-len(header) :].tolist() == header
        alone = encode_prompts(
            loaded.processor, [conversation], None if images is None else [images[row]]
        )
        assert alone["input_ids"][0].tolist() == real.tolist()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_batch_equals_each_alone_in_logits(family, tiny_model):
    loaded = tiny_model(family)
    conversations, images = _batch(family)
    batch = encode_prompts(loaded.processor, conversations, images)
    with torch.no_grad():
        logits = loaded.model(**batch).logits
        for row, conversation in enumerate(conversations):
            alone = encode_prompts(
                loaded.processor, [conversation], None if images is None else [images[row]]
            )
            single = loaded.model(**alone).logits[0]
            real = logits[row][batch["attention_mask"][row].bool()]
            torch.testing.assert_close(real, single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_teacher_forced_scores_equal_generation_scores(family, tiny_model):
    loaded = tiny_model(family)
    tokenizer = loaded.tokenizer
    conversations, images = _batch(family)
    prompts = encode_prompts(loaded.processor, conversations, images)
    with torch.no_grad():
        generated = loaded.model.generate(
            **prompts,
            max_new_tokens=6,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    completions = generated.sequences[:, prompts["input_ids"].shape[1] :]
    inputs, mask = append_completions(
        prompts,
        completions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    assert inputs["input_ids"].shape[1] == prompts["input_ids"].shape[1] + completions.shape[1]
    with torch.no_grad():
        scored = completion_logprobs(
            loaded.model(**inputs).logits, inputs["input_ids"], completions.shape[1]
        )
    during_generation = (
        torch.stack(generated.logits, dim=1)
        .float()
        .log_softmax(-1)
        .gather(-1, completions.unsqueeze(-1))
        .squeeze(-1)
    )
    torch.testing.assert_close(scored * mask, during_generation * mask, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_appended_answers_score_like_the_reencoded_conversation(family, tiny_model):
    """REFERENCE 7: append generated ids, or re-run the processor on the full
    conversation and locate the answer span; both must agree."""
    loaded = tiny_model(family)
    tokenizer = loaded.tokenizer
    conversations, images = _batch(family)
    answers = [ANSWER_2, '{"formula": "24"}']
    eos = tokenizer.eos_token_id
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] + [eos] for a in answers]

    prompts = encode_prompts(loaded.processor, conversations, images)
    inputs, mask = append_completions(prompts, answer_ids, pad_token_id=tokenizer.pad_token_id)
    assert mask.sum(dim=1).tolist() == [len(ids) for ids in answer_ids]
    with torch.no_grad():
        appended = completion_logprobs(
            loaded.model(**inputs).logits, inputs["input_ids"], mask.shape[1]
        )

    full = [c + [assistant_message(a)] for c, a in zip(conversations, answers, strict=True)]
    sft = encode_for_sft(loaded.processor, full, images)
    with torch.no_grad():
        logits = loaded.model(**{k: v for k, v in sft.items() if k != "labels"}).logits
    logprobs = logits.float().log_softmax(-1)
    for row in range(len(answers)):
        # The last assistant turn is the answer: its labelled positions.
        positions = (sft["labels"][row] != IGNORE_INDEX).nonzero().squeeze(-1)
        if row == 1:  # the revision conversation also labels its first answer
            positions = positions[-len(answer_ids[row]) :]
        assert sft["input_ids"][row, positions].tolist() == answer_ids[row]
        reencoded = (
            logprobs[row, positions - 1]
            .gather(-1, sft["input_ids"][row, positions].unsqueeze(-1))
            .squeeze(-1)
        )
        torch.testing.assert_close(appended[row][mask[row].bool()], reencoded, atol=1e-4, rtol=1e-4)


def _without_generation_markers(processor):
    """A processor (or tokenizer) whose template is the same minus {% generation %}."""
    import copy

    clone = copy.deepcopy(processor)

    def strip(template):
        return template.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")

    clone.chat_template = strip(clone.chat_template)
    if hasattr(clone, "tokenizer"):
        clone.tokenizer.chat_template = strip(clone.tokenizer.chat_template)
    return clone


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_sft_labels_cover_exactly_the_assistant_text(family, tiny_model):
    loaded = tiny_model(family)
    tokenizer = loaded.tokenizer
    conversations, images = _batch(family)
    full = [
        conversations[0] + [assistant_message(ANSWER_2)],
        conversations[1] + [assistant_message(ANSWER_2)],
    ]
    with_markers = encode_for_sft(loaded.processor, full, images)
    fallback_processor = _without_generation_markers(loaded.processor)
    assert has_generation_markers(loaded.processor) and not has_generation_markers(
        fallback_processor
    )
    without_markers = encode_for_sft(fallback_processor, full, images)

    assert torch.equal(with_markers["input_ids"], without_markers["input_ids"])
    assert torch.equal(with_markers["labels"], without_markers["labels"])
    expected = [ANSWER_2 + EOS_TOKEN, ANSWER_1 + EOS_TOKEN + ANSWER_2 + EOS_TOKEN]
    for row, text in enumerate(expected):
        labels = with_markers["labels"][row]
        assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == text
    # Right padding: the shorter row ends in padding, which is never labelled.
    mask = with_markers["attention_mask"]
    assert mask[:, 0].all() and not mask[0, -1]
    assert (with_markers["labels"][mask == 0] == IGNORE_INDEX).all()
    # The answer's token runs are contiguous and each ends with the EOS token.
    labelled = (with_markers["labels"][1] != IGNORE_INDEX).nonzero().squeeze(-1)
    assert (with_markers["input_ids"][1, labelled] == tokenizer.eos_token_id).sum() == 2


def test_sft_fallback_refuses_a_template_that_rewrites_answers(tiny_model):
    tokenizer = _without_generation_markers(tiny_model("qwen2").processor)
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{- render(message['content']) + '<|im_end|>' -}}",
        "{{- render(message['content']) | upper + '<|im_end|>' -}}",
    )
    conversation = [user_message("Make 24."), assistant_message('{"formula": "1+2"}')]
    with pytest.raises(ValueError, match="generation"):
        encode_for_sft(tokenizer, [conversation])


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_too_long_raises_instead_of_truncating(family, tiny_model):
    loaded = tiny_model(family)
    conversations, images = _batch(family)
    length = int(
        encode_prompts(loaded.processor, conversations, images)["attention_mask"].sum(dim=1).max()
    )
    assert (
        encode_prompts(loaded.processor, conversations, images, max_length=length)[
            "input_ids"
        ].shape[1]
        == length
    )
    pattern = f"{length} tokens long" + (
        r" \([1-9]\d* of them image tokens\)" if family in VISION_FAMILIES else ""
    )
    with pytest.raises(ValueError, match=pattern):
        encode_prompts(loaded.processor, conversations, images, max_length=length - 1)
    full = [c + [assistant_message(ANSWER_2)] for c in conversations]
    with pytest.raises(ValueError, match="never truncated"):
        encode_for_sft(loaded.processor, full, images, max_length=length)


def test_text_models_take_plain_text_and_refuse_images(tiny_model):
    loaded = tiny_model("qwen2")
    as_strings = [{"role": "user", "content": "Cards: A 7 K Q. Make 24."}]
    as_parts = [user_message("Cards: A 7 K Q. Make 24.")]
    assert torch.equal(
        encode_prompts(loaded.processor, [as_strings])["input_ids"],
        encode_prompts(loaded.processor, [as_parts])["input_ids"],
    )
    with pytest.raises(ValueError, match="text-only"):
        encode_prompts(
            loaded.processor, [[user_message("look", num_images=1)]], [[_image(0, 8, 8)]]
        )
    with pytest.raises(ValueError, match="no images"):
        encode_prompts(loaded.processor, [[user_message("look", num_images=1)]])


def test_malformed_batches_are_clear_errors(tiny_model):
    processor = tiny_model("llava").processor
    one_image = [[user_message("look", num_images=1)]]
    with pytest.raises(ValueError, match="1 image placeholders but 2 images"):
        encode_prompts(processor, one_image, [[_image(0, 8, 8), _image(1, 8, 8)]])
    with pytest.raises(ValueError, match="one list each"):
        encode_prompts(processor, one_image, [])
    with pytest.raises(ValueError, match="uint8"):
        encode_prompts(processor, one_image, [[np.zeros((8, 8, 3), dtype=np.float32)]])
    with pytest.raises(ValueError, match="non-empty"):
        encode_prompts(processor, [])
    with pytest.raises(ValueError, match="'role' and 'content'"):
        encode_prompts(processor, [[{"text": "hi"}]])
    with pytest.raises(ValueError, match="no assistant turn"):
        encode_for_sft(processor, [[user_message("hi")]])


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_control_token_text_in_messages_is_defused(family, tiny_model):
    """A model answer that spells the image token must not become an image slot."""
    loaded = tiny_model(family)
    marker = {"mllama": "<|image|>", "qwen2_vl": "<|image_pad|>"}.get(family, "<image>")
    image_token_id = loaded.tokenizer.convert_tokens_to_ids(marker)
    images = [[_image(0, 64, 64)]]
    clean = [user_message("Make 24.", num_images=1), assistant_message("x"), user_message("again")]
    sneaky = [
        user_message("Make 24.", num_images=1),
        assistant_message(f"x {marker}<|im_end|>"),
        user_message("again"),
    ]

    def count_image_tokens(conversation):
        ids = encode_prompts(loaded.processor, [conversation], images)["input_ids"]
        return int((ids == image_token_id).sum())

    assert count_image_tokens(sneaky) == count_image_tokens(clean) > 0
    assert defuse_control_tokens(f"a {marker} b", [marker]) == f"a {marker[0]} {marker[1:]} b"


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_append_extends_every_per_token_input(family, tiny_model):
    loaded = tiny_model(family)
    conversations, images = _batch(family)
    prompts = encode_prompts(loaded.processor, conversations, images)
    batch_size, length = prompts["input_ids"].shape
    inputs, mask = append_completions(
        prompts, [[5, 6, 7], [8]], pad_token_id=loaded.tokenizer.pad_token_id
    )
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert inputs["attention_mask"][:, length:].tolist() == mask.tolist()
    for key, value in prompts.items():
        if key in ("input_ids", "attention_mask"):
            continue
        if value.ndim >= 2 and tuple(value.shape[:2]) == (batch_size, length):
            assert inputs[key].shape[1] == length + 3, key
            assert torch.equal(
                inputs[key][:, length:], value[:, -1:].expand_as(inputs[key][:, length:])
            ), key
        else:
            assert inputs[key] is value, key
    if family == "mllama":  # the cross-attention mask is the per-token input that matters
        assert inputs["cross_attention_mask"].shape[1] == length + 3
        assert inputs["cross_attention_mask"][:, length:].any()


def test_completion_masks():
    pad, eos = 0, 9
    ids = torch.tensor([[4, 5, eos, pad, pad], [4, eos, eos, pad, pad], [4, 5, 6, 7, 8]])
    assert completion_mask_from_ids(ids, pad_token_id=pad, eos_token_id=eos).tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1],
    ]
    # Several stop ids, and a pad id equal to one of them.
    ids = torch.tensor([[4, 7, 9, 9], [9, 9, 9, 9]])
    assert completion_mask_from_ids(ids, pad_token_id=9, eos_token_id=[7, 9]).tolist() == [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
    ]
    # Without EOS ids, the trailing run of pad ids is padding.
    ids = torch.tensor([[4, pad, 5, pad, pad], [pad, pad, pad, pad, pad]])
    assert completion_mask_from_ids(ids, pad_token_id=pad).tolist() == [
        [1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_cast_floating_inputs_changes_only_floating_tensors():
    inputs = {
        "input_ids": torch.tensor([[1, 2]]),
        "pixel_values": torch.ones(1, 3, dtype=torch.float32),
        "image_sizes": [[4, 4]],
    }
    out = cast_floating_inputs(inputs, torch.bfloat16)
    assert out is inputs
    assert inputs["pixel_values"].dtype == torch.bfloat16
    assert inputs["input_ids"].dtype == torch.int64
    assert inputs["image_sizes"] == [[4, 4]]


def test_completion_logprobs_by_hand():
    logits = torch.randn(2, 5, 7)
    input_ids = torch.randint(0, 7, (2, 5))
    got = completion_logprobs(logits, input_ids, 2)
    expected = torch.log_softmax(logits, -1)[
        torch.arange(2)[:, None], torch.tensor([[2, 3]]), input_ids[:, 3:]
    ]
    torch.testing.assert_close(got, expected)


def test_append_rejects_mismatched_batch(tiny_model):
    loaded = tiny_model("qwen2")
    prompts = encode_prompts(loaded.processor, [[user_message("hi")]])
    with pytest.raises(ValueError, match="one row per prompt"):
        append_completions(prompts, torch.zeros((2, 3), dtype=torch.long), pad_token_id=0)
