"""gengym conversations to model tensors, for every trainer and every model.

gengym envs hand out a conversation (chat messages whose image parts are
placeholders, see :mod:`gengym_core.chat`) and the images those placeholders
stand for. Every trainer needs the same three conversions, and each must work
for any Hugging Face VLM or text LM without knowing its family:

:func:`encode_prompts`
    A batch of conversations -> left-padded model inputs for generation,
    built by the model's own chat template and processor (which expands each
    image placeholder into the family's image tokens and makes the pixel
    tensors).
:func:`append_completions`
    Prompt inputs + generated token ids -> the inputs of one teacher-forced
    forward pass that scores the generated answers (log-probs, values), and
    a mask of the real generated tokens.
:func:`encode_for_sft`
    Whole conversations -> ``input_ids``, ``attention_mask`` and ``labels``
    that are ``-100`` everywhere but on the assistant's tokens.

Two rules hold throughout:

* Image tokens are never truncated: cutting into an image's token run
  breaks the model (the count no longer matches the pixels). A sequence
  longer than ``max_length`` raises a ``ValueError`` that says how long it
  is, instead of being cut.
* Text inside messages is data. Model answers are echoed back in later turns
  and may contain the text of a control token (``<image>``,
  ``<|im_end|>``...), which the tokenizer would turn into the real token and
  the processor would try to expand as an image. Such text is defused first:
  a space goes after its first character (``<image>`` becomes
  ``< image>``), so it is encoded as ordinary text.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gengym_core.chat import Message, count_images, to_text_only
from trainers.common.config import ConfigError
from trainers.common.modeling import get_tokenizer, is_vision_processor

#: Label value that the loss ignores (the ``ignore_index`` of PyTorch's
#: cross-entropy and of every Hugging Face model's loss).
IGNORE_INDEX = -100

ImageLike = Any  # numpy uint8 array of shape (H, W, 3), or a PIL image


# -- shared preparation ------------------------------------------------------


def _check_batch(
    conversations: Sequence[Sequence[Message]], images: Sequence[Sequence[ImageLike]] | None
) -> None:
    if (
        isinstance(conversations, (str, bytes))
        or not isinstance(conversations, Sequence)
        or not conversations
    ):
        raise ValueError(
            "conversations must be a non-empty list of conversations (lists of messages)"
        )
    for i, conversation in enumerate(conversations):
        if not isinstance(conversation, Sequence) or not conversation:
            raise ValueError(f"conversation {i} must be a non-empty list of messages")
        for message in conversation:
            if (
                not isinstance(message, Mapping)
                or "role" not in message
                or "content" not in message
            ):
                raise ValueError(
                    f"conversation {i}: every message needs 'role' and 'content', got {message!r}"
                )
            content = message["content"]
            if not isinstance(content, str) and not (
                isinstance(content, Sequence)
                and all(isinstance(part, Mapping) and "type" in part for part in content)
            ):
                raise ValueError(
                    f"conversation {i}: content must be a string or a list of typed parts, got {content!r}"
                )
    if images is None:
        if any(count_images(list(conversation)) for conversation in conversations):
            raise ValueError("the conversations hold image placeholders but no images were given")
        return
    if len(images) != len(conversations):
        raise ValueError(
            f"got {len(images)} image lists for {len(conversations)} conversations; give one list each"
        )
    for i, (conversation, conversation_images) in enumerate(
        zip(conversations, images, strict=True)
    ):
        if count_images(list(conversation)) != len(conversation_images):
            raise ValueError(
                f"conversation {i} has {count_images(list(conversation))} image placeholders "
                f"but {len(conversation_images)} images"
            )


def _to_pil(image: ImageLike) -> Any:
    """An RGB PIL image; arrays must be ``uint8`` of shape ``(H, W, 3)``.

    Converting here, rather than handing arrays to the processor, removes any
    guessing about channel order (a processor has to guess whether a small
    array is channels-first).
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"images must be PIL images or uint8 arrays of shape (H, W, 3); got {array.dtype} {array.shape}"
        )
    return Image.fromarray(array)


