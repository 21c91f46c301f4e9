"""Judging a model's answer at one rail point.

The model answers with a JSON object holding ``current observation``,
``current instruction`` and ``action``. Parsing is tolerant (code fences,
trailing commas, single quotes, prose around the object: see
:func:`gengym_core.answers.parse_json_answer`); judging follows the paper's
reward table (Appendix A.3: +1 for the right action, which moves the agent
on; -1 for a wrong action; -1.5 for a wrong claim about being at an
intersection) and, where the paper is silent, the reference code:

1. The text must hold an object with an ``action`` string, else the
   verdict is ``"illegal"``. Only ``action`` is required, as in the
   reference; a ``current observation`` that is given must be a string.
2. If the action equals the gold action (whitespace, case and quotes
   around the argument are forgiven: ``"Turn_Direction( North )"`` reads as
   ``turn_direction(north)``), the verdict is ``"correct"``, whatever the
   observation says: the paper rewards the right action.
3. Otherwise, if ``current observation`` says wrongly whether the agent is
   at an intersection, the verdict is ``"wrong_intersection"``. The claim
   is read as "at an intersection" when the text mentions an intersection
   (or crossing or junction) that is not negated nearby before it ("not at
   an intersection", "no intersection"); a missing observation claims
   nothing. The reference compared the claim with the landmark text
   instead of the intersection flag (defect 7); here it is checked against
   the rail point's true flag.
4. Otherwise the verdict is ``"illegal"`` for an action outside the
   action space and ``"wrong_action"`` for a legal one.

Verdicts and their default rewards (all configurable through :class:`VirlRewards`):

==================== ======= ==============================================
verdict              reward  meaning
==================== ======= ==============================================
``correct``          +1      right action; the agent moves on
``wrong_action``     -1      a legal action, but not the right one
``wrong_intersection`` -1.5  false claim about being at an intersection
``illegal``          -1      no readable answer, no ``action`` string, or an
                             action outside the action space
``budget``           -1      the tries at this rail point were used up; the
                             episode is truncated (set by the env)
==================== ======= ==============================================
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from gengym_core.answers import AnswerFormatError, get_field, parse_json_answer
from gengym_core.protocol import check_reward_values
from gengym_core.spaces import to_prompt_text
from gym_virl.geometry import COMPASS, RELATIVE_WORDS

#: Keys of the answer object, in the order the prompt lists them.
ANSWER_KEYS: tuple[str, ...] = ("current observation", "current instruction", "action")

#: Verdict categories, see the module docstring.
VERDICTS: tuple[str, ...] = ("correct", "wrong_action", "wrong_intersection", "illegal", "budget")

#: Turn arguments of each action space.
TURN_WORDS: dict[str, tuple[str, ...]] = {"absolute": COMPASS, "relative": RELATIVE_WORDS}

#: Longest stretch of model text echoed back in feedback.
ECHO_CHARS = 120


@dataclass(frozen=True)
class VirlRewards:
    """Reward for each verdict (paper Appendix A.3 defaults).

    Attributes:
        correct: Right action.
        wrong_action: Legal but wrong action.
        wrong_intersection: False claim about being at an intersection.
        illegal: Unreadable answer, missing key or action outside the space.
        budget: Calling again after the tries at a rail point are used up.
    """

    correct: float = 1.0
    wrong_action: float = -1.0
    wrong_intersection: float = -1.5
    illegal: float = -1.0
    budget: float = -1.0

    def __post_init__(self) -> None:
        check_reward_values(self, VERDICTS)

    def for_verdict(self, verdict: str) -> float:
        """The reward of ``verdict``.

        Raises:
            ValueError: ``verdict`` is not one of :data:`VERDICTS`.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
        return float(getattr(self, verdict))


@dataclass(frozen=True)
class Judgement:
    """The verifier's decision on one answer.

    Attributes:
        verdict: One of :data:`VERDICTS` (never ``"budget"``: the env sets that).
        feedback: What was wrong, worded for the model; empty when correct.
        action: The answer's action in canonical form, when it was legal.
        claims_intersection: What the observation claimed, when it was read.
        observation: The answer's ``current observation``, when it was read.
    """

    verdict: str
    feedback: str
    action: str | None = None
    claims_intersection: bool | None = None
    observation: str | None = None


