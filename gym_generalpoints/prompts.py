"""The words the model is shown: the task, and the revision turns after feedback.

Prompts state the rule in force (what J, Q and K count) and the target, since
the rule variants change both the prompt and the ground truth. They are plain
printable ASCII; model text echoed back is sanitised and cut by the caller.
"""

from __future__ import annotations

from functools import lru_cache

from gym_generalpoints.cards import describe_rule

_FORMAT = (
    "Answer with one JSON object with exactly these keys:\n"
    '  "cards": the card symbols {where}, as a list of strings, e.g. ["A", "10", "K"];\n'
    '  "number": the number each of those cards counts under the rules, in the same order;\n'
    '  "formula": your formula as a string, optionally ending with "= {target}".\n'
    "You may reason first; the last JSON object in your reply is graded."
)


@lru_cache(maxsize=256)
def _rules(hand_size: int, target: int, face_card_values: tuple[int, int, int]) -> str:
    return (
        "Rules:\n"
        f"- Each card counts as a number: A counts 1, 2 to 10 count their face value, "
        f"{describe_rule(face_card_values)}.\n"
        f"- Write one formula that uses the number of each of the {hand_size} cards exactly once "
        f"and equals {target}.\n"
        "- Use only +, -, * and / between numbers, and parentheses. No other numbers, no unary "
        "minus, no powers.\n"
    )


@lru_cache(maxsize=256)
def _task_frame(
    image: bool, hand_size: int, target: int, face_card_values: tuple[int, int, int]
) -> tuple[str, str]:
    """The text before and after the list of cards, cached per rule set."""
    if image:
        head = (
            f"You are playing GeneralPoints. The image shows {hand_size} playing cards on a table. "
            f"Recognise them, then make {target} from their numbers.\n\n"
        )
        tail = _rules(hand_size, target, face_card_values) + "\n"
        tail += _FORMAT.format(where="you see in the image", target=target)
    else:
        head = f"You are playing GeneralPoints: make {target} from {hand_size} playing cards.\n\nCards: "
        tail = "\n\n" + _rules(hand_size, target, face_card_values) + "\n"
        tail += _FORMAT.format(where="listed above", target=target)
    return head, tail


def task_prompt(
    ranks: tuple[str, ...], *, image: bool, target: int, face_card_values: tuple[int, int, int]
) -> str:
    """The first prompt of an episode.

    In text mode it lists the cards' symbols; in image mode the cards are only
    in the image.

    Example:
        >>> print(task_prompt(("A", "K"), image=False, target=11, face_card_values=(10, 10, 10)).splitlines()[2])
        Cards: A, K
    """
    head, tail = _task_frame(image, len(ranks), target, face_card_values)
    return head + tail if image else head + ", ".join(ranks) + tail


def revision_request(attempt: int, budget: int) -> str:
    """The closing line of a turn after a wrong answer."""
    left = budget - attempt
    if left <= 0:
        return "No verified attempts are left; any further answer ends the episode."
    return (
        f"Revise your answer ({left} verified attempt{'s' if left > 1 else ''} left) and reply "
        "with a corrected JSON object."
    )


def feedback_message(feedback: str, attempt: int, budget: int) -> str:
    """The user turn that answers a wrong attempt in the chat conversation.

    One such turn follows every wrong answer, so the conversation keeps every
    attempt and why it failed, as the paper's code does.

    Example:
        >>> print(feedback_message("The formula 2*3 equals 6, not 24.", 1, 5))
        Attempt 1 of 5 was not accepted: The formula 2*3 equals 6, not 24.
        <BLANKLINE>
        Revise your answer (4 verified attempts left) and reply with a corrected JSON object.
    """
    return f"Attempt {attempt} of {budget} was not accepted: {feedback}\n\n{revision_request(attempt, budget)}"


def revision_prompt(
    task: str, previous_answer: str, feedback: str, attempt: int, budget: int, *, finished: bool
) -> str:
    """A self-contained prompt after ``attempt`` answers: task, last answer, feedback.

    Args:
        task: The episode's first prompt.
        previous_answer: The last answer, already sanitised and cut.
        feedback: The verifier's feedback on it.
        attempt: How many answers were judged (or refused) so far.
        budget: The verification budget.
        finished: The episode is over (solved or out of budget).
    """
    closing = "The episode is over." if finished else revision_request(attempt, budget)
    label = (
        f"attempt {attempt} of {budget}" if attempt <= budget else "past the budget, not verified"
    )
    return (
        f"{task}\n\nYour previous answer ({label}):\n{previous_answer}\n\n"
        f"Feedback: {feedback}\n\n{closing}"
    )
