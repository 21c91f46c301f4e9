"""Wrappers that work for every gengym env family."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from gengym_core.chat import Message


class ChatMessages(gym.Wrapper):
    """Adds the episode's chat conversation to ``info`` on reset and step.

    ``info["messages"]`` is the list of chat messages (see
    :mod:`gengym_core.chat`) the model should answer next -- or, once the
    episode ended, the whole conversation. Its image placeholders refer to
    ``env.unwrapped.chat_images()``; the current image is also in the
    observation. Use it to feed a chat model from a vector env without calling
    into the sub-envs.
    """

    def _with_messages(self, info: dict[str, Any]) -> dict[str, Any]:
        messages: list[Message] = self.env.unwrapped.chat_messages()
        info = dict(info)
        info["messages"] = messages
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._with_messages(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._with_messages(info)