class ActionFormatError(ValueError):
    """The ``action`` value is not an action of the action space."""


_ACTION = re.compile(r"^\s*([a-z_ ]+?)\s*\(\s*(.*?)\s*\)\s*[.;]?\s*$", re.DOTALL)


def action_space_help(action_space: str) -> str:
    """The action space as the prompt describes it.

    Example:
        >>> print(action_space_help("relative").splitlines()[1])
        "turn_direction(x)": turn to face direction x, then move on. x is one of: left, right, slightly left, slightly right.
    """
    words = ", ".join(TURN_WORDS[action_space])
    return (
        '"forward()": move forward along the street to the next position.\n'
        f'"turn_direction(x)": turn to face direction x, then move on. x is one of: {words}.\n'
        '"stop()": end the navigation; use it only at the destination.'
    )


def parse_action(text: str, action_space: str = "absolute") -> str:
    """The canonical form of an action string.

    Raises:
        ActionFormatError: ``text`` is not an action of ``action_space``;
            the message says what is allowed.

    Example:
        >>> parse_action("  Turn_Direction( North ) ")
        'turn_direction(north)'
        >>> parse_action("turn_direction('slightly   left')", "relative")
        'turn_direction(slightly left)'
        >>> parse_action("forward( )")
        'forward()'
    """
    if not isinstance(text, str):
        raise ActionFormatError(f"the action must be text, got {type(text).__name__}")
    words = TURN_WORDS[action_space]
    m = _ACTION.match(text.lower()) if len(text) <= 200 else None
    if m is None:
        raise ActionFormatError(
            f"the action {to_prompt_text(text, ECHO_CHARS)!r} is not one of forward(), "
            f"turn_direction(x) or stop()"
        )
    name = m.group(1).replace(" ", "")
    arg = " ".join(m.group(2).strip("\"' ").replace("_", " ").split())
    if name in ("forward", "stop"):
        if arg:
            raise ActionFormatError(f"{name}() takes no argument")
        return f"{name}()"
    if name == "turn_direction":
        squeezed = arg.replace(" ", "")
        for word in words:
            if squeezed == word.replace(" ", ""):
                return f"turn_direction({word})"
        raise ActionFormatError(
            f"turn_direction({to_prompt_text(arg, 40)}) is not in the action space; "
            f"x must be one of: {', '.join(words)}"
        )
    raise ActionFormatError(
        f"the action {to_prompt_text(text.strip(), ECHO_CHARS)!r} is not one of forward(), "
        "turn_direction(x) or stop()"
    )


_MENTION = re.compile(r"intersection|crossroad|junction|crossing", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?:not|no|none|never|neither|nor|without|away from|far from|isn't|aren't|am not|"
    r"haven't|hasn't|don't|doesn't|cannot|can't)\b|n't\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[.;!?\n]|,\s*but\b")
#: How far before a mention of an intersection a negation is looked for.
_NEGATION_REACH = 60


def claims_intersection(observation: str) -> bool:
    """Whether an observation text claims the agent stands at an intersection.

    A mention of an intersection (crossroad, junction, crossing) counts as
    the claim unless a negation precedes it within its clause.

    Example:
        >>> claims_intersection("Harbor Bank is on your left. You are at a 4-way intersection.")
        True
        >>> claims_intersection("No landmark nearby; you are not at an intersection.")
        False
        >>> claims_intersection("No landmark nearby.")
        False
        >>> claims_intersection("No landmark nearby, but there is an intersection.")
        True
    """
    for m in _MENTION.finditer(observation):
        # Only the 60 characters before the mention can hold its negation, so only
        # they are searched for a clause break (linear time on any answer).
        start = max(0, m.start() - _NEGATION_REACH)
        for br in _CLAUSE_BREAK.finditer(observation, start, m.start()):
            start = br.end()
        if not _NEGATION.search(observation[start : m.start()]):
            return True
    return False


