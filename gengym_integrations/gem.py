"""Every gengym env as a GEM env: ``gem.make("gengym:GeneralPoints-L-v0")``.

Importing this module registers ``"gengym:<id>"`` for every registered
gengym id in GEM's registry::

    import gem
    import gengym_integrations.gem  # registers gengym:GeneralPoints-L-v0, gengym:VIRL-L-v0, ...

    env = gem.make("gengym:VIRL-L-v0", variant="rule-ood")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(model(obs))

GEM envs speak in observation strings: ``reset`` returns the opening turn's
text and ``step`` only the new user turn(s) (GeneralPoints: the verifier's
feedback; V-IRL: the next observation, or the feedback after a wrong
answer), which GEM's observation wrappers (``concat``, ``concat_chat``, ...)
stack into the history. Image ("VL") envs follow GEM's visual envs: the
observation is a dict ``{"problem": text, "images": [PIL images]}``, the
images being those the new turn shows (none after feedback).

Keyword arguments of ``gem.make`` go to ``gym.make`` (``variant`` picks an
evaluation variant); ``seed`` (what ``gem.make_vec`` passes each sub-env)
seeds the first episode.
"""

from __future__ import annotations

from typing import Any

from gengym_core.registry import gengym_env_ids
from gengym_core.session import ChatSession, to_hf_messages
from gengym_integrations import require

require("gem", "gem")

from gem.core import Env  # noqa: E402
from gem.envs.registration import ENV_REGISTRY, register  # noqa: E402

#: Prefix of the GEM ids of gengym envs.
PREFIX = "gengym:"


def _observation(messages: list[dict[str, Any]], images: bool) -> str | dict[str, Any]:
    hf, pil_images = to_hf_messages(messages)
    text = "\n\n".join(
        part["text"] for message in hf for part in message["content"] if part["type"] == "text"
    )
    return {"problem": text, "images": pil_images} if images else text


class GengymGemEnv(Env):
    """A gengym env behind GEM's ``Env`` API (text observations; see the module docstring).

    Args:
        gengym_id: A registered gengym env id (GEM's own ``register`` keeps ``env_id``).
        variant: An evaluation variant of the id, or ``""``.
        seed: Seed of the first episode when ``reset`` gets none.
        **env_kwargs: ``gym.make`` keyword arguments.

    Raises:
        ValueError: Unknown id, variant or env option.
    """

    def __init__(self, gengym_id: str, *, variant: str = "", seed: int | None = None, **env_kwargs: Any):
        super().__init__()
        self.session = ChatSession(gengym_id, variant=variant, **env_kwargs)
        self.gengym_id = gengym_id
        self._first_seed = seed
        self._images = "image" in getattr(self.session.env.observation_space, "spaces", {})

    def reset(self, seed: int | None = None) -> tuple[str | dict[str, Any], dict[str, Any]]:
        """Start an episode (the next one of the env's own stream when ``seed`` is ``None``)."""
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        opening = self.session.reset(seed=seed)
        return _observation(opening, self._images), dict(self.session.info)

    def step(self, action: str) -> tuple[str | dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Judge one model answer; the observation is only the new user turn(s)."""
        new, reward, _, info = self.session.step(action)
        return (
            _observation(new, self._images),
            reward,
            self.session.terminated,
            self.session.truncated,
            info,
        )

    def sample_random_action(self) -> str:
        """A well-formed random answer (the random baseline)."""
        import numpy as np

        return self.session.env.unwrapped.sample_random_answer(np.random.default_rng())


def register_all() -> list[str]:
    """Register ``gengym:<id>`` for every gengym id not registered yet; return all of them."""
    ids = []
    for env_id in gengym_env_ids():
        gem_id = PREFIX + env_id
        if gem_id not in ENV_REGISTRY:
            register(gem_id, "gengym_integrations.gem:GengymGemEnv", gengym_id=env_id)
        ids.append(gem_id)
    return ids


GEM_ENV_IDS: list[str] = register_all()