def control_token_texts(tokenizer: Any) -> list[str]:
    """The texts the tokenizer turns into special (control) tokens, longest first."""
    texts = set(tokenizer.all_special_tokens)
    texts.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
    return sorted((t for t in texts if len(t) >= 2), key=lambda t: (-len(t), t))


def defuse_control_tokens(text: str, control_texts: Sequence[str]) -> str:
    """``text`` with every control-token text broken by a space after its first character.

    Example:
        >>> defuse_control_tokens("see <image> and <|im_end|>", ["<|im_end|>", "<image>"])
        'see < image> and < |im_end|>'
    """
    for control in control_texts:
        if control in text:
            text = text.replace(control, control[0] + " " + control[1:])
    return text


def _prepare_messages(
    conversation: Sequence[Message],
    conversation_images: Sequence[ImageLike] | None,
    control_texts: Sequence[str],
) -> list[Message]:
    """A copy of the conversation with text defused and images attached to their parts."""
    pictures = iter([_to_pil(image) for image in conversation_images or []])
    messages = []
    for message in conversation:
        message = copy.copy(dict(message))
        content = message["content"]
        if isinstance(content, str):
            message["content"] = defuse_control_tokens(content, control_texts)
        else:
            parts = []
            for part in content:
                part = dict(part)
                if part.get("type") == "text":
                    part["text"] = defuse_control_tokens(part.get("text", ""), control_texts)
                elif part.get("type") == "image":
                    part["image"] = next(pictures)
                parts.append(part)
            message["content"] = parts
        messages.append(message)
    return messages


def _apply_template(
    processor: Any,
    conversations: Sequence[Sequence[Message]],
    images: Sequence[Sequence[ImageLike]] | None,
    *,
    add_generation_prompt: bool,
    padding_side: str,
    assistant_masks: bool = False,
    offsets: bool = False,
) -> tuple[Any, list[list[Message]]]:
    """Render and encode a batch with the model's own template and processor.

    Returns the processor's ``BatchFeature`` (torch tensors, padded on
    ``padding_side``) and the prepared conversations it was made from.
    """
    _check_batch(conversations, images)
    tokenizer = get_tokenizer(processor)
    control_texts = control_token_texts(tokenizer)
    vision = is_vision_processor(processor)
    if images is not None and not vision and any(len(batch) for batch in images):
        raise ValueError(
            "this is a text-only model; it cannot take images (use the env's text mode)"
        )
    prepared = [
        _prepare_messages(conversation, None if images is None else images[i], control_texts)
        for i, conversation in enumerate(conversations)
    ]
    if not vision:
        prepared = [to_text_only(conversation) for conversation in prepared]
    encode_kwargs: dict[str, Any] = {"padding": True, "padding_side": padding_side}
    if offsets:
        encode_kwargs["return_offsets_mapping"] = True
        if vision:
            encode_kwargs["return_text_replacement_offsets"] = True
    common = dict(
        tokenize=True,
        return_dict=True,
        add_generation_prompt=add_generation_prompt,
        return_assistant_tokens_mask=assistant_masks,
        return_tensors="pt",
    )
    if vision:
        batch = processor.apply_chat_template(prepared, processor_kwargs=encode_kwargs, **common)
    else:
        padding = encode_kwargs.pop("padding")
        batch = tokenizer.apply_chat_template(
            prepared, padding=padding, tokenizer_kwargs=encode_kwargs, **common
        )
    return batch, prepared


def _image_token_id(processor: Any) -> int | None:
    token_id = getattr(processor, "image_token_id", None)
    return token_id if isinstance(token_id, int) else None


