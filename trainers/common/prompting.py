"""What the policy is shown at each turn: one function shared by PPO and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from gengym_core.chat import Message, user_message

#: Accepted values of ``prompt_format``.
PROMPT_FORMATS = ("observation", "chat")
#: What trainers, evaluation and pairs use unless told otherwise: the paper's
#: code shows the model the whole conversation.
DEFAULT_PROMPT_FORMAT = "chat"


def turn_prompt(env: Any, obs: dict[str, Any], prompt_format: str) -> tuple[list[Message], list[np.ndarray]]:
    """The conversation and images the policy answers for an env's current state.

    ``"chat"`` (the default, and the paper's way) sends the episode as a chat
    session (:func:`gengym_core.session.conversation`, the same conversation
    a ``ChatSession`` and the TRL tool adapter build): the first
    observation, then each earlier answer as an assistant turn followed by
    only what is new (the verifier's feedback; in V-IRL the next
    observation). ``"observation"`` sends the observation as one user turn:
    its prompt text carries the task, the last answer and its feedback, but
    not the earlier attempts.

    Raises:
        ValueError: Unknown ``prompt_format``.
    """
    if prompt_format == "observation":
        has_image = "image" in obs
        return [user_message(obs["text"], num_images=int(has_image))], ([obs["image"]] if has_image else [])
    if prompt_format == "chat":
        from gengym_core.session import conversation

        return conversation(env)
    raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
