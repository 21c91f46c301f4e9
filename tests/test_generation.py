"""Generation backends: the static decode loop against Hugging Face ``generate``.

Every model here is a tiny offline one (random weights): two VLM families with
different image paths (LLaVA's image tokens, Mllama's cross-attention), a text
model, and a hand-fed Qwen2-VL (multimodal rotary positions, the family the
GPU benchmark uses). Greedy decoding must match ``generate`` token for token;
sampling must be reproducible and follow the truncated distribution; the
returned log-probs must be those a teacher-forced forward gives.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainers.common.inputs import append_completions, encode_prompts  # noqa: E402
from trainers.generation import available_backends, make_backend  # noqa: E402
from trainers.generation.base import SamplingParams  # noqa: E402
from trainers.generation.static import (  # noqa: E402
    StaticBackendConfig,
    StaticGenerationBackend,
    cache_input_name,
    find_host_syncs,
    sample_tokens,
    truncation_mask,
)
from trainers.ppo import core  # noqa: E402

GREEDY = SamplingParams(max_new_tokens=16, temperature=0)
TEXTS = (
    "Make 24 from the cards 3, 4, 5 and 6.",
    "hi",
    "Walk north, turn left at the bank, and stop at the cafe on your right.",
)


def prompts(loaded, texts=TEXTS, seed: int = 0, padded: bool = True):
    """Left-padded inputs of rows with different lengths (and images for VLMs)."""
    rng = np.random.default_rng(seed)
    conversations, images = [], []
    for i, text in enumerate(texts):
        if loaded.is_vision:
            content = [{"type": "image"}, {"type": "text", "text": text}]
            images.append([rng.integers(0, 256, (36 + 6 * i, 44, 3), dtype=np.uint8)])
        else:
            content = text
        conversations.append([{"role": "user", "content": content}])
    inputs = encode_prompts(loaded.processor, conversations, images if loaded.is_vision else None)
    assert (inputs["attention_mask"] == 0).any() == padded
    return inputs


def assert_same(expected, got, *, logprob_atol: float = 1e-4) -> None:
    assert got.token_ids == expected.token_ids
    assert got.texts == expected.texts
    assert got.finish_reasons == expected.finish_reasons
    for a, b in zip(expected.logprobs, got.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=logprob_atol)


# ------------------------------------------------------------------ registry
def test_backends_are_registered():
    import typing

    from trainers.generation import BackendName

    assert {"hf", "static", "vllm"} <= set(available_backends())
    assert sorted(typing.get_args(BackendName)) == available_backends()  # the CLI's choices
    with pytest.raises(ValueError, match="unknown generation backend"):
        make_backend("nope", None, None)


def test_config_validates_and_buckets():
    cfg = StaticBackendConfig(batch_buckets=(1, 4, 16))
    assert [cfg.bucket_for(n) for n in (1, 2, 4, 5, 16, 17, 40)] == [1, 4, 4, 16, 16, 32, 48]
    for bad in (
        dict(batch_buckets=()),
        dict(batch_buckets=(4, 2)),
        dict(stop_check_interval=0),
        dict(cache_len_multiple=0),
    ):
        with pytest.raises(ValueError):
            StaticBackendConfig(**bad)


# ------------------------------------------------------------ greedy vs hf
@pytest.mark.parametrize("family", ["qwen2", "llava", "mllama", "idefics3"])
def test_greedy_static_equals_hf_token_for_token(tiny_model, family):
    loaded = tiny_model(family)
    model, processor = loaded.model, loaded.processor
    hf = make_backend("hf", model, processor)
    inputs = prompts(loaded)
    expected = hf.generate(inputs, GREEDY)

    plain = make_backend("static", model, processor)
    assert_same(expected, plain.generate(inputs, GREEDY))
    assert plain.last_decoder == "static-eager" and not plain.fallback_reasons

    # Padded to a bucket of 4 (a dummy row steps along), then reused for a
    # batch of other lengths: the state must be reloaded, not rebuilt.
    bucketed = make_backend(
        "static", model, processor, pad_to_buckets=True, release_after_phase=False
    )
    assert_same(expected, bucketed.generate(inputs, GREEDY))
    (state,) = bucketed._states.values()
    assert state.bucket == 4
    other = prompts(loaded, texts=("stop", "Is 8 / (3 - 8 / 3) = 24?", "ok then"), seed=1)
    assert_same(hf.generate(other, GREEDY), bucketed.generate(other, GREEDY))
    assert list(bucketed._states.values()) == [state]

    generic = make_backend("static", model, processor, static_decode=False)
    assert_same(expected, generic.generate(inputs, GREEDY))
    assert generic.last_decoder == "generic"

    # Without padding generate drops the mask; the causal mask alone must do.
    single = prompts(loaded, texts=TEXTS[:1], padded=False)
    assert_same(hf.generate(single, GREEDY), bucketed.generate(single, GREEDY))


def _tiny_qwen2_vl():
    """A tiny Qwen2-VL built from a config and hand-made inputs.

    Its processor needs torchvision (not installed here), but the model does
    not: the inputs are written out the way the processor would make them
    (vision start, image pads, vision end; 8-px patches of 2 frames; 4x4
    patches merge 2x2 into 4 image tokens).
    """
    from transformers import BatchFeature, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from trainers.common.modeling import prepare_tokenizer_for_generation
    from trainers.testing.tiny_models import build_tiny_tokenizer

    tokenizer = prepare_tokenizer_for_generation(build_tiny_tokenizer(None, qwen2_class=True))
    special = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
            },
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            depth=1,
            embed_dim=32,
            hidden_size=32,
            num_heads=4,
            mlp_ratio=2,
            patch_size=8,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    rows = []
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        image = [
            special["<|vision_start|>"],
            *[special["<|image_pad|>"]] * 4,
            special["<|vision_end|>"],
        ]
        rows.append(ids[:2] + image + ids[2:])
    width = max(map(len, rows))
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    inputs = BatchFeature(
        dict(
            input_ids=input_ids,
            attention_mask=mask,
            mm_token_type_ids=(input_ids == special["<|image_pad|>"]).long(),
            pixel_values=torch.randn(
                len(rows) * 16, 3 * 2 * 8 * 8, generator=torch.Generator().manual_seed(0)
            ),
            image_grid_thw=torch.tensor([[1, 4, 4]] * len(rows)),
        )
    )
    return model, tokenizer, inputs


def test_greedy_static_equals_hf_on_qwen2_vl_rope_positions():
    model, tokenizer, inputs = _tiny_qwen2_vl()
    expected = make_backend("hf", model, tokenizer).generate(inputs, GREEDY)
    backend = make_backend(
        "static", model, tokenizer, pad_to_buckets=True, release_after_phase=False
    )
    assert_same(expected, backend.generate(inputs, GREEDY))
    (state,) = backend._states.values()
    # Text + 3 rotary axes, advanced by one per step on fixed buffers.
    assert state.positions.shape == (4, 4, 1)
    # The image matters: other pixels, other text.
    changed = dict(inputs)
    changed["pixel_values"] = inputs["pixel_values"] * -3
    assert backend.generate(changed, GREEDY).token_ids != expected.token_ids


# -------------------------------------------------------------- sampling
def test_truncation_mask_matches_hf_top_k_top_p_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=gen) * 3
    logits[0, :10] = 1.0  # ties at the k-th value
    for k, p in [(0, 0.9), (5, 1.0), (5, 0.5), (1, 0.3), (10, 0.95), (0, 0.01), (60, 0.99)]:
        scores = logits.clone()
        if k:
            scores = TopKLogitsWarper(k)(None, scores)
        if p < 1:
            scores = TopPLogitsWarper(p)(None, scores)
        expected = torch.isinf(scores)
        got = truncation_mask(logits, torch.tensor(k), torch.tensor(p))
        assert torch.equal(got, expected), (k, p)


def test_sampled_tokens_follow_the_truncated_distribution():
    gen = torch.Generator().manual_seed(1)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    rows = 40_000
    batch = logits.expand(rows, -1).contiguous()
    temperature, top_k, top_p = torch.tensor(0.7), torch.tensor(4), torch.tensor(0.9)
    noise = torch.empty_like(batch).exponential_(generator=gen)
    tokens, logprobs = sample_tokens(
        batch, mode="truncated", temperature=temperature, top_k=top_k, top_p=top_p, noise=noise
    )
    scaled = logits / 0.7
    kept = ~truncation_mask(scaled[None], top_k, top_p)[0]
    probs = torch.softmax(scaled.masked_fill(~kept, float("-inf")), dim=-1)
    counts = torch.bincount(tokens, minlength=len(logits)).float() / rows
    assert counts[~kept].sum() == 0
    np.testing.assert_allclose(counts.numpy(), probs.numpy(), atol=0.01)
    # Log-probs are of the tempered softmax before truncation.
    np.testing.assert_allclose(
        logprobs.numpy(), torch.log_softmax(scaled, -1)[tokens].numpy(), rtol=1e-6
    )


def test_sampling_is_reproducible_with_a_seed(tiny_model):
    loaded = tiny_model("qwen2")
    backend = make_backend("static", loaded.model, loaded.processor)
    inputs = prompts(loaded)
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    first = backend.generate(inputs, params)
    assert backend.generate(inputs, params) == first
    others = [
        backend.generate(
            inputs, SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=s)
        )
        for s in (8, 9)
    ]
    assert any(o.token_ids != first.token_ids for o in others)
    # Greedy ignores the seed.
    assert backend.generate(inputs, GREEDY) == backend.generate(
        inputs, SamplingParams(max_new_tokens=16, temperature=0, seed=3)
    )
    # The reference backend is seeded too (its own draws: only greedy agrees across backends).
    hf = make_backend("hf", loaded.model, loaded.processor)
    first = hf.generate(inputs, params)
    torch.manual_seed(123)  # the global stream does not matter
    assert hf.generate(inputs, params) == first
    assert any(
        hf.generate(inputs, SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=s)).token_ids
        != first.token_ids
        for s in (8, 9)
    )


@pytest.mark.parametrize("family", ["qwen2", "llava", "mllama"])
def test_logprobs_match_a_teacher_forced_forward(tiny_model, family):
    loaded = tiny_model(family)
    model, processor = loaded.model, loaded.processor
    inputs = prompts(loaded)
    params = SamplingParams(max_new_tokens=10, temperature=0.8, top_k=50, top_p=0.95, seed=1)
    gen = make_backend("static", model, processor, pad_to_buckets=True).generate(inputs, params)
    full, mask = append_completions(inputs, gen.token_ids, pad_token_id=_pad_id(processor))
    T = mask.shape[1]
    with torch.no_grad():
        logits = model(**full).logits
    scored = core.token_logprobs(
        logits[:, -T - 1 : -1], full["input_ids"][:, -T:], params.temperature
    )
    for row, lps in enumerate(gen.logprobs):
        np.testing.assert_allclose(scored[row, : len(lps)].numpy(), lps, atol=2e-4)


def _pad_id(processor) -> int:
    from trainers.common.modeling import get_tokenizer

    return get_tokenizer(processor).pad_token_id


def test_banned_tokens_are_never_picked_but_keep_their_logprob_mass():
    gen = torch.Generator().manual_seed(2)
    logits = torch.tensor([[4.0, 1.0, 0.5, 0.0], [0.0, 3.0, 2.9, -1.0]]).repeat(500, 1)
    banned = torch.tensor([True, False, False, False])
    tokens, logprobs = sample_tokens(logits, mode="greedy", temperature=None, banned=banned)
    assert tokens[:2].tolist() == [1, 1]
    np.testing.assert_allclose(logprobs.numpy(), torch.log_softmax(logits, -1)[torch.arange(1000), tokens].numpy())
    for mode, top_k, top_p in (("sample", 0, 1.0), ("truncated", 1, 1.0), ("truncated", 0, 0.5)):
        noise = torch.empty_like(logits).exponential_(generator=gen)
        tokens, logprobs = sample_tokens(
            logits,
            mode=mode,
            temperature=torch.tensor(1.0),
            top_k=torch.tensor(top_k),
            top_p=torch.tensor(top_p),
            noise=noise,
            banned=banned,
        )
        assert not (tokens == 0).any(), mode
        if mode == "truncated":  # top-k / top-p act on what is left after the ban, as in hf
            assert (tokens[0::2] == 1).all()
        np.testing.assert_allclose(
            logprobs.numpy(), torch.log_softmax(logits, -1)[torch.arange(1000), tokens].numpy(), rtol=1e-6
        )


@pytest.mark.parametrize("family", ["llava", "mllama"])
def test_image_placeholders_are_never_sampled(tiny_model, family):
    """A placeholder in an answer has no image behind it: PPO's scoring pass would fail on it."""
    from trainers.generation.base import placeholder_token_ids

    loaded = tiny_model(family)
    model, processor = loaded.model, loaded.processor
    (placeholder,) = placeholder_token_ids(model, processor)
    assert placeholder_token_ids(*_text_model(tiny_model)) == set()
    inputs = prompts(loaded)

    def favour_placeholder(module, args, output):
        output = output.clone()
        output[..., placeholder] += 100.0
        return output

    hook = model.get_output_embeddings().register_forward_hook(favour_placeholder)
    try:
        hf = make_backend("hf", model, processor)
        expected = hf.generate(inputs, GREEDY)
        assert all(placeholder not in ids for ids in expected.token_ids)
        for options in ({}, {"pad_to_buckets": True}, {"static_decode": False}):
            static = make_backend("static", model, processor, **options)
            assert_same(expected, static.generate(inputs, GREEDY))
            sampled = static.generate(inputs, SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0))
            assert all(placeholder not in ids for ids in sampled.token_ids)
        # Without the ban the biased model answers with nothing but placeholders.
        hf.suppressed_ids = set()
        assert all(ids[0] == placeholder for ids in hf.generate(inputs, GREEDY).token_ids)
    finally:
        hook.remove()


