"""Tests for trainers.common.spans: thought/answer token weights for any tokenizer.

Three tokenizers are built offline with the ``tokenizers`` library, one per
decoding style that matters: byte-level BPE (GPT-2, Llama 3, Qwen), a
SentencePiece-style Unigram with byte fallback and a stripped leading space
(Llama 2, Mistral), and WordPiece (BERT-style, spaces inserted on decoding).
"""

from __future__ import annotations

import doctest
import math
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trainers.common import spans
from trainers.common.spans import (
    answer_keys_for,
    answer_start_char,
    batch_completion_token_weights,
    completion_char_offsets,
    completion_token_weights,
    token_weights_from_offsets,
)

GP_ANSWER = 'Cards first. {"cards": ["A", "8", "3", "K"], "number": [1, 8, 3, 10], "formula": "(10-8+1)*8 = 24"}'
VIRL_ANSWER = "{'current observation': 'a bank on my left', 'current instruction': 'turn left', 'action': 'turn_direction(left)'}"
UNICODE_ANSWER = 'Hmm… 3€ or é? 😀 {"cards": ["A"], "formula": "1€+23"}'

_CORPUS = [GP_ANSWER, VIRL_ANSWER, "Let me think about the formula and the action first."] * 10


def _byte_level_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<eos>"],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return tok


def _sentencepiece_unigram() -> Tokenizer:
    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    pieces += [(f"<0x{b:02X}>", -20.0) for b in range(256)]  # byte fallback
    pieces += [(c, -8.0) for c in "▁" + "".join(chr(i) for i in range(33, 127))]
    words = ["▁formula", "formula", "▁action", "action", "▁cards", '":', '▁"', "▁'", "':", "▁the"]
    pieces += [(w, -3.0) for w in words]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(["</s>"])
    return tok


def _wordpiece() -> Tokenizer:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("{}[]()\"',:.*+-=/?_")
    words = ["cards", "number", "formula", "action", "current", "observation", "instruction"]
    words += ["turn", "left", "bank", "on", "my", "let", "me", "think", "about", "the", "first"]
    vocab = ["[PAD]", "[UNK]", "[SEP]"] + chars + [f"##{c}" for c in chars[:36]] + words
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(["[SEP]", "[PAD]"])
    return tok


@pytest.fixture(scope="module")
def tokenizers_by_style():
    return {
        "byte_bpe": PreTrainedTokenizerFast(tokenizer_object=_byte_level_bpe(), eos_token="<eos>"),
        "sentencepiece": PreTrainedTokenizerFast(tokenizer_object=_sentencepiece_unigram(), eos_token="</s>"),
        "wordpiece": PreTrainedTokenizerFast(
            tokenizer_object=_wordpiece(), eos_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]"
        ),
    }


STYLES = ["byte_bpe", "sentencepiece", "wordpiece"]


def _encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_doctests():
    result = doctest.testmod(spans)
    assert result.attempted >= 4 and result.failed == 0


# --------------------------------------------------------------------------
# Finding the answer in text
# --------------------------------------------------------------------------


def test_answer_start_char_quotes_and_key_forms():
    assert answer_start_char(GP_ANSWER) == GP_ANSWER.index('"formula"')
    assert answer_start_char(VIRL_ANSWER, ("action",)) == VIRL_ANSWER.index("'action'")
    # Case, spaces inside quotes, "=" instead of ":", bare keys.
    assert answer_start_char('{"cards": [], " Formula " : "1"}') == 14
    assert answer_start_char("{'cards': [] , 'FORMULA'= '1'}") == 15
    assert answer_start_char("{cards: [1], formula: 1+2}") == 13
    # Multi-word keys: any of space, underscore or hyphen between the words.
    text = '{"Current_Observation": "x", "current-instruction": "y"}'
    assert answer_start_char(text, ("current instruction",)) == text.index('"current-instruction"')


