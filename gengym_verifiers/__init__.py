"""The gengym environment for verifiers: ``vf-eval gengym-verifiers --env.taskset.env-id ID``.

verifiers loads an environment by the name of an importable top-level
package that exports its ``Taskset``, ``Env`` and ``Harness`` classes in
``__all__``; this package is that name. The classes live in
:mod:`gengym_integrations.verifiers`. Install with
``pip install 'generalization-gym[verifiers]'``.
"""

from gengym_integrations.verifiers import GengymChatHarness, GengymEnv, GengymTaskset

__all__ = ["GengymChatHarness", "GengymEnv", "GengymTaskset"]