def test_checkpoint_generation_config_extras_do_not_reshape_sampling(tiny_model):
    """A checkpoint's repetition penalty (Qwen2-VL ships one) would make hf sample from
    another distribution than the one PPO scores, and than static."""
    loaded = tiny_model("qwen2")
    model, processor = loaded.model, loaded.processor
    inputs = prompts(loaded)
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, seed=4)
    hf = make_backend("hf", model, processor)
    plain = [hf.generate(inputs, GREEDY), hf.generate(inputs, sampled)]
    config = model.generation_config
    saved = config.to_dict()
    config.repetition_penalty, config.no_repeat_ngram_size, config.bad_words_ids = 3.0, 1, [[plain[0].token_ids[0][0]]]
    try:
        assert [hf.generate(inputs, GREEDY), hf.generate(inputs, sampled)] == plain
        assert_same(plain[0], make_backend("static", model, processor).generate(inputs, GREEDY))
        assert model.generation_config is config and config.repetition_penalty == 3.0
        # The settings do bite when generate reads them.
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False, pad_token_id=_pad_id(processor))
        assert out[0, inputs["input_ids"].shape[1]] != plain[0].token_ids[0][0]
    finally:
        for key in ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids"):
            setattr(config, key, saved.get(key))


def _text_model(tiny_model):
    loaded = tiny_model("qwen2")
    return loaded.model, loaded.processor