def test_answer_start_char_ignores_mentions_and_takes_the_last_key():
    prose = 'I must write the "formula" key last, and formula: is not a key in prose.'
    assert answer_start_char(prose) is None
    assert answer_start_char("mismatched quotes 'formula\": 1") is None
    draft_then_final = '{"formula": "8*3"} wait, no: {"cards": [], "formula": "3*8"}'
    assert answer_start_char(draft_then_final) == draft_then_final.rindex('"formula"')
    # Several keys: the earliest of their last occurrences.
    both = '{"number": [1], "formula": "1"}'
    assert answer_start_char(both, ("formula", "number")) == 1
    assert answer_start_char(both, "formula") == both.index('"formula"')
    assert answer_start_char("") is None
    with pytest.raises(ValueError):
        answer_start_char(both, ("  ",))


def test_answer_keys_for_families():
    assert answer_keys_for("GeneralPoints-L-v0") == ("formula",)
    assert answer_keys_for("gym_generalpoints") == ("formula",)
    assert answer_keys_for("V-IRL-VL") == ("action",)
    with pytest.raises(ValueError, match="known families"):
        answer_keys_for("CartPole-v1")


def test_token_weights_from_offsets_rules():
    offsets = [(0, 4), (4, 6), (6, 9), (9, 9), (9, 12), (12, 12)]
    # Token (4, 6) straddles the answer start 5: answer.
    assert token_weights_from_offsets(offsets, 5) == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    # Empty spans take the side of the position they sit at.
    assert token_weights_from_offsets([(0, 3), (3, 3), (3, 5)], 3) == [0.5, 1.0, 1.0]
    assert token_weights_from_offsets([(0, 3), (3, 3), (3, 5)], 4) == [0.5, 0.5, 1.0]
    assert token_weights_from_offsets(offsets, None) == [0.5] * 6
    assert token_weights_from_offsets(offsets, 0, thought_weight=0.0, answer_weight=2.0) == [2.0] * 6
    assert token_weights_from_offsets(offsets, 12, thought_weight=0.0) == [0.0] * 5 + [1.0]


# --------------------------------------------------------------------------
# Offsets and weights with real tokenizers
# --------------------------------------------------------------------------


def _check_offsets(text, offsets, n):
    assert len(offsets) == n
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    for (s0, e0), (s1, _) in zip(offsets, offsets[1:], strict=False):
        assert s0 <= e0 == s1
    assert "".join(text[s:e] for s, e in offsets) == text


_CASES = [
    (style, answer, keys)
    for style in STYLES
    for answer, keys in [
        (GP_ANSWER, ("formula",)),
        (VIRL_ANSWER, ("action",)),
        (UNICODE_ANSWER, ("formula",)),
    ]
    if not (style == "wordpiece" and answer is UNICODE_ANSWER)  # no such characters in its vocab
]


@pytest.mark.parametrize("style,answer,keys", _CASES)
def test_offsets_cover_the_decoded_text_and_weights_split_at_the_key(tokenizers_by_style, style, answer, keys):
    tok = tokenizers_by_style[style]
    ids = _encode(tok, answer)
    text, offsets = completion_char_offsets(tok, ids)
    assert text == tok.decode(ids, skip_special_tokens=True)
    _check_offsets(text, offsets, len(ids))
    start = answer_start_char(text, keys)
    assert start is not None
    weights = completion_token_weights(tok, ids, keys)
    assert weights == token_weights_from_offsets(offsets, start)
    # The token holding the key's opening quote is the first answer token.
    boundary = next(i for i, (s, e) in enumerate(offsets) if s <= start < e)
    assert weights[:boundary] == [0.5] * boundary
    assert weights[boundary:] == [1.0] * (len(ids) - boundary)
    assert text[offsets[boundary][0] : offsets[boundary][1]].strip().startswith(("\"", "'"))


