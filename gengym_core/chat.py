"""Chat messages in the format Hugging Face processors and TRL expect.

A gengym conversation is a list of plain dicts::

    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},
     {"role": "assistant", "content": [{"type": "text", "text": "..."}]},
     ...]

This is the "content parts" form that ``processor.apply_chat_template`` of
every vision-language model in transformers accepts, and the form TRL's
vision-language SFT expects beside an ``images`` column. Image parts are
placeholders: the images themselves travel separately, in order, so that
messages stay small, picklable and JSON-serialisable. Text-only models want
``content`` as a plain string; :func:`to_text_only` converts.
"""

from __future__ import annotations

import copy
from typing import Any

Message = dict[str, Any]


def text_part(text: str) -> dict[str, str]:
    """A text content part."""
    return {"type": "text", "text": text}


def image_part() -> dict[str, str]:
    """An image placeholder content part."""
    return {"type": "image"}


def user_message(text: str, *, num_images: int = 0) -> Message:
    """A user turn: ``num_images`` image placeholders, then the text."""
    return {"role": "user", "content": [image_part() for _ in range(num_images)] + [text_part(text)]}


def assistant_message(text: str) -> Message:
    """An assistant turn holding ``text``."""
    return {"role": "assistant", "content": [text_part(text)]}


def message_text(message: Message) -> str:
    """The text of a message, with its text parts joined."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def count_images(messages: list[Message]) -> int:
    """Number of image placeholders in a conversation."""
    return sum(
        1
        for m in messages
        if not isinstance(m["content"], str)
        for part in m["content"]
        if part.get("type") == "image"
    )


def to_text_only(messages: list[Message]) -> list[Message]:
    """Messages with ``content`` as plain strings, for text-only chat templates.

    Raises:
        ValueError: A message holds an image placeholder (a text model cannot
            see it; use the env's text mode instead).
    """
    if count_images(messages):
        raise ValueError("the conversation holds images; a text-only model cannot take it")
    return [{"role": m["role"], "content": message_text(m)} for m in messages]


def copy_messages(messages: list[Message]) -> list[Message]:
    """A deep copy, so callers can never change an env's own transcript."""
    return copy.deepcopy(messages)