@pytest.mark.parametrize("name", ["hf", "static"])
def test_batched_backends_refuse_a_tokenizer_without_pad(tiny_model, name):
    import copy

    model, tokenizer = _text_model(tiny_model)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        make_backend(name, model, tokenizer)


# ------------------------------------------------------- EOS and stop strings
def test_eos_and_stop_strings_end_each_row_like_hf(tiny_model):
    loaded = tiny_model("llava")
    model, processor = loaded.model, loaded.processor
    inputs = prompts(loaded)
    hf = make_backend("hf", model, processor)
    free = hf.generate(inputs, GREEDY)

    # Make a token that row 0 emits after a few steps (and some other row
    # never emits) the EOS, so row 0 ends early and another row runs on.
    row0 = free.token_ids[0]
    eos = next(
        tok
        for step, tok in enumerate(row0)
        if step >= 2 and tok not in row0[:step] and any(tok not in ids for ids in free.token_ids)
    )
    hf.eos_ids = {eos}
    expected = hf.generate(inputs, GREEDY)
    assert expected.finish_reasons[0] == "eos" and "length" in expected.finish_reasons
    for interval in (1, 8):
        backend = make_backend(
            "static", model, processor, stop_check_interval=interval, pad_to_buckets=True
        )
        backend.eos_ids = {eos}
        assert_same(expected, backend.generate(inputs, GREEDY))

    # A stop string from the middle of row 2's text ends row 2 there.
    hf.eos_ids = StaticGenerationBackend(model, processor).eos_ids
    text = free.texts[2]
    stop = next(
        text[i : i + 3]
        for i in range(4, len(text) - 3)
        if text[i : i + 3] not in text[: i + 2] and text[i : i + 3].strip()
    )
    params = SamplingParams(max_new_tokens=16, temperature=0, stop_strings=(stop,))
    expected = hf.generate(inputs, params)
    assert expected.finish_reasons[2] == "stop" and stop in expected.texts[2]
    assert len(expected.token_ids[2]) < len(free.token_ids[2])
    for interval in (1, 3, 8, 16):
        backend = make_backend("static", model, processor, stop_check_interval=interval)
        assert_same(expected, backend.generate(inputs, params))


