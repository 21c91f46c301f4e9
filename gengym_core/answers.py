"""Tolerant extraction of the JSON object a model answers with.

Every gengym task asks the model to answer with a JSON object. Models rarely
emit clean JSON: they wrap it in Markdown code fences, write prose before and
after it, leave trailing commas, use single quotes or Python's ``True`` and
``None``. The paper's advice is to *parse tolerantly and judge strictly*: this
module does the tolerant half and nothing else. What the values mean is for
each task's verifier to judge.

The parser is a small hand-written recursive-descent parser over a lenient
JSON dialect. It never evaluates anything, bounds its nesting depth and the
length of numbers, and runs in time linear in the text it scans, so any model
output -- including megabytes of junk -- is answered quickly with either a
``dict`` or an :class:`AnswerFormatError` whose message can be shown to the
model as feedback.

Example:
    >>> parse_json_answer("Sure! ```json\\n{'cards': ['A', 7,], \\"formula\\": \\"1*7\\",}\\n```")
    {'cards': ['A', 7], 'formula': '1*7'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: Longest answer the parser scans. Longer text is rejected outright: no model
#: configured by gengym produces it, and scanning it would only cost time.
MAX_SCAN_CHARS = 65_536
#: Deepest nesting of objects and lists accepted.
MAX_DEPTH = 16
#: Longest number literal accepted (digits, sign, point and exponent).
MAX_NUMBER_CHARS = 64
#: At most this many ``{`` positions are tried as the start of the answer.
MAX_CANDIDATES = 64

_FENCE = re.compile(r"```[A-Za-z0-9_-]*")
_WS = " \t\r\n"
_BARE_START = re.compile(r"[A-Za-z_]")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_ \-]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL_IN_STRING = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_LITERALS = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}


class AnswerFormatError(ValueError):
    """The text holds no JSON object the parser can read.

    Attributes:
        message: What is wrong, worded as feedback for the model.
        position: Character offset in the original text where the problem was
            found, when there is one.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class _Parser:
    """Recursive-descent parser for the lenient dialect, over ``text[start:]``."""

    __slots__ = ("text", "pos", "end")

    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.pos = start
        self.end = len(text)

    def error(self, what: str) -> AnswerFormatError:
        return AnswerFormatError(f"{what} at character {self.pos}", self.pos)

    def skip_ws(self) -> None:
        text, pos, end = self.text, self.pos, self.end
        while pos < end and text[pos] in _WS:
            pos += 1
        self.pos = pos

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels")
        self.skip_ws()
        if self.pos >= self.end:
            raise self.error("unexpected end of text")
        ch = self.text[self.pos]
        if ch == "{":
            return self.obj(depth)
        if ch == "[":
            return self.array(depth)
        if ch in "\"'":
            return self.string()
        if ch in "+-.0123456789":
            return self.number()
        m = _BARE_START.match(self.text, self.pos)
        if m:
            word = re.match(r"[A-Za-z_]+", self.text[self.pos : self.pos + 8]).group(0)
            if word in _LITERALS:
                self.pos += len(word)
                return _LITERALS[word]
        raise self.error(f"unexpected character {ch!r}")

    def obj(self, depth: int) -> dict[str, Any]:
        self.pos += 1  # "{"
        out: dict[str, Any] = {}
        while True:
            self.skip_ws()
            if self.pos >= self.end:
                raise self.error("unclosed '{'")
            ch = self.text[self.pos]
            if ch == "}":
                self.pos += 1
                return out
            key = self.key()
            self.skip_ws()
            if self.pos >= self.end or self.text[self.pos] not in ":=":
                raise self.error(f"expected ':' after key {key!r}")
            self.pos += 1
            out[key] = self.value(depth + 1)
            self.skip_ws()
            if self.pos < self.end and self.text[self.pos] in ",;":
                self.pos += 1
            elif self.pos < self.end and self.text[self.pos] != "}":
                raise self.error("expected ',' or '}' between entries")

    def key(self) -> str:
        ch = self.text[self.pos]
        if ch in "\"'":
            return self.string()
        m = _BARE_WORD.match(self.text, self.pos, min(self.end, self.pos + 64))
        if not m:
            raise self.error(f"expected a key, found {ch!r}")
        self.pos = m.end()
        return m.group(0).strip()

    def array(self, depth: int) -> list[Any]:
        self.pos += 1  # "["
        out: list[Any] = []
        while True:
            self.skip_ws()
            if self.pos >= self.end:
                raise self.error("unclosed '['")
            if self.text[self.pos] == "]":
                self.pos += 1
                return out
            out.append(self.value(depth + 1))
            self.skip_ws()
            if self.pos < self.end and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos < self.end and self.text[self.pos] != "]":
                raise self.error("expected ',' or ']' between items")

    def string(self) -> str:
        quote = self.text[self.pos]
        special = _SPECIAL_IN_STRING[quote]
        self.pos += 1
        text = self.text
        parts: list[str] = []
        while True:
            m = special.search(text, self.pos)
            if m is None:
                self.pos = self.end
                raise self.error("unclosed string")
            parts.append(text[self.pos : m.start()])
            self.pos = m.start() + 1
            if m.group(0) == quote:
                return "".join(parts)
            # A backslash escape.
            if self.pos >= self.end:
                raise self.error("unclosed string")
            esc = text[self.pos]
            if esc == "u":
                digits = text[self.pos + 1 : self.pos + 5]
                if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                    raise self.error("bad \\u escape")
                parts.append(chr(int(digits, 16)))
                self.pos += 5
                continue
            parts.append(_ESCAPES.get(esc, esc))
            self.pos += 1

    def number(self) -> int | float:
        m = _NUMBER.match(self.text, self.pos, min(self.end, self.pos + MAX_NUMBER_CHARS + 1))
        if not m:
            raise self.error("malformed number")
        literal = m.group(0)
        if len(literal) > MAX_NUMBER_CHARS:
            raise self.error(f"number longer than {MAX_NUMBER_CHARS} characters")
        self.pos = m.end()
        if re.fullmatch(r"[+-]?\d+", literal):
            return int(literal)
        return float(literal)


