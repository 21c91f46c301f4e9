"""Finding gengym envs by id without knowing which package registers them."""

from __future__ import annotations

import importlib

import gymnasium as gym

#: Packages whose import registers gengym env ids.
ENV_PACKAGES: tuple[str, ...] = ("gym_generalpoints", "gym_virl")


def load_env_packages() -> None:
    """Import every env package so that all gengym ids are registered."""
    for name in ENV_PACKAGES:
        importlib.import_module(name)


def gengym_env_ids() -> list[str]:
    """Every registered gengym env id, sorted."""
    load_env_packages()
    return sorted(
        env_id
        for env_id, spec in gym.registry.items()
        if isinstance(spec.entry_point, str) and spec.entry_point.split(".")[0] in ENV_PACKAGES
    )


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` after registering every gengym id.

    Raises:
        ValueError: An unknown id (the known ones listed), an option the env
            does not take, or a ``render_mode`` it does not have (Gymnasium
            would otherwise wrap it in a pygame window for ``"human"``).
            The envs refuse an unknown keyword with a ``TypeError``, as Python
            and ``gym.make`` do; here, where ids and options come from users'
            configs and command lines, both are bad settings and raise the one
            error callers report.
    """
    ids = gengym_env_ids()
    if env_id not in ids:
        raise ValueError(f"unknown gengym env {env_id!r}; known ids: {', '.join(ids)}")
    render_mode = kwargs.get("render_mode")
    if render_mode is not None:
        env_class = gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)
        modes = list(getattr(env_class, "metadata", {}).get("render_modes", []))
        if render_mode not in modes:
            raise ValueError(
                f"{env_id} has no render_mode {render_mode!r}; its render modes are {', '.join(modes)} "
                "(or none)"
            )
    try:
        return gym.make(env_id, **kwargs)
    except TypeError as err:
        raise ValueError(str(err)) from err


def variants_of(env_id: str) -> dict[str, dict]:
    """The evaluation variants of an env id: name -> ``gym.make`` kwargs.

    Each env package exports ``VARIANTS``, keyed by env id (a family whose
    variants are the same for all its ids may export one flat mapping).
    Names follow the paper's protocol: ``"id"``, ``"rule-ood"``,
    ``"visual-ood"``.

    Raises:
        ValueError: Unknown env id.
    """
    ids = gengym_env_ids()
    if env_id not in ids:
        raise ValueError(f"unknown gengym env {env_id!r}; known ids: {', '.join(ids)}")
    package = gym.registry[env_id].entry_point.split(".")[0]
    variants = getattr(importlib.import_module(package), "VARIANTS", {})
    if env_id in variants:
        variants = variants[env_id]
    return {name: dict(kwargs) for name, kwargs in variants.items()}
