"""The text the model reads: observations, history lines and the prompt.

Kept apart from the env so that the wording is in one place and can be
tested by value. All text is printable ASCII; place names come from the
generator (ASCII) or from real data through
:func:`~gengym_core.spaces.to_prompt_text`.
"""

from __future__ import annotations

import json

from gengym_core.spaces import to_prompt_text
from gym_virl.routes import Observed, RailPoint, Route
from gym_virl.verifier import action_space_help

#: Longest place name echoed into a prompt (real data may hold long names).
MAX_NAME_CHARS_IN_PROMPT = 60

TASK_TEXT = (
    "You are a navigation agent walking through a city. Follow the numbered "
    "instructions one step at a time. At every step you receive an "
    "observation and choose one action."
)

VIEWS_TEXT = (
    "The image shows four street views around you, 90 degrees each: front "
    "(top left), right (top right), back (bottom left) and left (bottom right)."
)

OUTPUT_TEXT = """[Output]
Answer with one JSON object and nothing else:
{
  "current observation": "what you observe now, including whether you are at an intersection",
  "current instruction": "the instruction sentence you are carrying out now",
  "action": "one action from the action space"
}"""


def _name(name: str) -> str:
    return to_prompt_text(name, MAX_NAME_CHARS_IN_PROMPT)


def landmark_text(observed: Observed) -> str:
    """The landmark part of a text observation.

    Example:
        >>> landmark_text(Observed((("Teal Cafe", "left front"),), False))
        'Teal Cafe is on your left front.'
        >>> landmark_text(Observed((), True, 4))
        'No landmark nearby.'
    """
    if not observed.landmarks:
        return "No landmark nearby."
    return " ".join(
        f"{_name(n)} is on your {side}." if side else f"{_name(n)}." for n, side in observed.landmarks
    )


def intersection_text(observed: Observed) -> str:
    """Whether the agent stands at an intersection, as a sentence.

    Example:
        >>> intersection_text(Observed((), True, 4)), intersection_text(Observed((), False))
        ('You are at a 4-way intersection.', 'You are not at an intersection.')
    """
    if not observed.at_intersection:
        return "You are not at an intersection."
    if observed.ways >= 3:
        return f"You are at a {observed.ways}-way intersection."
    return "You are at an intersection."


def observation_text(observed: Observed) -> str:
    """The full text observation (text mode), also the oracle's ``current observation``."""
    return f"{landmark_text(observed)} {intersection_text(observed)}"


def current_observation_line(point: RailPoint, modality: str) -> str:
    """What the prompt says about the current rail point."""
    if modality == "text":
        return observation_text(point.observed)
    return f"{VIEWS_TEXT} {intersection_text(point.observed)}"


def history_observation_line(point: RailPoint, modality: str) -> str:
    """An earlier observation as the history repeats it.

    In image mode the earlier images are not shown again, and their landmark
    names are not written out either: the model only ever read them off the
    images, so the history must not hand them over as text.
    """
    if modality == "text":
        return observation_text(point.observed)
    where = "at an intersection" if point.observed.at_intersection else "not at an intersection"
    return f"Street views (not shown again); you were {where}."


def prompt_header(route: Route, action_space: str) -> str:
    """Everything before the history: task, instructions and action space."""
    return (
        f"{TASK_TEXT}\n\n[Instructions]\n{route.numbered_instructions()}\n\n"
        f"[Action space]\n{action_space_help(action_space)}\n"
    )


def build_prompt(header: str, history: list[str], current: str, step: int,
                 feedback: str | None = None) -> str:
    """Assemble the prompt of step ``step`` (1-based) from its parts."""
    past = "\n".join(history) if history else "(none yet)"
    text = (
        f"{header}\n[Observations and actions so far]\n{past}\n\n"
        f"[Current observation]\nO_{step}: {current}\n\n{OUTPUT_TEXT}"
    )
    if feedback:
        text += f"\n\n[Feedback on your previous answer]\n{feedback}"
    return text


def retry_prompt(feedback: str) -> str:
    """The user turn after a wrong answer: the verifier's feedback and a request to answer again."""
    return f"{feedback} Answer again in the same JSON format."


def next_point_prompt(step: int, current: str) -> str:
    """The user turn of a chat session after a right answer: only the new observation.

    The instructions, the action space and the answer format were in the
    session's first turn and the earlier observations and actions are in the
    conversation itself, so none of them is repeated.

    Example:
        >>> print(next_point_prompt(2, "No landmark nearby. You are not at an intersection."))
        Correct. [Current observation]
        O_2: No landmark nearby. You are not at an intersection.
        Answer with the JSON object for this step.
    """
    return f"Correct. [Current observation]\nO_{step}: {current}\nAnswer with the JSON object for this step."


def oracle_answer_text(route: Route, point: RailPoint, action_space: str) -> str:
    """The oracle's JSON answer at ``point``: truthful observation, current
    instruction and the gold action."""
    return json.dumps(
        {
            "current observation": observation_text(point.observed),
            "current instruction": f"{point.instruction + 1}. {route.instructions[point.instruction]}",
            "action": point.gold_action(action_space),
        }
    )