def _check_length(batch: Any, processor: Any, max_length: int | None, setting: str = "max_length") -> None:
    """Raise :class:`~trainers.common.config.ConfigError` (a ``ValueError``) instead of
    truncating when a row is longer than ``max_length``; the message names the
    run's ``setting`` that holds the limit."""
    if max_length is None:
        return
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    image_token_id = _image_token_id(processor)
    for row, length in enumerate(lengths):
        if length > max_length:
            image_tokens = ""
            if image_token_id is not None:
                count = int((batch["input_ids"][row] == image_token_id).sum())
                image_tokens = f" ({count} of them image tokens)"
            raise ConfigError(
                f"conversation {row} is {length} tokens long{image_tokens}, more than {setting}={max_length}: "
                f"raise {setting}, shorten the prompt (fewer revision turns), or use smaller images. "
                "Sequences are never truncated, since cutting image tokens breaks the model."
            )


# -- prompts -----------------------------------------------------------------


def encode_prompts(
    processor: Any,
    conversations: Sequence[Sequence[Message]],
    images: Sequence[Sequence[ImageLike]] | None = None,
    *,
    add_generation_prompt: bool = True,
    max_length: int | None = None,
    length_setting: str = "max_length",
) -> Any:
    """Encode a batch of conversations for generation, padded on the left.

    Args:
        processor: The model's processor (VLM) or tokenizer (text LM).
        conversations: One gengym conversation per row (see
            :mod:`gengym_core.chat`), each normally ending with a user turn.
        images: One list of images per conversation, in placeholder order
            (numpy ``uint8`` ``(H, W, 3)`` arrays or PIL images); ``None``
            when no conversation has images.
        add_generation_prompt: Append the template's assistant-turn header,
            so the model answers next.
        max_length: Longest allowed row in tokens; ``None`` for no limit.
        length_setting: The name of the setting ``max_length`` comes from, for
            the error a longer row raises.

    Returns:
        A ``BatchFeature`` of torch tensors: ``input_ids``,
        ``attention_mask`` and whatever else the processor makes (pixel
        values, Mllama's ``cross_attention_mask``, Qwen2-VL's
        ``image_grid_thw`` and ``mm_token_type_ids``...), ready for
        ``model.generate(**inputs)``.

    Raises:
        ValueError: Malformed batch, image count mismatch, images for a text
            model, or a row longer than ``max_length``.
    """
    batch, _ = _apply_template(
        processor,
        conversations,
        images,
        add_generation_prompt=add_generation_prompt,
        padding_side="left",
    )
    _check_length(batch, processor, max_length, length_setting)
    return batch


