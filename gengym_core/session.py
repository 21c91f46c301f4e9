"""A gengym episode as a chat session: the opening messages, then one delta per answer.

Chat-style RL libraries (verifiers, SkyRL-gym, GEM, TRL's tool loop, any
OpenAI-compatible agent loop) keep the conversation themselves: they want
the opening user turn, and after each model answer only the *new* user
turn(s) to append. :class:`ChatSession` gives exactly that for every gengym
env::

    >>> session = ChatSession("GeneralPoints-L-v0")
    >>> opening = session.reset(seed=0)
    >>> opening[0]["role"], "make 24" in opening[0]["content"]
    ('user', True)
    >>> new, reward, done, info = session.step("no idea")
    >>> reward, done, new[0]["content"].startswith("Attempt 1 of 5 was not accepted")
    (-3.0, False, True)

Messages are OpenAI-style dicts. A turn without images has a plain string
``content``; a turn with images has a list of content parts, the images as
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``.
:func:`to_hf_messages` turns such a conversation into the Hugging Face
chat-template form (``{"type": "image"}`` placeholders plus a list of PIL
images).

How an episode reads as a conversation is each env family's own rule: the
env package exports ``session_conversation(env, start=0, *, images=True)``,
which rebuilds the conversation of the env's current episode (in the
content-parts form of :mod:`gengym_core.chat`) from the env's state. A
family without one gets :func:`protocol_conversation`, the env's own
``chat_messages()``. Because the rule is a pure function of the env's state,
the same conversation serves both a :class:`ChatSession` (which appends the
new turns after each answer) and trainers that only hold the env
(:func:`conversation`: PPO's ``chat`` prompt format). Every rule keeps the
prefix property: the conversation after an answer is the conversation
before it, the answer as an assistant turn, then the new user turns.

Like the rest of ``gengym_core`` this module never imports torch; PIL is
imported only to encode or decode images.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from gengym_core.chat import Message, count_images, image_part, message_text, text_part

#: A family's session rule: ``rule(env, start, images=...) -> (messages, images)``.
ConversationRule = Callable[..., tuple[list[Message], list[np.ndarray]]]

#: Longest data URL :func:`to_hf_messages` decodes (characters; about 48 MB of image).
MAX_DATA_URL_CHARS = 64 * 1024 * 1024

_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg|webp|gif);base64,", re.IGNORECASE)


# ---------------------------------------------------------------- the rules


def protocol_conversation(
    env: Any, start: int = 0, *, images: bool = True
) -> tuple[list[Message], list[np.ndarray]]:
    """The session rule of a family whose ``chat_messages()`` already is the whole episode.

    The conversation is the env's own ``chat_messages()`` (task, then each
    answer and the user turn that answers it), from message ``start`` on,
    with the images those messages show (none when ``images`` is false).
    """
    core = env.unwrapped
    messages = core.chat_messages()
    tail = messages[start:]
    if not images or not count_images(tail):
        return tail, []
    return tail, list(core.chat_images()[count_images(messages[:start]) :])


def session_rule(env: Any) -> ConversationRule:
    """The session rule of an env's family: its package's ``session_conversation``,
    else :func:`protocol_conversation`."""
    package = type(env.unwrapped).__module__.split(".")[0]
    module = importlib.import_module(package)
    return getattr(module, "session_conversation", protocol_conversation)


def conversation(
    env: Any, start: int = 0, *, images: bool = True
) -> tuple[list[Message], list[np.ndarray]]:
    """The session conversation of an env's current episode, from message ``start`` on.

    Content-parts form of :mod:`gengym_core.chat`: image placeholders, and
    the images they refer to, in order. While the episode runs it ends with
    a user turn; once it ended, with the model's last answer.

    Raises:
        RuntimeError: The env was never reset.
    """
    return session_rule(env)(env.unwrapped, start, images=images)


# ------------------------------------------------------------ message forms


def image_data_url(image: np.ndarray) -> str:
    """A ``uint8`` ``(H, W, 3)`` image as a PNG ``data:`` URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(messages: list[Message], images: list[np.ndarray]) -> list[dict[str, Any]]:
    """gengym content-parts messages and their images as OpenAI-style messages.

    A message without images gets its text as a plain string; one with
    images a list of parts in the original order, each image as an
    ``image_url`` part holding a PNG data URL.

    Raises:
        ValueError: The messages hold more or fewer placeholders than ``images``.
    """
    if count_images(messages) != len(images):
        raise ValueError(
            f"{count_images(messages)} image placeholders but {len(images)} images"
        )
    pending = iter(images)
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str) or not any(p.get("type") == "image" for p in content):
            converted.append({"role": message["role"], "content": message_text(message)})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(next(pending))}})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        converted.append({"role": message["role"], "content": parts})
    return converted


def _decode_data_url(url: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or not _DATA_URL.match(url):
        raise ValueError(
            "only base64 image data URLs (data:image/png;base64,...) can be read; "
            f"got {str(url)[:40]!r}"
        )
    if len(url) > MAX_DATA_URL_CHARS:
        raise ValueError(f"image data URL longer than {MAX_DATA_URL_CHARS} characters")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"unreadable image data URL: {err}") from None
    return image.convert("RGB")


