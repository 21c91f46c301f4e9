"""gengym envs as a verifiers (0.4) environment: a taskset, its env and a chat harness.

verifiers finds an environment by the name of an installed package that
exports, in ``__all__``, one ``Taskset`` subclass (the tasks), optionally one
``Env`` subclass (how an episode runs) and one ``Harness`` subclass (how the
model is driven). The package ``gengym_verifiers`` re-exports the three
classes below, so::

    vf-eval gengym-verifiers --env.taskset.env-id VIRL-L-v0 -n 20 -m MODEL \\
        --client.base-url http://localhost:8000/v1 --no-push

plays 20 V-IRL episodes with any OpenAI-compatible model server. Taskset
options (``--env.taskset.*``): ``env-id``, ``variant``, ``env-kwargs`` (a
JSON object of ``gym.make`` options), ``seed`` and ``num-tasks``.

* :class:`GengymTaskset` yields one task per episode: task ``i`` resets its
  env with :func:`gengym_core.single_turn.episode_seed` ``(seed, i)``; its
  ``prompt`` is the episode's opening messages (images as ``image_url``
  parts holding PNG data URLs).
* :class:`GengymEnv` runs an episode as an exchange in which the gengym env
  plays the user: the model answers the prompt, the answer is stepped
  through a :class:`gengym_core.session.ChatSession`, and its new user
  turns (GeneralPoints: the verifier's feedback; V-IRL: the next
  observation, or the feedback after a wrong answer) are the next user turn,
  until the episode ends. The trace gets the env's episode return as reward
  ``env_return`` (weight 1) and ``success`` (weight 0), plus metrics
  ``answers`` and ``final_verdict``.
* :class:`GengymChatHarness` drives the model in-process: one chat
  completion per segment, sent through verifiers' interception endpoint (so
  the trace records every call). It runs no program, needs no container and
  gives the model no tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gengym_core.session import ChatSession
from gengym_core.single_turn import episode_seed, resolve_env_kwargs
from gengym_integrations import require

vf = require("verifiers.v1", "verifiers")

from pydantic import Field, field_validator  # noqa: E402
from verifiers.v1.dialects.chat import message_to_wire  # noqa: E402
from verifiers.v1.runtimes import ProgramResult  # noqa: E402

#: Longest a harness waits for one model reply (seconds).
REPLY_TIMEOUT_S = 600.0


class GengymTasksetConfig(vf.TasksetConfig):
    """Which gengym episodes the taskset holds (``--env.taskset.*``)."""

    env_id: str = "GeneralPoints-L-v0"
    """A registered gengym env id."""
    variant: str = ""
    """An evaluation variant of the id (id, rule-ood, visual-ood), or empty."""
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra gym.make keyword arguments (a JSON object on the command line)."""
    seed: int = Field(0, ge=0)
    """Seed of the task set: task i resets with episode_seed(seed, i)."""
    num_tasks: int = Field(100, ge=1)
    """Number of episodes (tasks)."""

    @field_validator("env_kwargs", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as err:
                raise ValueError(f"env_kwargs must be a JSON object: {err}") from None
        return value


class GengymTaskData(vf.TaskData):
    """One gengym episode: which env, with which options, from which reset seed."""

    env_id: str
    variant: str = ""
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    seed: int


class GengymTask(vf.Task[GengymTaskData, vf.State, vf.TaskConfig]):
    """A gengym episode; its rewards are recorded by :class:`GengymEnv`."""

    @property
    def key(self) -> str:
        data = self.data
        return f"{data.env_id}|{data.variant}|{json.dumps(data.env_kwargs, sort_keys=True)}|{data.seed}"


class GengymTaskset(vf.Taskset[GengymTask, GengymTasksetConfig]):
    """One task per gengym episode (see the module docstring)."""

    def load(self) -> Iterator[GengymTask]:
        cfg = self.config
        kwargs = dict(cfg.env_kwargs)
        resolve_env_kwargs(cfg.env_id, kwargs, cfg.variant)  # unknown id or variant: fail now
        session = ChatSession(cfg.env_id, variant=cfg.variant, **kwargs)
        try:
            for i in range(cfg.num_tasks):
                seed = episode_seed(cfg.seed, i)
                yield GengymTask(
                    GengymTaskData(
                        name=f"{cfg.env_id}#{i}",
                        prompt=session.reset(seed=seed),
                        env_id=cfg.env_id,
                        variant=cfg.variant,
                        env_kwargs=kwargs,
                        seed=seed,
                    ),
                    cfg.task,
                )
        finally:
            session.close()


class GengymEnvConfig(vf.EnvConfig):
    """The env's one role: the model playing the episode.

    Its runtime is a local subprocess: the chat harness runs no program and
    gives the model no tools, so nothing needs a sandbox (verifiers'
    default runtime is a remote one).
    """

    player: vf.AgentConfig = vf.AgentConfig(runtime=vf.SubprocessConfig())


class GengymEnv(vf.Env[GengymEnvConfig]):
    """A gengym episode as an exchange; the gengym env plays the user."""

    async def run(self, task: GengymTask, agents: Any) -> None:
        data = task.data
        session = ChatSession(data.env_id, variant=data.variant, **data.env_kwargs)
        verdict = ""
        try:
            session.reset(seed=data.seed)
            async with agents.player.interaction(task) as interaction:
                segment = await interaction.turn()  # the prompt opens the exchange
                while not segment.terminated:
                    new, _, done, info = session.step(segment.last_reply)
                    verdict = str(info.get("verdict", ""))
                    if done:
                        break
                    segment = await interaction.turn(new)
            trace = interaction.trace
            trace.record_reward("env_return", session.episode_return, 1.0)
            trace.record_reward("success", float(session.success), 0.0)
            trace.record_metric("answers", float(len(session.env.unwrapped.transcript())))
            trace.info["final_verdict"] = verdict
        finally:
            session.close()


class GengymChatHarnessConfig(vf.HarnessConfig):
    """Settings of :class:`GengymChatHarness` (none beyond verifiers' own)."""


class GengymChatHarness(vf.Harness[GengymChatHarnessConfig]):
    """One chat completion per segment, in-process, through the interception endpoint."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_RESUME = True
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx, trace, runtime, endpoint, secret, mcp_urls, data) -> ProgramResult:
        import httpx

        system_prompt, prompt = self.resolve_prompt(data)
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages.extend(m if isinstance(m, dict) else message_to_wire(m) for m in prompt or [])
        body = {"model": ctx.model, "messages": messages}
        async with httpx.AsyncClient(timeout=REPLY_TIMEOUT_S) as client:
            reply = await client.post(
                endpoint.rstrip("/") + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
            )
        if reply.status_code >= 400:
            return ProgramResult(1, "", f"model call failed ({reply.status_code}): {reply.text[:2000]}")
        return ProgramResult(0, "", "")


__all__ = ["GengymChatHarness", "GengymEnv", "GengymTaskset"]
