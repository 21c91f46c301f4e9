"""V-IRL street navigation as Gymnasium envs that run fully offline.

``VIRL-L-v0`` observes in text (the route landmarks in sight and on which
side, and whether the agent stands at an intersection); ``VIRL-VL-v0`` adds
a 2x2 grid of street views (front, right, back, left) rendered from the
city's geometry, from which the model must read the landmarks. Cities,
routes and street views are generated from seeds, or loaded from real V-IRL
data with ``gym.make(..., data_dir=PATH)``.

The pieces are pure functions usable without Gymnasium:
:mod:`gym_virl.city` (street networks, buildings, named places),
:mod:`gym_virl.routes` (routes, rails, gold actions, instructions),
:mod:`gym_virl.verifier` (judging answers), :mod:`gym_virl.render` (street
views and city styles) and :mod:`gym_virl.realdata` (the V-IRL data layout).
:data:`VARIANTS` maps the evaluation protocol's variant names to ``gym.make``
keyword arguments.

Example:
    >>> import gymnasium as gym
    >>> import gym_virl
    >>> env = gym.make("VIRL-L-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    >>> reward, info["verdict"]
    (1.0, 'correct')
"""

from gymnasium.envs.registration import register

from gym_virl.session import session_conversation
from gym_virl.verifier import VERDICTS, VirlRewards

#: Evaluation-protocol variants, per env id: variant name -> ``gym.make``
#: keyword arguments. All use the held-out test routes (the reference reused
#: training routes for in-distribution and rule-OOD evaluation). Rule OOD is
#: the relative action space; visual OOD (image mode only) the nine held-out
#: city styles. City styles change only pixels, so VIRL-L has no visual OOD:
#: its text would be the in-distribution text.
_ID_AND_RULE: dict[str, dict[str, object]] = {
    "id": {"split": "test"},
    "rule-ood": {"split": "test", "action_space": "relative"},
}
VARIANTS: dict[str, dict[str, dict[str, object]]] = {
    "VIRL-L-v0": dict(_ID_AND_RULE),
    "VIRL-VL-v0": {**_ID_AND_RULE, "visual-ood": {"split": "test", "city_style": "held_out"}},
}

register(id="VIRL-L-v0", entry_point="gym_virl.env:VirlEnv", kwargs={"modality": "text"})
register(id="VIRL-VL-v0", entry_point="gym_virl.env:VirlEnv", kwargs={"modality": "image"})

__all__ = ["VARIANTS", "VERDICTS", "VirlRewards", "session_conversation"]
