"""How a V-IRL episode reads as a chat session (the family's rule for :mod:`gengym_core.session`).

The env's observation restates the whole task at every rail point (the
instructions, the action space, every earlier observation and action),
because the paper's model sees one self-contained prompt per step. In a chat
session the conversation itself holds the history, so after the first turn
each user turn carries only what is new:

* after a right answer: ``Correct.`` and the observation at the next rail
  point (in image mode with that point's street views);
* after a wrong answer: the verifier's feedback and a request to answer
  again (the agent has not moved, so no new observation or image).

An oracle episode's conversation therefore grows by a bounded amount per
step, linearly, instead of repeating a prompt that itself grows.

The rule is a pure function of the env's episode state (its route and
transcript), so a trainer that holds only the env rebuilds the same
conversation a :class:`~gengym_core.session.ChatSession` accumulates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gengym_core.chat import Message, assistant_message, count_images, user_message
from gym_virl.prompts import (
    build_prompt,
    current_observation_line,
    next_point_prompt,
    prompt_header,
    retry_prompt,
)

if TYPE_CHECKING:
    from gym_virl.env import VirlEnv


def session_conversation(
    env: VirlEnv, start: int = 0, *, images: bool = True
) -> tuple[list[Message], list[np.ndarray]]:
    """The session conversation of the env's current episode, from message ``start`` on.

    The first user turn is the env's first observation (task, instructions,
    action space, first observation, answer format); then each answer as an
    assistant turn, each followed (while the episode runs) by the user turn
    described in the module docstring.

    Returns:
        The messages (content-parts form, image placeholders in image mode)
        and, when ``images`` is true, the street-view grids of the
        placeholders among them, in order.

    Raises:
        RuntimeError: The env was never reset.
    """
    route = env._route
    if route is None:
        raise RuntimeError("call reset() first")
    modality = env.config.modality
    n_img = 1 if modality == "image" else 0
    opening = build_prompt(
        prompt_header(route, env._action_space_name), [],
        current_observation_line(route.rail[0], modality), 1,
    )
    messages = [user_message(opening, num_images=n_img)]
    shown = [0] * n_img  # rail index of each image placeholder, in order
    turns = env.transcript()
    for k, turn in enumerate(turns):
        messages.append(assistant_message(turn["answer"]))
        if env._done and k == len(turns) - 1:
            break
        if turn["verdict"] == "correct":
            point = turn["rail_index"] + 1
            current = current_observation_line(route.rail[point], modality)
            messages.append(user_message(next_point_prompt(point + 1, current), num_images=n_img))
            shown += [point] * n_img
        else:
            messages.append(user_message(retry_prompt(turn["feedback"])))
    tail = messages[start:]
    if not images or not n_img:
        return tail, []
    needed = shown[count_images(messages[:start]):]
    grids = [
        env._current_image() if point == env._rail_index else env._render_point(point)
        for point in needed
    ]
    return tail, [grid.copy() for grid in grids]