# ----------------------------------------------------- graphs and fallbacks
@pytest.mark.parametrize("family", ["qwen2", "llava", "mllama"])
def test_decode_step_never_waits_on_the_device(tiny_model, family):
    """A CUDA graph cannot hold a host synchronisation; check the step on CPU."""
    _, found = find_host_syncs(lambda: torch.tensor([3]).item())
    assert found == ["aten::_local_scalar_dense"]  # the detector sees them

    loaded = tiny_model(family)
    backend = make_backend(
        "static", loaded.model, loaded.processor, pad_to_buckets=True, release_after_phase=False
    )
    inputs = prompts(loaded)
    for params in (
        GREEDY,
        SamplingParams(max_new_tokens=4, temperature=0.7, top_k=5, top_p=0.9, seed=0),
    ):
        backend.generate(inputs, params)
        (state,) = backend._states.values()
        with torch.no_grad():
            _, found = find_host_syncs(state.decode_step)
        assert found == [], f"{family} {state.mode}: {found}"


def test_cuda_graphs_requested_on_cpu_fall_back_with_a_reason(tiny_model, caplog):
    loaded = tiny_model("qwen2")
    inputs = prompts(loaded)
    expected = make_backend("hf", loaded.model, loaded.processor).generate(inputs, GREEDY)
    backend = make_backend("static", loaded.model, loaded.processor, use_cuda_graphs=True)
    with caplog.at_level(logging.WARNING, logger="trainers.generation.static"):
        assert_same(expected, backend.generate(inputs, GREEDY))
    assert backend.last_decoder == "static-eager"
    assert any("CUDA graphs need a CUDA device" in r for r in backend.fallback_reasons)
    assert "CUDA graphs need a CUDA device" in caplog.text


