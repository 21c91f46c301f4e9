"""Which generated tokens are "thought" and which are "answer", for any tokenizer.

The paper's action log-probability weighs the tokens a model writes before the
answer key by 0.5 and the rest by 1.0:
``log pi(a) = 0.5 * sum(thought) + 1.0 * sum(answer)``. The reference code
found the boundary by matching the key's token ids for one tokenizer, which
breaks for every other model (REFERENCE defect 9). Here the boundary is found
in *text* and mapped back to tokens through character offsets, so it works
for any tokenizer:

1. decode the completion ids to the text the env judged;
2. :func:`answer_start_char` finds where the answer begins in that text: the
   answer key of the task (GeneralPoints: ``formula``; V-IRL: ``action``)
   written as a key, i.e. quoted with ``"`` or ``'`` (or bare after ``{`` or
   ``,``) and followed by ``:``;
3. :func:`completion_char_offsets` gives each generated token its span of
   characters in that text, by decoding prefixes (exact for byte-level BPE,
   SentencePiece and WordPiece alike);
4. :func:`token_weights_from_offsets` gives every token whose span reaches
   into the answer the answer weight.

:func:`completion_token_weights` (one completion) and
:func:`batch_completion_token_weights` (a padded batch, as a tensor for
:func:`trainers.ppo.core.policy_loss`) do steps 1-4 with a binary search over
prefixes instead of all the offsets: the same weights from ``O(log n)``
decodes.

When the key is absent (no answer was given, or it was cut off by the token
limit), every token counts as *thought*: tokens get the full weight only when
they are demonstrably part of an answer, so malformed outputs are not weighted
above the reasoning of well-formed ones, and the per-token scale stays the
same across outputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gengym_core.answers import normalize_key

__all__ = [
    "ANSWER_KEYS",
    "ANSWER_WEIGHT",
    "THOUGHT_WEIGHT",
    "answer_keys_for",
    "answer_start_char",
    "batch_completion_token_weights",
    "completion_char_offsets",
    "completion_token_weights",
    "token_weights_from_offsets",
]

#: Log-prob weight of tokens before the answer key (paper: 0.5).
THOUGHT_WEIGHT = 0.5
#: Log-prob weight of tokens from the answer key on (paper: 1.0).
ANSWER_WEIGHT = 1.0

#: Default answer keys per env family, as in the reference: GeneralPoints
#: answers ``{"cards", "number", "formula"}`` -- recognising the cards and their
#: values is the thought, the formula the answer; V-IRL answers
#: ``{"current observation", "current instruction", "action"}`` -- reading the
#: scene and the instructions is the thought, the action the answer.
ANSWER_KEYS: dict[str, tuple[str, ...]] = {
    "generalpoints": ("formula",),
    "virl": ("action",),
}


def answer_keys_for(name: str) -> tuple[str, ...]:
    """The default answer keys for an env family, env id or env package name.

    Matching ignores case and punctuation, so ``"GeneralPoints-L-v0"``,
    ``"gym_generalpoints"`` and ``"V-IRL"`` all work.

    Raises:
        ValueError: The name matches no known family.

    Example:
        >>> answer_keys_for("gym_virl"), answer_keys_for("GeneralPoints-VL-v0")
        (('action',), ('formula',))
    """
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    for family, keys in ANSWER_KEYS.items():
        if family in flat:
            return keys
    raise ValueError(
        f"no default answer key for {name!r}; known families: {', '.join(ANSWER_KEYS)} "
        "(pass the key explicitly)"
    )


def _key_patterns(key: str) -> list[re.Pattern[str]]:
    """Regexes for ``key`` written as a JSON key: quoted, or bare after { or ,.

    Words of the key may be joined by spaces, ``_`` or ``-`` and compared
    without case, like :func:`gengym_core.answers.normalize_key` does. Group
    ``start`` marks where the key (with its opening quote) begins.
    """
    words = normalize_key(key).split()
    if not words:
        raise ValueError(f"empty answer key {key!r}")
    body = r"[\s_-]+".join(re.escape(w) for w in words)
    quoted = re.compile(rf"(?P<start>(?P<q>[\"'])[ \t]*{body}[ \t]*(?P=q))\s*[:=]", re.IGNORECASE)
    bare = re.compile(rf"[{{,]\s*(?P<start>{body})\s*[:=]", re.IGNORECASE)
    return [quoted, bare]


def answer_start_char(text: str, keys: Sequence[str] = ANSWER_KEYS["generalpoints"]) -> int | None:
    """Character index in ``text`` where the answer part starts, or ``None``.

    The answer starts at the answer key written as a key: ``"formula":``,
    ``'formula':``, ``{formula:`` (any case, ``_``/``-``/space between words,
    ``:`` or ``=``). A mention in prose (``the "formula" must...``) is not a
    key. The position returned is that of the key's opening quote (or first
    letter when bare).

    If a key occurs several times, its *last* occurrence is used: models think
    first and answer last, and :func:`gengym_core.answers.parse_json_answer`
    likewise judges the last object that holds the task's keys. With several
    keys, the answer starts at the earliest of their last occurrences.

    Args:
        text: The decoded completion.
        keys: Answer keys (see :data:`ANSWER_KEYS` and :func:`answer_keys_for`).

    Returns:
        The index, or ``None`` when no key is present (then every token is
        thought; see the module docs).

    Example:
        >>> answer_start_char('{"cards": ["A"], "formula": "1*24"}')
        17
        >>> answer_start_char("no answer key here") is None
        True
    """
    if isinstance(keys, str):
        keys = (keys,)
    found: list[int] = []
    for key in keys:
        last = None
        for pattern in _key_patterns(key):
            for match in pattern.finditer(text):
                start = match.start("start")
                last = start if last is None else max(last, start)
        if last is not None:
            found.append(last)
    return min(found) if found else None


def token_weights_from_offsets(
    offsets: Sequence[tuple[int, int]],
    answer_start: int | None,
    thought_weight: float = THOUGHT_WEIGHT,
    answer_weight: float = ANSWER_WEIGHT,
) -> list[float]:
    """Per-token weights from character spans ``(start, end)`` of the tokens.

    A token is an answer token when any of its characters lie at or after
    ``answer_start`` (so a token straddling the boundary, such as ``,"`` before
    ``formula``, counts as answer). A token that covers no characters (a
    special token skipped in decoding, or the leading bytes of a character
    completed by the next token) belongs to the position it sits at: answer
    if ``start >= answer_start``.

    Args:
        offsets: One ``(start, end)`` character span per token, ``start <= end``.
        answer_start: From :func:`answer_start_char`; ``None``: all thought.
        thought_weight: Weight of thought tokens.
        answer_weight: Weight of answer tokens.

    Returns:
        One weight per token.

    Example:
        >>> token_weights_from_offsets([(0, 3), (3, 6), (6, 9), (9, 9)], answer_start=5)
        [0.5, 1.0, 1.0, 1.0]
    """
    if answer_start is None:
        return [thought_weight] * len(offsets)
    return [
        answer_weight if end > answer_start or start >= answer_start else thought_weight
        for start, end in offsets
    ]


def _common_prefix_length(text: str, full: str) -> int:
    """Length of the longest common prefix of ``text`` and ``full``."""
    if full.startswith(text):
        return len(text)
    low, high = 0, min(len(text), len(full))  # invariant: prefix of length low is shared
    while low < high:
        mid = (low + high + 1) // 2
        if full.startswith(text[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


def _batch_decode(tokenizer: Any, sequences: list[list[int]], **decode_kwargs: Any) -> list[str]:
    if hasattr(tokenizer, "batch_decode"):  # transformers tokenizers and processors
        return list(tokenizer.batch_decode(sequences, **decode_kwargs))
    if hasattr(tokenizer, "decode_batch"):  # a bare tokenizers.Tokenizer
        return list(tokenizer.decode_batch(sequences, **decode_kwargs))
    raise TypeError(f"{type(tokenizer).__name__} has neither batch_decode nor decode_batch")


def completion_char_offsets(
    tokenizer: Any,
    completion_ids: Sequence[int],
    skip_special_tokens: bool = True,
    **decode_kwargs: Any,
) -> tuple[str, list[tuple[int, int]]]:
    """Decode a completion and give each token its character span in the text.

    Re-tokenising the decoded text need not give back the generated ids, and
    decoding tokens one by one is wrong for byte-level BPE (a character's
    UTF-8 bytes may be split across tokens) and for SentencePiece (a token's
    leading space is dropped at the start of a string). Instead, every prefix
    ``ids[:k]`` is decoded and compared with the full text: token ``k`` ends
    where the longest common prefix of ``decode(ids[:k + 1])`` and the full
    text ends. This is exact for any tokenizer whose decoding of a prefix is a
    prefix of the full decoding, except for a partial character at its end --
    which is just what byte-level BPE, SentencePiece with byte fallback and
    WordPiece do: a token that holds the first bytes of a multi-byte character
    gets an empty span, and the token that completes it gets the character.
    Ends are kept monotone so spans never overlap.

    Complexity: ``n`` decodes of total length ``O(n^2)`` tokens, issued as one
    ``batch_decode`` call, plus ``O(n)`` string comparisons in C (a binary
    search only where a prefix ends inside a character). For ``n = 512`` with a
    fast (Rust) tokenizer this takes milliseconds.

    Args:
        tokenizer: A ``transformers`` tokenizer or processor (anything with
            ``batch_decode``), or a ``tokenizers.Tokenizer``.
        completion_ids: The generated ids, without padding.
        skip_special_tokens: Passed to decoding; use the same setting as for
            the text given to the env.
        **decode_kwargs: Further decoding options, likewise.

    Returns:
        ``(text, offsets)``: the decoded completion and one ``(start, end)``
        span per id.
    """
    ids = [int(i) for i in completion_ids]
    if not ids:
        return "", []
    decode_kwargs["skip_special_tokens"] = skip_special_tokens
    prefixes = _batch_decode(tokenizer, [ids[: k + 1] for k in range(len(ids))], **decode_kwargs)
    full = prefixes[-1]
    offsets: list[tuple[int, int]] = []
    previous = 0
    for prefix in prefixes:
        end = max(previous, _common_prefix_length(prefix, full))
        offsets.append((previous, end))
        previous = end
    return full, offsets


def completion_token_weights(
    tokenizer: Any,
    completion_ids: Sequence[int],
    keys: Sequence[str] = ANSWER_KEYS["generalpoints"],
    thought_weight: float = THOUGHT_WEIGHT,
    answer_weight: float = ANSWER_WEIGHT,
    skip_special_tokens: bool = True,
    **decode_kwargs: Any,
) -> list[float]:
    """Per-token log-prob weights of one generated completion.

    Gives the same weights as :func:`token_weights_from_offsets` over
    :func:`completion_char_offsets`, but decodes only what it needs: the full
    text once, and -- only if an answer key is present -- ``O(log n)``
    prefixes in a binary search for the first answer token (about ten decodes
    for 512 tokens, well under a millisecond with a fast tokenizer, instead of
    512). The search relies on the same property as the offsets, that the
    decoded prefixes' common prefix with the full text never shrinks as the
    prefix grows.

    Args:
        tokenizer: See :func:`completion_char_offsets`.
        completion_ids: The generated ids, without padding (a trailing EOS is
            fine: it gets the weight of the part it ends).
        keys: Answer keys of the task.
        thought_weight: Weight of tokens before the answer key.
        answer_weight: Weight of tokens from the answer key on.
        skip_special_tokens: See :func:`completion_char_offsets`.
        **decode_kwargs: See :func:`completion_char_offsets`.

    Returns:
        One weight per id.
    """
    ids = [int(i) for i in completion_ids]
    if not ids:
        return []
    decode_kwargs["skip_special_tokens"] = skip_special_tokens
    (text,) = _batch_decode(tokenizer, [ids], **decode_kwargs)
    answer_start = answer_start_char(text, keys)
    if answer_start is None:
        return [thought_weight] * len(ids)

    ends: dict[int, int] = {0: 0, len(ids): len(text)}

    def end_of_prefix(m: int) -> int:
        """Characters of the text fully produced by the first ``m`` ids."""
        if m not in ends:
            (prefix,) = _batch_decode(tokenizer, [ids[:m]], **decode_kwargs)
            ends[m] = _common_prefix_length(prefix, text)
        return ends[m]

    # Smallest m with end_of_prefix(m) >= answer_start (it exists: the whole
    # text reaches past the key). Token m - 1 then either reaches into the
    # answer (it is the boundary token) or ends exactly at its start, in which
    # case token m is the first answer token.
    low, high = 0, len(ids)
    while low < high:
        mid = (low + high) // 2
        if end_of_prefix(mid) >= answer_start:
            high = mid
        else:
            low = mid + 1
    first_answer = low - 1 if end_of_prefix(low) > answer_start else low
    return [thought_weight] * first_answer + [answer_weight] * (len(ids) - first_answer)


def batch_completion_token_weights(
    tokenizer: Any,
    completion_ids: Any,
    completion_mask: Any,
    keys: Sequence[str] = ANSWER_KEYS["generalpoints"],
    thought_weight: float = THOUGHT_WEIGHT,
    answer_weight: float = ANSWER_WEIGHT,
    skip_special_tokens: bool = True,
    **decode_kwargs: Any,
):
    """Weights tensor for a padded batch of completions, ready for ``policy_loss``.

    Args:
        tokenizer: See :func:`completion_char_offsets`.
        completion_ids: ``[B, L]`` int tensor of generated ids.
        completion_mask: ``[B, L]``, non-zero on generated tokens (including the
            EOS that ended the answer), zero on padding. The kept positions of a
            row are read in order, so any padding side works.
        keys, thought_weight, answer_weight, skip_special_tokens, decode_kwargs:
            See :func:`completion_token_weights`.

    Returns:
        ``[B, L]`` float32 tensor on the ids' device: the weights on generated
        tokens, ``0`` on padding.
    """
    import torch

    ids = torch.as_tensor(completion_ids)
    mask = torch.as_tensor(completion_mask).to(ids.device) != 0
    if ids.dim() != 2 or ids.shape != mask.shape:
        raise ValueError(
            f"completion_ids {tuple(ids.shape)} and completion_mask {tuple(mask.shape)} must be "
            "equal [batch, seq_len] shapes"
        )
    weights = torch.zeros(ids.shape, dtype=torch.float32)
    ids_cpu, mask_cpu = ids.cpu(), mask.cpu()
    for row in range(ids.shape[0]):
        kept = mask_cpu[row].nonzero().squeeze(-1)
        row_weights = completion_token_weights(
            tokenizer,
            ids_cpu[row, kept].tolist(),
            keys,
            thought_weight,
            answer_weight,
            skip_special_tokens,
            **decode_kwargs,
        )
        weights[row, kept] = torch.tensor(row_weights, dtype=torch.float32)
    return weights.to(ids.device)
