"""gengym envs in SkyRL: a SkyRL-gym env class and the dataset rows SkyRL reads.

SkyRL's generator makes one env per dataset row with
``skyrl_gym.make(row["env_class"], env_config=..., extras=row_without_prompt)``,
calls ``env.init(row["prompt"])`` for the opening messages, then
``env.step(model_text)`` until ``done``, appending the returned
``observations`` (new user turns) to the conversation. Importing this module
registers :class:`GengymSkyRLEnv` as env class ``"gengym"``; every row names
which gengym env it plays, with which options and seed, in ``extra_info``::

    from gengym_integrations.skyrl import skyrl_rows, write_parquet   # registers "gengym"
    write_parquet(skyrl_rows("VIRL-L-v0", 1000, seed=0), "data/virl_train.parquet")
    # then train with SkyRL as usual (environment.env_class=gengym, data.train_data=[...]);
    # import gengym_integrations.skyrl in the entry point of SkyRL's workers.

The env plays a :class:`gengym_core.session.ChatSession`: each step returns
only the new user turns (GeneralPoints: the verifier's feedback; V-IRL: the
next observation, or the feedback after a wrong answer), the env's reward for
the answer, and ``done`` when the episode ends. SkyRL-gym 0.4 envs exchange
text messages, so image ("VL") envs are refused.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gengym_core.session import ChatSession
from gengym_core.single_turn import episode_seed
from gengym_integrations import require

require("skyrl_gym", "skyrl")

from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput  # noqa: E402
from skyrl_gym.envs.registration import register, registry  # noqa: E402

#: The SkyRL env class every gengym row names.
ENV_CLASS = "gengym"

#: The ``extra_info`` keys a row carries.
EXTRA_INFO_KEYS = ("env_id", "variant", "env_kwargs", "seed")


def _settings(extras: Mapping[str, Any] | None) -> tuple[str, str, dict[str, Any], int]:
    """Read a row's ``extra_info`` (untrusted data: every field checked)."""
    info = (extras or {}).get("extra_info")
    if not isinstance(info, Mapping) or not isinstance(info.get("env_id"), str):
        raise ValueError(
            "a gengym SkyRL row needs extra_info with env_id, variant, env_kwargs and seed; "
            "build rows with gengym_integrations.skyrl.skyrl_rows"
        )
    variant = info.get("variant") or ""
    raw = info.get("env_kwargs") or "{}"
    try:
        kwargs = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError) as err:
        raise ValueError(f"extra_info.env_kwargs must be a JSON object: {err}") from None
    seed = info.get("seed")
    if not isinstance(variant, str) or not isinstance(kwargs, dict):
        raise ValueError("extra_info.variant must be a string and env_kwargs a JSON object")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"extra_info.seed must be a non-negative integer, got {seed!r}")
    return info["env_id"], variant, kwargs, int(seed)


def _text_session(env_id: str, variant: str, kwargs: dict[str, Any]) -> ChatSession:
    session = ChatSession(env_id, variant=variant, **kwargs)
    if "image" in getattr(session.env.observation_space, "spaces", {}):
        session.close()
        raise ValueError(
            f"{env_id} shows images, and SkyRL-gym 0.4 envs exchange text messages only; "
            "use a text (L) env"
        )
    return session


class GengymSkyRLEnv(BaseTextEnv):
    """A gengym env as a SkyRL-gym text env (env class ``"gengym"``).

    Args:
        env_config: SkyRL's per-env-class config (unused).
        extras: The dataset row without its prompt; ``extras["extra_info"]``
            names the env id, variant, env options (JSON) and reset seed.

    Raises:
        ValueError: A row without usable ``extra_info``, an unknown env id or
            option, or an image env.
    """

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        env_id, variant, kwargs, seed = _settings(extras)
        self.session = _text_session(env_id, variant, kwargs)
        self.env_id, self.seed = env_id, seed
        self.max_turns = int((extras or {}).get("max_turns") or 1_000_000)

    def init(self, prompt: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Reset the episode with the row's seed; return its opening messages.

        The row's ``prompt`` is the same opening (``skyrl_rows`` stored it);
        the env's own is returned, so the conversation always matches the env.
        """
        opening = self.session.reset(seed=self.seed)
        return opening, {"env_id": self.env_id, "seed": self.seed}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Judge one model answer; the observations are only the new user turns."""
        self.turns += 1
        if self.session.done:
            return BaseTextEnvStepOutput(observations=[], reward=0.0, done=True, metadata={})
        new, reward, done, info = self.session.step(action)
        metadata = {
            key: info[key] for key in ("verdict", "feedback", "success", "attempt") if key in info
        }
        return BaseTextEnvStepOutput(observations=new, reward=reward, done=done, metadata=metadata)

    def get_metrics(self) -> dict[str, Any]:
        """Per-episode metrics SkyRL averages: success, return and answers judged."""
        return {
            "success": float(self.session.success),
            "episode_return": self.session.episode_return,
            "answers": self.turns,
        }

    def close(self) -> None:
        self.session.close()


def skyrl_rows(
    env_id: str,
    num_rows: int,
    *,
    seed: int = 0,
    variant: str = "",
    env_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Dataset rows in SkyRL's format, one episode each.

    Row ``i`` resets its episode with :func:`gengym_core.single_turn.episode_seed`
    ``(seed, i)`` (the seeds of every other gengym dataset builder). Columns:
    ``prompt`` (the opening messages), ``env_class`` (``"gengym"``),
    ``data_source`` (``"gengym/<env_id>"``) and ``extra_info`` (``env_id``,
    ``variant``, ``env_kwargs`` as JSON text, ``seed``).

    Raises:
        ValueError: Bad ``num_rows``, unknown id, variant or option, or an image env.
    """
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
        raise ValueError(f"num_rows must be a positive integer, got {num_rows!r}")
    kwargs = dict(env_kwargs or {})
    encoded = json.dumps(kwargs, sort_keys=True)
    session = _text_session(env_id, variant, kwargs)
    rows = []
    try:
        for i in range(num_rows):
            reset_seed = episode_seed(seed, i)
            rows.append(
                {
                    "prompt": session.reset(seed=reset_seed),
                    "env_class": ENV_CLASS,
                    "data_source": f"gengym/{env_id}",
                    "extra_info": {
                        "env_id": env_id,
                        "variant": variant,
                        "env_kwargs": encoded,
                        "seed": reset_seed,
                    },
                }
            )
    finally:
        session.close()
    return rows


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows to a parquet file SkyRL's ``PromptDataset`` reads; return its path."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


if ENV_CLASS not in registry:
    register(id=ENV_CLASS, entry_point=GengymSkyRLEnv)