@pytest.mark.parametrize("style", ["byte_bpe", "sentencepiece"])
def test_weights_match_the_encoders_own_offsets(tokenizers_by_style, style):
    # For these tokenizers the decoded text equals the input, so the offsets
    # the encoder reports are an independent oracle for the weights.
    tok = tokenizers_by_style[style]
    for answer in (GP_ANSWER, UNICODE_ANSWER, VIRL_ANSWER):
        keys = ("action",) if answer is VIRL_ANSWER else ("formula",)
        enc = tok(answer, add_special_tokens=False, return_offsets_mapping=True)
        expected = token_weights_from_offsets(enc["offset_mapping"], answer_start_char(answer, keys))
        assert completion_token_weights(tok, enc["input_ids"], keys) == expected


def test_boundary_token_straddling_the_key_counts_as_answer(tokenizers_by_style):
    tok = tokenizers_by_style["byte_bpe"]
    ids = _encode(tok, GP_ANSWER)
    text, offsets = completion_char_offsets(tok, ids)
    start = answer_start_char(text)
    straddling = [i for i, (s, e) in enumerate(offsets) if s < start < e]
    assert straddling, "expected the trained BPE to merge the space before the key's quote"
    (i,) = straddling
    assert text[offsets[i][0] : offsets[i][1]] == ' "'
    assert completion_token_weights(tok, ids)[i] == 1.0


@pytest.mark.parametrize("style", ["byte_bpe", "sentencepiece"])
def test_multibyte_characters_split_across_tokens(tokenizers_by_style, style):
    tok = tokenizers_by_style[style]
    ids = _encode(tok, UNICODE_ANSWER)
    text, offsets = completion_char_offsets(tok, ids)
    pieces = [text[s:e] for s, e in offsets]
    # Each multi-byte character was split into byte tokens: the leading ones
    # get empty spans and the one completing the character gets it whole.
    for char in ("€", "é", "😀", "…"):
        assert char in pieces
        completing = pieces.index(char)
        assert pieces[completing - 1] == ""
    answer_euro = [i for i, p in enumerate(pieces) if p == "€"][-1]
    weights = completion_token_weights(tok, ids)
    assert weights[answer_euro] == 1.0 and weights[answer_euro - 1] == 1.0
    assert weights[pieces.index("é")] == 0.5 and weights[pieces.index("é") - 1] == 0.5


def test_sentencepiece_leading_space_and_wordpiece_spacing(tokenizers_by_style):
    sp = tokenizers_by_style["sentencepiece"]
    ids = _encode(sp, "Think. " + GP_ANSWER)
    text, offsets = completion_char_offsets(sp, ids)
    assert text.startswith("Think.") and offsets[0] == (0, 0)  # the stripped "▁"
    wp = tokenizers_by_style["wordpiece"]
    ids = _encode(wp, GP_ANSWER)
    text = wp.decode(ids)
    assert text != GP_ANSWER  # WordPiece re-spaces; the weights follow its own text
    start = answer_start_char(text)
    assert text[start:].startswith('" formula "')
    weights = completion_token_weights(wp, ids)
    first_answer = weights.index(1.0)
    assert wp.convert_ids_to_tokens(ids[first_answer]) == '"'
    assert wp.convert_ids_to_tokens(ids[first_answer + 1]) == "formula"


@pytest.mark.parametrize("style", STYLES)
def test_key_absent_is_all_thought_and_eos_follows_its_part(tokenizers_by_style, style):
    tok = tokenizers_by_style[style]
    ids = _encode(tok, "let me think about the cards first")
    assert completion_token_weights(tok, ids) == [0.5] * len(ids)
    assert completion_token_weights(tok, ids + [tok.eos_token_id]) == [0.5] * (len(ids) + 1)
    ids = _encode(tok, GP_ANSWER) + [tok.eos_token_id]
    assert completion_token_weights(tok, ids)[-1] == 1.0
    # Decoding with special tokens kept also works (the EOS is then text).
    weights = completion_token_weights(tok, ids, skip_special_tokens=False)
    assert weights[-1] == 1.0 and weights[0] == 0.5
    assert completion_token_weights(tok, []) == []
    assert completion_char_offsets(tok, []) == ("", [])