def _candidates(text: str) -> Iterable[int]:
    start = text.find("{")
    count = 0
    while start != -1 and count < MAX_CANDIDATES:
        yield start
        count += 1
        start = text.find("{", start + 1)


def normalize_key(key: str) -> str:
    """Canonical form of an answer key: lower case, ``_``/``-`` as spaces.

    Example:
        >>> normalize_key("  Current_Observation ")
        'current observation'
    """
    return " ".join(key.replace("_", " ").replace("-", " ").lower().split())


def parse_json_answer(text: str, expected_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Find and parse the JSON object in a model's answer.

    Tolerates Markdown code fences, prose around the object, trailing commas,
    single-quoted strings, bare keys, ``=`` for ``:`` and Python literals.
    Keys are returned as written; use :func:`normalize_key` to compare them.

    When the text holds several objects, the last one that mentions one of
    ``expected_keys`` wins (models tend to think first and answer last);
    otherwise the last object that parses.

    Args:
        text: The model's raw output.
        expected_keys: Keys the task asks for, compared after
            :func:`normalize_key`; used only to pick among several objects.

    Returns:
        The parsed object.

    Raises:
        AnswerFormatError: No object could be read; the message says why in
            words suitable as feedback to the model.
    """
    if not isinstance(text, str):
        raise AnswerFormatError(f"the answer must be text, got {type(text).__name__}")
    if len(text) > MAX_SCAN_CHARS:
        raise AnswerFormatError(
            f"the answer is {len(text)} characters long; answers longer than "
            f"{MAX_SCAN_CHARS} characters are not read"
        )
    cleaned = _FENCE.sub(lambda m: " " * len(m.group(0)), text)
    wanted = {normalize_key(k) for k in expected_keys}
    parsed: list[dict[str, Any]] = []
    first_error: AnswerFormatError | None = None
    resume = 0
    for start in _candidates(cleaned):
        if start < resume:
            continue  # inside an object already parsed
        parser = _Parser(cleaned, start)
        try:
            obj = parser.obj(0)
        except AnswerFormatError as err:
            first_error = first_error or err
            continue
        parsed.append(obj)
        resume = parser.pos
    if not parsed:
        if first_error is not None:
            raise AnswerFormatError(
                f"the answer holds no readable JSON object ({first_error.message})",
                first_error.position,
            )
        raise AnswerFormatError("the answer holds no JSON object (no '{' found)")
    if wanted:
        for obj in reversed(parsed):
            if any(normalize_key(k) in wanted for k in obj):
                return obj
    return parsed[-1]


def get_field(answer: dict[str, Any], key: str) -> Any:
    """Look up ``key`` in a parsed answer, comparing keys by :func:`normalize_key`.

    Raises:
        KeyError: The answer has no such key.

    Example:
        >>> get_field({"Current_Instruction": "go"}, "current instruction")
        'go'
    """
    target = normalize_key(key)
    for k, v in answer.items():
        if normalize_key(k) == target:
            return v
    raise KeyError(key)