def to_hf_messages(messages: list[dict[str, Any]]) -> tuple[list[Message], list[Any]]:
    """OpenAI-style messages as the Hugging Face chat-template form.

    Returns the messages in content-parts form (``{"type": "text"}`` parts,
    ``{"type": "image"}`` placeholders) and the PIL images the placeholders
    refer to, in order: what ``processor.apply_chat_template`` and TRL's
    ``images`` column take.

    Raises:
        ValueError: A message is not a dict with ``role`` and ``content``, a
            part is of an unknown type, or an image is not a readable base64
            data URL (nothing is fetched from the network).
    """
    converted: list[Message] = []
    pil_images: list[Any] = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"a message must be a dict with role and content, got {message!r:.80}")
        content = message["content"]
        if content is None:
            content = ""
        if isinstance(content, str):
            converted.append({"role": message["role"], "content": [text_part(content)]})
            continue
        if not isinstance(content, list):
            raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append(text_part(str(part.get("text", ""))))
            elif kind == "image_url":
                source = part.get("image_url")
                url = source.get("url") if isinstance(source, dict) else source
                pil_images.append(_decode_data_url(url))
                parts.append(image_part())
            else:
                raise ValueError(f"unknown content part {part!r:.80}")
        converted.append({"role": message["role"], "content": parts})
    return converted, pil_images


# ------------------------------------------------------------------ session


class ChatSession:
    """One gengym env as a chat session: opening messages, then new turns per answer.

    Args:
        env_id: A registered gengym env id (or pass ``env=`` to wrap an env
            you made).
        variant: An evaluation variant of the id (``"id"``, ``"rule-ood"``,
            ``"visual-ood"``) or ``""``.
        images: Send the images of image ("VL") envs; ``False`` gives a
            text-only model the text of the turns (nothing is rendered).
        **env_kwargs: ``gym.make`` keyword arguments, on top of the variant.

    Attributes:
        env: The Gymnasium env the session plays.
        messages: The whole conversation so far (OpenAI-style).

    Raises:
        ValueError: Unknown env id or variant, or an option the env refuses.
    """

    def __init__(self, env_id: str | None = None, *, variant: str = "", env: Any = None,
                 images: bool = True, **env_kwargs: Any) -> None:
        if env is None:
            from gengym_core.registry import make
            from gengym_core.single_turn import resolve_env_kwargs

            if not isinstance(env_id, str):
                raise ValueError("ChatSession needs an env id (or env=)")
            env = make(env_id, **resolve_env_kwargs(env_id, env_kwargs, variant))
        elif env_kwargs or variant:
            raise TypeError("pass env options to gym.make, not with env=")
        self.env = env
        self.env_id = env_id if env_id is not None else getattr(env.spec, "id", None)
        self.images = bool(images)
        self.messages: list[dict[str, Any]] = []
        self._seen = 0  # messages of the env's conversation already in self.messages
        self._done = True
        self._terminated = self._truncated = False
        self._started = False
        self._return = 0.0
        self._success = False
        self.info: dict[str, Any] = {}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Start an episode; return its opening messages (a copy)."""
        _, info = self.env.reset(seed=seed, options=options)
        messages, images = self._conversation(0)
        self._seen = len(messages)
        self.messages = to_openai_messages(messages, images)
        self._done, self._started = False, True
        self._terminated = self._truncated = False
        self._return, self._success = 0.0, False
        self.info = dict(info)
        return [dict(m) for m in self.messages]

    def step(self, text: str) -> tuple[list[dict[str, Any]], float, bool, dict[str, Any]]:
        """Judge one model answer.

        Returns:
            ``(new_messages, reward, done, info)``: the user turn(s) that
            follow the answer (empty once the episode ended), the env's
            reward, whether the episode ended, and the env's step info.

        Raises:
            RuntimeError: No episode is running (call :meth:`reset`).
        """
        if not self._started or self._done:
            raise RuntimeError("no episode is running; call reset() first")
        _, reward, terminated, truncated, info = self.env.step(text)
        tail, images = self._conversation(self._seen)
        if not tail or tail[0]["role"] != "assistant":
            raise RuntimeError(
                f"{self.env_id}: the family's session rule did not continue the conversation with "
                "the answer (its conversations must grow by the answer, then the new user turns)"
            )
        self._seen += len(tail)
        new = to_openai_messages(tail[1:], images)
        answer = text if isinstance(text, str) else str(text)
        self.messages.append({"role": "assistant", "content": answer})
        self.messages.extend(new)
        self._terminated, self._truncated = bool(terminated), bool(truncated)
        self._done = self._terminated or self._truncated
        self._return += float(reward)
        self._success = bool(info.get("success", False))
        self.info = dict(info)
        return [dict(m) for m in new], float(reward), self._done, dict(info)

    @property
    def done(self) -> bool:
        """Whether the episode ended (or none was started)."""
        return self._done

    @property
    def terminated(self) -> bool:
        """Whether the last answer ended the episode inside the task (Gymnasium's ``terminated``)."""
        return self._terminated

    @property
    def truncated(self) -> bool:
        """Whether the last answer ended the episode at the budget (Gymnasium's ``truncated``)."""
        return self._truncated

    @property
    def success(self) -> bool:
        """Whether the episode was solved."""
        return self._success

    @property
    def episode_return(self) -> float:
        """The sum of the rewards of the episode so far."""
        return self._return

    def _conversation(self, start: int) -> tuple[list[Message], list[np.ndarray]]:
        messages, images = conversation(self.env, start, images=self.images)
        if not self.images:
            messages = [{"role": m["role"], "content": message_text(m)} for m in messages]
        return messages, images

    def hf_messages(self) -> tuple[list[Message], list[Any]]:
        """The conversation so far in Hugging Face chat-template form (see :func:`to_hf_messages`)."""
        return to_hf_messages(self.messages)

    def close(self) -> None:
        """Close the env."""
        self.env.close()