@pytest.mark.parametrize("style", STYLES)
def test_binary_search_agrees_with_full_offsets_on_random_ids(tokenizers_by_style, style):
    # Random ids include lone byte tokens (invalid UTF-8), special tokens and
    # odd spacing: the fast path must still agree with the exhaustive offsets.
    tok = tokenizers_by_style[style]
    rng = random.Random(7)
    key_ids = _encode(tok, ' "formula": "')
    vocab = len(tok)
    for _ in range(25):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        if rng.random() < 0.8:
            cut = rng.randint(0, len(ids))
            ids = ids[:cut] + key_ids + ids[cut:]
        text, offsets = completion_char_offsets(tok, ids)
        _check_offsets(text, offsets, len(ids))
        expected = token_weights_from_offsets(offsets, answer_start_char(text))
        assert completion_token_weights(tok, ids) == expected


class _CountingTokenizer:
    """Counts the sequences decoded through it."""

    def __init__(self, inner):
        self.inner = inner
        self.decoded = 0

    def batch_decode(self, sequences, **kwargs):
        self.decoded += len(sequences)
        return self.inner.batch_decode(sequences, **kwargs)


def test_weights_need_only_logarithmically_many_decodes(tokenizers_by_style):
    tok = tokenizers_by_style["byte_bpe"]
    ids = (_encode(tok, "let me think about the cards first. ") * 40)[:480] + _encode(tok, GP_ANSWER)
    counting = _CountingTokenizer(tok)
    weights = completion_token_weights(counting, ids)
    assert counting.decoded <= 2 + math.ceil(math.log2(len(ids) + 1))
    _, offsets = completion_char_offsets(tok, ids)
    assert weights == token_weights_from_offsets(offsets, answer_start_char(tok.decode(ids)))
    counting.decoded = 0
    completion_token_weights(counting, ids[:400])  # no key: one decode
    assert counting.decoded == 1


def test_bare_tokenizers_object_is_accepted(tokenizers_by_style):
    raw = _byte_level_bpe()
    ids = raw.encode(GP_ANSWER).ids
    assert completion_token_weights(raw, ids) == completion_token_weights(
        tokenizers_by_style["byte_bpe"], ids
    )
    with pytest.raises(TypeError):
        completion_token_weights(object(), [1, 2])


@pytest.mark.parametrize("style", STYLES)
def test_batch_weights_for_padded_completions(tokenizers_by_style, style):
    tok = tokenizers_by_style[style]
    rows = [
        _encode(tok, GP_ANSWER) + [tok.eos_token_id],
        _encode(tok, "let me think"),
        _encode(tok, '{"formula": "1+2"}'),
    ]
    width = max(map(len, rows)) + 2
    pad = 0
    right = torch.full((3, width), pad)
    right_mask = torch.zeros(3, width, dtype=torch.long)
    left = torch.full((3, width), pad)
    left_mask = torch.zeros(3, width, dtype=torch.bool)
    for r, ids in enumerate(rows):
        right[r, : len(ids)] = torch.tensor(ids)
        right_mask[r, : len(ids)] = 1
        left[r, width - len(ids) :] = torch.tensor(ids)
        left_mask[r, width - len(ids) :] = True
    got_right = batch_completion_token_weights(tok, right, right_mask)
    got_left = batch_completion_token_weights(tok, left, left_mask)
    assert got_right.dtype == torch.float32 and got_right.shape == (3, width)
    for r, ids in enumerate(rows):
        expected = completion_token_weights(tok, ids)
        assert got_right[r, : len(ids)].tolist() == expected
        assert got_left[r, width - len(ids) :].tolist() == expected
    assert (got_right[right_mask == 0] == 0).all() and (got_left[~left_mask] == 0).all()
    assert got_right[2, len(rows[2]) - 1].item() == 1.0 and got_right[1, 0].item() == 0.5
    with pytest.raises(ValueError):
        batch_completion_token_weights(tok, right, right_mask[:, :-1])
