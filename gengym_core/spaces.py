"""Text spaces for language-model environments.

Gymnasium's :class:`~gymnasium.spaces.Text` space only admits strings drawn
from a fixed character set. That is right for observations, which the env
writes itself, but wrong for actions: the action of a gengym env is whatever
text a model produced, and any string at all must be accepted (and judged).

Two spaces follow from that:

* :func:`prompt_space` -- a ``Text`` space over printable ASCII plus newline
  and tab (:class:`PromptText`). Every prompt a gengym env emits lies in it;
  text that echoes model output is passed through :func:`to_prompt_text`
  first. Gymnasium's vector envs batch it as a tuple of strings; for the
  shared-memory ``AsyncVectorEnv`` it reads the prompts from shared memory
  at every step (Gymnasium's own ``Text`` support reads them once, when the
  vector env is built, and returns that empty buffer ever after).
* :class:`FreeText` -- a ``Text`` subclass whose :meth:`~FreeText.contains`
  accepts every ``str`` up to ``max_length`` characters, whatever its
  characters. Sampling still draws from a printable charset so that random
  agents and the env checker produce readable junk.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

#: Characters a gengym prompt may contain: printable ASCII, newline and tab.
PROMPT_CHARSET: str = "".join(c for c in string.printable if c not in "\x0b\x0c\r")

#: Default upper bound on the length of a raw model answer. Answers beyond it
#: are still accepted by the envs (and rejected by their verifiers with a
#: negative reward); the bound only declares what the space contains.
MAX_ANSWER_CHARS: int = 1 << 20


class FreeText(spaces.Text):
    """Any Python ``str`` of at most ``max_length`` characters.

    Args:
        max_length: Longest string the space contains.
        sample_max_length: Longest string :meth:`sample` produces; kept short
            so that random agents stay cheap.
        seed: Seed for the space's own sampler.

    Example:
        >>> space = FreeText(max_length=100)
        >>> space.contains("{'formula': '2*3*4*1'} \u2713")
        True
        >>> space.contains(42)
        False
    """

    def __init__(
        self,
        max_length: int = MAX_ANSWER_CHARS,
        *,
        sample_max_length: int = 256,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_length, min_length=0, charset=PROMPT_CHARSET, seed=seed)
        self.sample_max_length = int(min(sample_max_length, max_length))

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is None and probability is None:
            length = int(self.np_random.integers(0, self.sample_max_length + 1))
            return super().sample(mask=(length, None))
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"FreeText(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, FreeText) and other.max_length == self.max_length


class PromptText(spaces.Text):
    """A ``Text`` space of prompts; equal to the plain ``Text`` space with the same settings.

    It differs from ``Text`` in one place: how ``AsyncVectorEnv`` with shared
    memory reads a batch of it back (see :class:`SharedPrompts`).
    """


class SharedPrompts(Sequence):
    """The prompts of a batch of envs, read from the ``AsyncVectorEnv``'s shared memory on every access.

    Gymnasium builds the batched observation from shared memory once, when
    the vector env is made, and afterwards returns (a deep copy of) that same
    object: numpy views follow the buffer, but a tuple of strings made then
    would stay the empty buffer's text for good. This sequence decodes the
    buffer each time it is read, and its deep copy (what ``reset`` and
    ``step`` return by default) is a plain tuple of the current prompts.
    """

    def __init__(self, space: spaces.Text, buffer: Any, n: int) -> None:
        self._space = space
        self._buffer = buffer
        self._n = n
        self._characters = np.array(list(space.character_list) + [""], dtype=object)

    def _decode(self) -> tuple[str, ...]:
        codes = np.frombuffer(self._buffer.get_obj(), dtype=np.int32).reshape(self._n, self._space.max_length)
        codes = np.minimum(codes, len(self._characters) - 1)  # the padding code reads as ""
        return tuple("".join(self._characters[row]) for row in codes)

    def __getitem__(self, index: Any) -> Any:
        return self._decode()[index]

    def __len__(self) -> int:
        return self._n

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) and not isinstance(other, str) else other)

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return self._decode()

    def __repr__(self) -> str:
        return f"SharedPrompts({self._decode()!r})"


@read_from_shared_memory.register(PromptText)
def _read_prompts_from_shared_memory(space: PromptText, shared_memory: Any, n: int = 1) -> SharedPrompts:
    return SharedPrompts(space, shared_memory, n)


def prompt_space(max_length: int) -> spaces.Text:
    """The observation space of a prompt: printable ASCII up to ``max_length``."""
    return PromptText(max_length, min_length=0, charset=PROMPT_CHARSET)


_PROMPT_CHARS = frozenset(PROMPT_CHARSET)


def to_prompt_text(text: str, max_chars: int | None = None) -> str:
    r"""Make arbitrary text safe to place inside a prompt observation.

    Accented letters lose their accents (``Cafe`` for ``Caf\u00e9``), other
    characters outside :data:`PROMPT_CHARSET` become ``?``, carriage returns
    are dropped, and text longer than ``max_chars`` is cut with a marker
    saying how much was left out.

    Example:
        >>> to_prompt_text("Caf\u00e9 \u2660 24\r\n", max_chars=20)
        'Cafe ? 24\n'
        >>> to_prompt_text("x" * 50, max_chars=30)
        'xxxxxx... [44 more characters]'
    """
    if max_chars is not None and len(text) > max_chars:
        # Cut before normalising so that a huge input costs O(max_chars).
        cut = len(text)
        marker = f"... [{cut} more characters]"
        keep = max(0, max_chars - len(marker))
        marker = f"... [{cut - keep} more characters]"
        return to_prompt_text(text[:keep]) + marker
    if _PROMPT_CHARS.issuperset(text):
        return text
    out = []
    for ch in text.replace("\r", ""):
        if ch in _PROMPT_CHARS:
            out.append(ch)
            continue
        base = unicodedata.normalize("NFKD", ch)
        base = "".join(b for b in base if b in _PROMPT_CHARS)
        out.append(base if base else "?")
    return "".join(out)
