"""A scripted chat model behind an OpenAI-compatible HTTP endpoint on the loopback.

Libraries that drive models over HTTP (verifiers) are tested against it: it
answers ``/v1/chat/completions`` requests with a policy over the request's
messages, returns well-formed ``chat.completion`` objects and keeps every
request it saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from gengym_core.session import ChatSession


class ScriptedChatServer:
    """``with ScriptedChatServer(policy) as server:`` serves ``server.base_url`` (``.../v1``)."""

    def __init__(self, policy: Callable[[list[dict[str, Any]]], str]) -> None:
        self.policy = policy
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                owner.requests.append(body)
                text = owner.policy(body["messages"])
                reply = json.dumps({
                    "id": f"chatcmpl-{len(owner.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def message_text_of(message: dict[str, Any]) -> str:
    """The text of an OpenAI-style message (its text parts joined)."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def opening_key(message: dict[str, Any]) -> str:
    """What identifies an episode by its opening turn: its text and images."""
    return json.dumps(message.get("content"), sort_keys=True)


class ReplayPolicy:
    """Plays gengym episodes from the conversation alone: wrong first, then right.

    ``episodes`` maps the :func:`opening_key` of an episode's opening user turn to the
    ``ChatSession`` arguments and reset seed that produce it. For a request,
    the policy replays the conversation's earlier answers in a fresh session
    (so it knows the env's exact state), then answers: a wrong answer as the
    episode's first answer, the oracle's answer after that.
    """

    def __init__(self, episodes: dict[str, tuple[str, dict[str, Any], int]]) -> None:
        self.episodes = episodes

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        users = [m for m in messages if m.get("role") == "user"]
        env_id, kwargs, seed = self.episodes[opening_key(users[0])]
        session = ChatSession(env_id, **kwargs)
        session.reset(seed=seed)
        answers = [message_text_of(m) for m in messages if m.get("role") == "assistant"]
        for answer in answers:
            session.step(answer)
        core = session.env.unwrapped
        if not answers:
            return core.sample_wrong_answer(np.random.default_rng(0))
        return core.oracle_answer()