def cast_floating_inputs(inputs: Any, dtype: Any) -> Any:
    """Every floating tensor of ``inputs`` (pixel values) in ``dtype``, in place; returns ``inputs``.

    Processors emit float32 pixels; a model loaded in bfloat16 needs them in
    its own dtype. Integer tensors (ids, masks, grids) are left alone.
    """
    import torch

    for key, value in list(inputs.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            inputs[key] = value.to(dtype)
    return inputs


# -- scoring completions -------------------------------------------------------


def completion_mask_from_ids(
    completion_ids: Any, *, pad_token_id: int, eos_token_id: int | Sequence[int] | None = None
) -> Any:
    """1 on the real generated tokens of each row, 0 on the padding after them.

    With ``eos_token_id``, a row's real tokens run up to and including its
    first EOS (``generate`` pads finished rows after their EOS); a row
    without EOS (cut by ``max_new_tokens``) is real throughout. This works
    when the pad id equals an EOS id. Without ``eos_token_id``, the trailing
    run of ``pad_token_id`` is padding; if pad equals EOS that also drops the
    EOS itself, so pass ``eos_token_id`` whenever it is known.
    """
    import torch

    if eos_token_id is not None:
        stop_ids = torch.as_tensor(
            [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        )
        is_stop = torch.isin(completion_ids, stop_ids.to(completion_ids.device))
        # Stops strictly before each position; a position is real until one has passed.
        stops_before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
        return (stops_before == 0).long()
    not_pad = (completion_ids != pad_token_id).long()
    # Real up to the last non-pad token: a reversed cumulative max marks it.
    return torch.flip(torch.cummax(torch.flip(not_pad, dims=[1]), dim=1).values, dims=[1])


def append_completions(
    prompt_inputs: Mapping[str, Any],
    completion_ids: Any,
    *,
    pad_token_id: int,
    eos_token_id: int | Sequence[int] | None = None,
) -> tuple[Any, Any]:
    """Append generated tokens to prompt inputs for one teacher-forced pass.

    The result scores the completions exactly as ``generate`` produced them
    (no detokenise/retokenise round trip). Every per-token input is extended
    over the new positions. Which inputs are per-token is found by shape, not
    by family: a tensor whose first two dimensions are ``(batch,
    prompt_length)``. That holds for ``attention_mask``, Mllama's
    ``cross_attention_mask`` ``(B, L, images, tiles)``, Qwen2-VL's
    ``mm_token_type_ids`` and ``token_type_ids``, and for nothing else the
    processors of transformers 5 return (pixel tensors are indexed by image,
    not by token). The new positions get:

    * ``attention_mask``: the completion mask (padding after EOS is hidden);
    * every other per-token tensor: a copy of the prompt's last position.
      That position is the end of the assistant header, a text token that
      sees every image, and a generated token is a text token that sees every
      image too (this is also what ``generate`` does with Mllama's mask).

    Models that derive positions from the attention mask (Qwen2-VL's
    multimodal RoPE) rebuild them from the extended inputs, as ``generate``
    does.

    Args:
        prompt_inputs: What :func:`encode_prompts` returned (left-padded).
        completion_ids: ``(batch, T)`` tensor of generated ids (e.g.
            ``generate(...)[:, prompt_length:]``), or a list of per-row id
            lists of any lengths (padded here with ``pad_token_id``).
        pad_token_id: Id that fills positions after a row's end.
        eos_token_id: Id or ids that end a completion; see
            :func:`completion_mask_from_ids`. Ignored for ragged lists, whose
            lengths say where each row ends.

    Returns:
        ``(inputs, completion_mask)``: a ``BatchFeature`` for
        ``model(**inputs)`` whose last ``T`` positions are the completions,
        and the ``(batch, T)`` long tensor that is 1 on real generated
        tokens. The logits that score completion token ``t`` sit at position
        ``prompt_length - 1 + t``; :func:`completion_logprobs` gathers them.
    """
    import torch
    from transformers import BatchFeature

    input_ids = prompt_inputs["input_ids"]
    batch_size, prompt_length = input_ids.shape
    if isinstance(completion_ids, torch.Tensor):
        completion_ids = completion_ids.to(input_ids.device, dtype=input_ids.dtype)
        mask = completion_mask_from_ids(
            completion_ids, pad_token_id=pad_token_id, eos_token_id=eos_token_id
        )
    else:
        rows = [list(map(int, row)) for row in completion_ids]
        width = max((len(row) for row in rows), default=0)
        completion_ids = torch.full((len(rows), width), pad_token_id, dtype=input_ids.dtype)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            completion_ids[i, : len(row)] = torch.tensor(row, dtype=input_ids.dtype)
            mask[i, : len(row)] = 1
        completion_ids = completion_ids.to(input_ids.device)
    if completion_ids.ndim != 2 or completion_ids.shape[0] != batch_size:
        raise ValueError(
            f"completion_ids must have one row per prompt ({batch_size}); got shape {tuple(completion_ids.shape)}"
        )
    mask = mask.to(input_ids.device)
    num_new = completion_ids.shape[1]

    extended: dict[str, Any] = {}
    for key, value in prompt_inputs.items():
        if key == "input_ids":
            extended[key] = torch.cat([input_ids, completion_ids], dim=1)
        elif key == "attention_mask":
            extended[key] = torch.cat([value, mask.to(value.dtype)], dim=1)
        elif (
            isinstance(value, torch.Tensor)
            and value.ndim >= 2
            and tuple(value.shape[:2]) == (batch_size, prompt_length)
        ):
            last = value[:, -1:].expand(batch_size, num_new, *value.shape[2:])
            extended[key] = torch.cat([value, last], dim=1)
        else:
            extended[key] = value
    return BatchFeature(extended), mask


def completion_logprobs(logits: Any, input_ids: Any, num_completion_tokens: int) -> Any:
    """Log-probabilities of the last ``num_completion_tokens`` tokens of each row.

    Args:
        logits: ``(batch, length, vocab)`` logits of a forward pass over
            ``input_ids`` (e.g. the inputs :func:`append_completions` made).
        input_ids: ``(batch, length)`` ids of that pass.
        num_completion_tokens: ``T``, how many trailing positions to score.

    Returns:
        ``(batch, T)`` float32 tensor: ``log p(token_t | everything before)``.
        Multiply by the completion mask to drop padding.
    """
    import torch

    length = input_ids.shape[1]
    scoring = logits[:, length - num_completion_tokens - 1 : length - 1].float()
    targets = input_ids[:, length - num_completion_tokens :]
    return torch.log_softmax(scoring, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


# -- supervised fine-tuning ----------------------------------------------------


def has_generation_markers(processor: Any) -> bool:
    """Whether the chat template marks assistant turns with ``{% generation %}``."""
    import re

    template = getattr(processor, "chat_template", None) or get_tokenizer(processor).chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None


def encode_for_sft(
    processor: Any,
    conversations: Sequence[Sequence[Message]],
    images: Sequence[Sequence[ImageLike]] | None = None,
    *,
    max_length: int | None = None,
    padding_side: str = "right",
) -> Any:
    """Encode whole conversations with labels on the assistant's tokens only.

    Which tokens are the assistant's comes from the chat template's
    ``{% generation %}`` markers when it has them (they cover each assistant
    turn with its end-of-turn token). Templates of real checkpoints often
    have none (Qwen2-VL, Llama 3.2 Vision); then each assistant message's
    text is found in the rendered conversation and mapped to tokens through
    the tokenizer's offset mapping (shifted past expanded image
    placeholders), and the token right after each answer is labelled too
    when it is the tokenizer's EOS token, so the model learns to stop.

    Args:
        processor: The model's processor (VLM) or tokenizer (text LM).
        conversations: Conversations that include assistant turns.
        images: One list of images per conversation, or ``None``.
        max_length: Longest allowed row; longer rows raise, never truncate.
        padding_side: ``"right"`` (default) keeps each row's positions as if
            it were alone in the batch.

    Returns:
        A ``BatchFeature`` with ``input_ids``, ``attention_mask``,
        ``labels`` (``-100`` off the assistant's tokens) and the processor's
        image tensors.

    Raises:
        ValueError: Malformed batch, a conversation without an assistant
            turn, an assistant text the template rewrites beyond recognition
            (use a template with generation markers), or a row longer than
            ``max_length``.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    _check_batch(conversations, images)
    for i, conversation in enumerate(conversations):
        if not any(m["role"] == "assistant" for m in conversation):
            raise ValueError(f"conversation {i} has no assistant turn to learn from")
    if has_generation_markers(processor):
        batch, _ = _apply_template(
            processor,
            conversations,
            images,
            add_generation_prompt=False,
            padding_side=padding_side,
            assistant_masks=True,
        )
        assistant = batch.pop("assistant_masks")
    else:
        batch, prepared = _apply_template(
            processor,
            conversations,
            images,
            add_generation_prompt=False,
            padding_side=padding_side,
            offsets=True,
        )
        assistant = _assistant_mask_from_offsets(processor, batch, prepared)
    batch.pop("offset_mapping", None)
    batch.pop("text_replacement_offsets", None)
    _check_length(batch, processor, max_length)
    assistant = assistant.to(batch["input_ids"].device).bool() & batch["attention_mask"].bool()
    for row in range(assistant.shape[0]):
        if not assistant[row].any():
            raise ValueError(
                f"conversation {row}: no token of its assistant turns was found to label"
            )
    batch["labels"] = batch["input_ids"].masked_fill(~assistant, IGNORE_INDEX)
    return batch


def _assistant_char_spans(rendered: str, conversation: Sequence[Message]) -> list[tuple[int, int]]:
    """Character spans of the assistant texts in one rendered conversation.

    Messages are located in order, each search starting where the previous
    message's text ended, so an answer quoted in a later user turn (revision
    feedback) is never mistaken for the answer itself.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for message in conversation:
        content = message["content"]
        texts = (
            [content]
            if isinstance(content, str)
            else [p.get("text", "") for p in content if p.get("type") == "text"]
        )
        for text in texts:
            if not text:
                continue
            start = rendered.find(text, cursor)
            if start < 0 and text.strip():
                text = text.strip()  # some templates trim message text
                start = rendered.find(text, cursor)
            if start < 0:
                if message["role"] == "assistant":
                    raise ValueError(
                        f"cannot find the assistant text {text[:60]!r} in the rendered conversation: the chat "
                        "template rewrites it. Give the template {% generation %} markers around assistant turns."
                    )
                continue  # a user/system text the template reformats does not matter here
            if message["role"] == "assistant":
                spans.append((start, start + len(text)))
            cursor = start + len(text)
    return spans


def _assistant_mask_from_offsets(
    processor: Any, batch: Any, prepared: Sequence[Sequence[Message]]
) -> Any:
    import bisect

    import torch

    tokenizer = get_tokenizer(processor)
    render = (
        processor.apply_chat_template
        if is_vision_processor(processor)
        else tokenizer.apply_chat_template
    )
    rendered = render(list(prepared), tokenize=False, add_generation_prompt=False)
    offsets = batch["offset_mapping"].tolist()
    replacements = batch.get("text_replacement_offsets") or [[] for _ in rendered]
    input_ids = batch["input_ids"]
    mask = torch.zeros_like(input_ids)
    eos_id = tokenizer.eos_token_id
    for row, (text, conversation) in enumerate(zip(rendered, prepared, strict=True)):
        # Each expanded image placeholder before a character shifts it right.
        ends = [r["span"][1] for r in replacements[row]]
        gained = [0]
        for r in replacements[row]:
            gained.append(
                gained[-1] + (r["new_span"][1] - r["new_span"][0]) - (r["span"][1] - r["span"][0])
            )
        for start, end in _assistant_char_spans(text, conversation):
            shift = gained[bisect.bisect_right(ends, start)]
            start, end = start + shift, end + shift
            positions = [
                pos
                for pos, (tok_start, tok_end) in enumerate(offsets[row])
                if tok_end > tok_start and tok_start < end and tok_end > start
            ]
            # The tokens found must spell the answer (whitespace aside); if the
            # processor changed the text in ways the offsets do not show,
            # fail loudly rather than train on the wrong tokens.
            found = tokenizer.decode(input_ids[row, positions]) if positions else ""
            if "".join(text[start - shift : end - shift].split()) not in "".join(found.split()):
                raise ValueError(
                    f"conversation {row}: the tokens located for an assistant answer do not spell it "
                    "(the processor rewrote the rendered text); give the chat template "
                    "{% generation %} markers around assistant turns"
                )
            mask[row, positions[0] : positions[-1] + 1] = 1
            after = positions[-1] + 1
            if (
                eos_id is not None
                and after < input_ids.shape[1]
                and int(input_ids[row, after]) == eos_id
            ):
                mask[row, after] = 1
    return mask