def test_inputs_the_static_step_cannot_follow_use_the_generic_loop(tiny_model):
    """A decode input that changes from step to step cannot live in a fixed buffer."""
    loaded = tiny_model("qwen2")
    model = loaded.model
    inputs = prompts(loaded)
    expected = make_backend("hf", model, loaded.processor).generate(inputs, GREEDY)
    original = model.prepare_inputs_for_generation

    def prepare(input_ids, **kwargs):
        out = original(input_ids, **kwargs)
        out["logits_to_keep"] = (
            1 + input_ids.shape[1] % 2
        )  # varies per step, harmless for the output
        return out

    model.prepare_inputs_for_generation = prepare
    try:
        backend = make_backend("static", model, loaded.processor)
        got = backend.generate(inputs, GREEDY)
    finally:
        del model.prepare_inputs_for_generation
    assert backend.last_decoder == "generic"
    assert any("'logits_to_keep' changes" in r for r in backend.fallback_reasons)
    assert_same(expected, got)


@pytest.mark.parametrize("family", ["qwen2", "llava", "mllama", "idefics3"])
def test_the_cache_goes_under_the_name_the_model_reads(tiny_model, family):
    """transformers 5.24 renamed the cache input; the old name loses to the new one when both are set."""
    import inspect

    model = tiny_model(family).model
    assert cache_input_name() in inspect.signature(model.forward).parameters


