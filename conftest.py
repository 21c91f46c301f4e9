"""Doctest collection: skip the adapter modules whose library is not installed.

``--doctest-modules`` imports every module under the test paths; an adapter
in ``gengym_integrations`` imports its library (verifiers, SkyRL-gym, GEM,
reasoning-gym) and would fail to import without its extra. Their tests in
``tests/test_integrations.py`` skip with the reason.
"""

import importlib.util

_ADAPTERS = {"verifiers": "verifiers", "skyrl": "skyrl_gym", "gem": "gem", "reasoning_gym": "reasoning_gym"}

collect_ignore = [
    f"gengym_integrations/{module}.py"
    for module, library in _ADAPTERS.items()
    if importlib.util.find_spec(library) is None
]
