"""What the policy is shown at each turn: one function shared by PPO and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from gengym_core.chat import Message, user_message

#: Accepted values of ``prompt_format``.
PROMPT_FORMATS = ("observation", "chat")


def turn_prompt(env: Any, obs: dict[str, Any], prompt_format: str) -> tuple[list[Message], list[np.ndarray]]:
    """The conversation and images the policy answers for an env's current state.

    ``"observation"`` (the paper's way) sends the observation as one user
    turn: its prompt text already carries the task, the earlier answer and
    the verifier's feedback. ``"chat"`` sends the env's whole conversation,
    earlier answers as assistant turns and feedback as user turns.

    Raises:
        ValueError: Unknown ``prompt_format``.
    """
    if prompt_format == "observation":
        has_image = "image" in obs
        return [user_message(obs["text"], num_images=int(has_image))], ([obs["image"]] if has_image else [])
    if prompt_format == "chat":
        core_env = env.unwrapped
        return core_env.chat_messages(), core_env.chat_images()
    raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