def test_an_untested_transformers_release_generates_with_hf(tiny_model, monkeypatch, caplog):
    import transformers

    loaded = tiny_model("qwen2")
    inputs = prompts(loaded)
    expected = make_backend("hf", loaded.model, loaded.processor).generate(inputs, GREEDY)
    monkeypatch.setattr(transformers, "__version__", "5.99.0")
    with caplog.at_level(logging.WARNING, logger="trainers.generation.static"):
        backend = make_backend("static", loaded.model, loaded.processor)
    assert_same(expected, backend.generate(inputs, GREEDY))
    assert backend.last_decoder == "hf"
    (reason,) = backend.fallback_reasons
    assert "transformers 5.99.0 is outside" in reason and "generating with hf" in caplog.text

    trusted = make_backend("static", loaded.model, loaded.processor, allow_untested_transformers=True)
    assert_same(expected, trusted.generate(inputs, GREEDY))
    assert trusted.last_decoder == "static-eager" and not trusted.fallback_reasons


def test_a_decode_cache_that_does_not_advance_hands_the_call_to_hf(tiny_model, monkeypatch):
    """A model that decodes on a cache other than the backend's (as when transformers renamed
    the cache input) gives wrong tokens without raising; the backend must notice and redo the call."""
    import copy

    from trainers.generation import static

    loaded = tiny_model("qwen2")
    inputs = prompts(loaded)
    hf = make_backend("hf", loaded.model, loaded.processor)
    expected = hf.generate(inputs, GREEDY)
    decoys: dict[int, object] = {}
    original = static._StaticState.model_inputs

    def elsewhere(self):
        step_inputs = original(self)
        step_inputs[self.cache_key] = decoys.setdefault(id(self), copy.deepcopy(self.cache))
        return step_inputs

    monkeypatch.setattr(static._StaticState, "model_inputs", elsewhere)
    backend = make_backend("static", loaded.model, loaded.processor)
    assert_same(expected, backend.generate(inputs, GREEDY))
    assert backend.last_decoder == "hf"
    assert any("did not follow the decode steps" in r for r in backend.fallback_reasons)
    other = prompts(loaded, texts=("stop", "ok then"), seed=1)
    assert_same(hf.generate(other, GREEDY), backend.generate(other, GREEDY))  # stays on hf
    assert backend.last_decoder == "hf" and decoys


def test_rollout_phase_releases_caches_and_weights_changes_are_seen(tiny_model):
    loaded = tiny_model("qwen2")
    backend = make_backend("static", loaded.model, loaded.processor)
    inputs = prompts(loaded)
    with backend.rollout_phase():
        backend.generate(inputs, GREEDY)
        backend.generate(inputs, GREEDY)
        assert len(backend._states) == 1
    assert not backend._states


def test_right_padded_prompts_are_refused(tiny_model):
    loaded = tiny_model("qwen2")
    inputs = dict(prompts(loaded))
    inputs["attention_mask"] = inputs["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="left-padded"):
        make_backend("static", loaded.model, loaded.processor).generate(inputs, GREEDY)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_decoding_equals_hf_on_gpu(tiny_model_path):
    from trainers.common.modeling import load_model_and_processor

    loaded = load_model_and_processor(tiny_model_path("llava"), device="cuda")
    inputs = prompts(loaded).to("cuda")
    expected = make_backend("hf", loaded.model, loaded.processor).generate(inputs, GREEDY)
    backend = make_backend("static", loaded.model, loaded.processor, release_after_phase=False)
    assert_same(expected, backend.generate(inputs, GREEDY), logprob_atol=1e-3)
    assert backend.last_decoder == "graph", backend.fallback_reasons
    assert_same(expected, backend.generate(inputs, GREEDY), logprob_atol=1e-3)  # replayed
    params = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=5)
    assert backend.generate(inputs, params) == backend.generate(inputs, params)


