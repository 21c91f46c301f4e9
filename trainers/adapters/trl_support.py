"""Which TRL the GRPO adapter relies on, checked with a clear error.

``GRPOTrainer(environment_factory=...)`` is marked experimental in TRL and
its contract has moved between releases. The adapter is written against what
TRL 1.16 does (read from its ``grpo_trainer.py``):

* one env instance per rollout, drawn from a pool and reused across batches;
  ``reset(**row)`` is called with *every column of the dataset row* (the
  prompt included) before generation, and a returned string -- or a list of
  content blocks, images included -- is appended to the last user message;
* every public method of the env class except ``reset`` and ``get_reward``
  becomes a tool, described to the model from its type hints and
  Google-style docstring; a tool may return a string or a list of content
  blocks (``{"type": "image", "image": PIL.Image}`` parts are shown to VLMs);
* an exception raised by a tool is caught and returned to the model as
  ``{"error": ...}``;
* ``get_reward()`` (no arguments) is called once per finished rollout and is
  a reward column of weight 1, logged under the env class name;
* the processing class's chat template must render tool calls and tool
  messages, and TRL must know how to parse the model's tool calls (a known
  template, or a ``response_template`` set on the tokenizer).

Older releases lack parts of this (``get_reward``, row kwargs to ``reset``,
content-block observations); newer ones may change it without notice. So
:func:`require_trl_environment_factory` refuses anything older than
:data:`MIN_TRL` and warns on a newer minor release than :data:`TESTED_TRL`.
"""

from __future__ import annotations

import inspect
import warnings

#: Oldest TRL whose ``environment_factory`` behaves as the adapter assumes.
MIN_TRL = "1.16.0"
#: The TRL release line the adapter is tested against.
TESTED_TRL = "1.16"


class TRLVersionError(ImportError):
    """The installed TRL cannot run the adapter; the message says what to install."""


def _release(version: str) -> tuple[int, ...]:
    """``"1.16.0.dev0"`` -> ``(1, 16, 0)``: the numeric release part of a version."""
    from packaging.version import Version

    return Version(version).release


def check_trl_version(version: str) -> None:
    """Raise or warn for a TRL version string (see the module docstring).

    Raises:
        TRLVersionError: ``version`` is older than :data:`MIN_TRL`.

    Example:
        >>> check_trl_version("1.16.2")
        >>> check_trl_version("1.15.0")
        Traceback (most recent call last):
        ...
        trainers.adapters.trl_support.TRLVersionError: gengym's GRPO adapter needs trl>=1.16.0 (found 1.15.0): ...
    """
    found = _release(version)
    if found < _release(MIN_TRL):
        raise TRLVersionError(
            f"gengym's GRPO adapter needs trl>={MIN_TRL} (found {version}): its GRPOTrainer "
            "environment_factory API (reset(**row), get_reward, content-block observations) is what the "
            f"adapter is written against. Install it with: pip install 'trl>={MIN_TRL},<1.17'"
        )
    if found[:2] > _release(TESTED_TRL)[:2]:
        warnings.warn(
            f"gengym's GRPO adapter is tested with trl {TESTED_TRL}.x, found {version}; "
            "environment_factory is experimental in TRL and may have changed",
            UserWarning,
            stacklevel=3,
        )


def require_trl_environment_factory() -> str:
    """Check that the installed TRL runs the adapter; return its version.

    Raises:
        TRLVersionError: TRL is missing, too old, or its ``GRPOTrainer`` takes
            no ``environment_factory``.
    """
    try:
        import trl
    except ImportError as err:
        raise TRLVersionError(
            f"gengym's GRPO adapter needs TRL: pip install 'trl>={MIN_TRL},<1.17' ({err})"
        ) from err
    check_trl_version(trl.__version__)
    from trl import GRPOTrainer

    if "environment_factory" not in inspect.signature(GRPOTrainer.__init__).parameters:
        raise TRLVersionError(
            f"trl {trl.__version__}: GRPOTrainer takes no environment_factory; install trl>={MIN_TRL},<1.17"
        )
    return trl.__version__
