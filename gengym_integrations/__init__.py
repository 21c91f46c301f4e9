"""gengym envs inside other LLM-RL libraries, one small adapter module each.

Every adapter builds on :class:`gengym_core.session.ChatSession` (multi-turn:
opening messages, then only the new user turns after each answer) or on
:mod:`gengym_core.single_turn` (a prompt and a frozen verifier per task):

* :mod:`gengym_integrations.skyrl` -- a SkyRL-gym env class (registered as
  ``"gengym"``) and the dataset rows SkyRL reads (``prompt``, ``env_class``,
  ``extra_info``), with parquet export; extra ``[skyrl]``.
* :mod:`gengym_integrations.gem` -- every gengym id as a GEM env,
  ``gem.make("gengym:GeneralPoints-L-v0")``; extra ``[gem]``.
* :mod:`gengym_integrations.reasoning_gym` -- the single-turn view as
  reasoning-gym datasets, ``reasoning_gym.create_dataset("gengym:VIRL-L-v0")``;
  extra ``[reasoning-gym]``.
* :mod:`gengym_integrations.verifiers` -- a verifiers taskset and env
  (multi-turn, images as ``image_url`` parts), loaded by verifiers as
  ``vf-eval gengym-verifiers --env.taskset.env-id GeneralPoints-L-v0``;
  extra ``[verifiers]``.

``import gengym_integrations`` imports none of these libraries; each module
imports its own when it is imported, and says which extra to install when the
library is missing. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this gengym adapter needs {module!r}: pip install 'generalization-gym[{extra}]' "
            f"({err})"
        ) from err