# --------------------------------------------------------------- vLLM, PPO
def test_vllm_backend_says_how_to_get_vllm_when_missing(tiny_model):
    from trainers.generation.vllm_backend import vllm_available

    if vllm_available():
        pytest.skip("vLLM is installed here")
    loaded = tiny_model("qwen2")
    with pytest.raises(ImportError, match="pip install vllm"):
        make_backend("vllm", loaded.model, loaded.processor)


def test_ppo_update_runs_with_the_static_backend(tiny_model_path, tmp_path):
    from helpers import tiny_ppo_config

    from trainers.common.metrics import read_metrics
    from trainers.ppo.ppo_trainer import PPOTrainer

    cfg = tiny_ppo_config(
        tiny_model_path("llava"),
        tmp_path / "run",
        env_id="GeneralPoints-VL-v0",
        num_envs=3,
        generation_backend="static",
    )
    trainer = PPOTrainer(cfg)
    assert isinstance(trainer.backend, StaticGenerationBackend)
    before = {k: v.detach().clone() for k, v in trainer.engine.module.policy.state_dict().items()}
    trainer.train()
    after = trainer.engine.module.policy.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items()), "the policy did not change"
    assert not trainer.backend._states, "rollout caches were not released after the phase"
    (record,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert record["perf/rollout_tokens_per_s"] > 0 and math.isfinite(record["losses/policy"])


def test_benchmark_script_runs_on_a_tiny_config(tmp_path):
    """The GPU benchmark is only meaningful on a GPU; check that it runs at all."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generation.py"
    spec = importlib.util.spec_from_file_location("bench_generation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gen.json"
    assert bench.main(["--tiny", "--batches", "3", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["generation"]
    assert [r["backend"] for r in rows] == ["hf", "static"]
    assert all(r["tokens_per_s"] > 0 and r["prompt_tokens"] == 40 for r in rows)
    assert rows[1]["decoder"] == "static-eager" and rows[1]["fallbacks"] == []


def test_mllama_text_only_batch_after_an_image_batch(tiny_model):
    """Cross-attention layers filled by an earlier image batch must not leak into a text-only one."""
    loaded = tiny_model("mllama")
    model, processor = loaded.model, loaded.processor
    hf = make_backend("hf", model, processor)
    backend = make_backend(
        "static", model, processor, pad_to_buckets=True, release_after_phase=False
    )
    images = prompts(loaded)
    assert_same(hf.generate(images, GREEDY), backend.generate(images, GREEDY))
    conversations = [[{"role": "user", "content": [{"type": "text", "text": t}]}] for t in TEXTS]
    text_only = encode_prompts(processor, conversations)
    assert_same(hf.generate(text_only, GREEDY), backend.generate(text_only, GREEDY))
    assert_same(hf.generate(images, GREEDY), backend.generate(images, GREEDY))


@pytest.mark.slow
@pytest.mark.parametrize("gather", [True, False])
def test_ppo_update_with_static_backend_on_zero3(tiny_model_path, tmp_path, gather):
    """ZeRO-3 on one CPU process: weights gathered once per phase, or gathered per forward."""
    from helpers import tiny_ppo_config

    from trainers.ppo.ppo_trainer import PPOTrainer

    cfg = tiny_ppo_config(
        tiny_model_path("qwen2"),
        tmp_path / "run",
        deepspeed="zero3",
        gather_for_generation=gather,
        generation_backend="static",
    )
    trainer = PPOTrainer(cfg)
    backend = trainer.backend
    assert backend._weights_partitioned()
    with trainer.engine.gathered(True):
        assert not backend._weights_partitioned()
    trainer.train()
    assert backend.last_decoder == "static-eager" and not backend.fallback_reasons