def read_answer(text: str) -> dict:
    """The answer object, trying strict JSON first (fast) and the tolerant parser after.

    Raises:
        AnswerFormatError: No object could be read.
    """
    if isinstance(text, str) and len(text) < 4096:
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                obj = json.loads(stripped, parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                return obj
    return parse_json_answer(text, ANSWER_KEYS)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def judge_answer(text: str, gold_action: str, at_intersection: bool,
                 action_space: str = "absolute") -> Judgement:
    """Judge one answer against the gold action and the true intersection flag.

    Never raises on model output: anything unreadable is ``"illegal"``. The
    feedback is printable ASCII of bounded length, whatever the answer held.
    See the module docstring for the order of the checks.

    Example:
        >>> ok = '{"current observation": "No landmark nearby. Not at an intersection.", '
        >>> ok += '"current instruction": "Move forward.", "action": "forward()"}'
        >>> judge_answer(ok, "forward()", False).verdict
        'correct'
        >>> judge_answer(ok, "stop()", True).verdict
        'wrong_intersection'
        >>> judge_answer(ok, "stop()", False).verdict
        'wrong_action'
        >>> judge_answer('{"action": "forward()"}', "forward()", True).verdict
        'correct'
        >>> judge_answer("go north", "forward()", False).verdict
        'illegal'
    """
    try:
        answer = read_answer(text)
    except AnswerFormatError as err:
        # The parser's message may quote the model's text: keep the prompt ASCII.
        message = to_prompt_text(err.message, 2 * ECHO_CHARS)
        return Judgement("illegal", f"Your answer could not be read: {message}.")
    try:
        raw_action = get_field(answer, "action")
    except KeyError:
        return Judgement("illegal", 'Your answer has no "action" key.')
    if not isinstance(raw_action, str):
        return Judgement("illegal", 'The value of "action" must be a string.')
    try:
        observation = get_field(answer, "current observation")
    except KeyError:
        observation = None
    if observation is not None and not isinstance(observation, str):
        return Judgement("illegal", 'The value of "current observation" must be a string.')
    try:
        action: str | None = parse_action(raw_action, action_space)
        action_error = ""
    except ActionFormatError as err:
        action, action_error = None, str(err)
    claim = claims_intersection(observation) if observation else False
    if action == gold_action:
        return Judgement("correct", "", action, claim, observation)
    if claim != at_intersection:
        what = (
            "You said you are at an intersection, but you are not."
            if claim
            else "You did not say that you are at an intersection, but you are."
        )
        return Judgement("wrong_intersection", f"Wrong observation: {what}", action, claim, observation)
    if action is None:
        return Judgement("illegal", f"Illegal action: {action_error}.", None, claim, observation)
    return Judgement(
        "wrong_action",
        f"Wrong action: {action} is not the right move here. Check which instruction "
        "you are on and what you observe.",
        action,
        claim,
        observation,
    )


def landmarks_named(observation: str, names: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Which of ``names`` an observation text mentions (case-insensitive).

    Example:
        >>> sorted(landmarks_named("I see teal cafe on my left", ["Teal Cafe", "Harbor Bank"]))
        ['Teal Cafe']
    """
    low = " ".join(observation.lower().split())
    return frozenset(n for n in names if n and " ".join(n.lower().split()) in low)


def recognition_correct(observation: str | None, in_view: tuple[str, ...],
                        route_landmarks: tuple[str, ...]) -> bool | None:
    """Whether an answer reported the landmarks the image shows.

    True when the route landmarks named in ``observation`` are exactly those
    in view (none named when none is in view); ``None`` when the answer's
    observation could not be read.

    Example:
        >>> recognition_correct("Teal Cafe is on your left.", ("Teal Cafe",), ("Teal Cafe", "Harbor Bank"))
        True
        >>> recognition_correct("No landmark nearby.", ("Teal Cafe",), ("Teal Cafe",))
        False
    """
    if observation is None:
        return None
    return landmarks_named(observation, route_landmarks) == frozenset(in_view)
