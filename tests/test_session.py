"""gengym_core.session: every env as a chat session of opening messages and deltas."""

from __future__ import annotations

import numpy as np
import pytest

from gengym_core.chat import count_images
from gengym_core.registry import gengym_env_ids
from gengym_core.session import (
    ChatSession,
    conversation,
    image_data_url,
    to_hf_messages,
    to_openai_messages,
)

SMALL = {
    "GeneralPoints-L-compact-v0": {},
    "GeneralPoints-L-v0": {},
    "GeneralPoints-VL-v0": {"image_size": 64},
    "VIRL-L-v0": {},
    "VIRL-VL-v0": {"view_size": 24},
}


def _play(session: ChatSession, answers) -> list[list[dict]]:
    """Step answers (a callable of the session) until the episode ends; return each delta."""
    deltas = []
    while not session.done:
        new, _, _, _ = session.step(answers(session))
        deltas.append(new)
    return deltas


def _oracle(session: ChatSession) -> str:
    return session.env.unwrapped.oracle_answer()


def test_every_registered_id_has_a_small_setting():
    assert sorted(SMALL) == gengym_env_ids()


@pytest.mark.parametrize("env_id", sorted(SMALL))
def test_the_session_is_the_env_conversation_at_every_step(env_id):
    """The accumulated messages equal the family rule's conversation rebuilt from the env."""
    session = ChatSession(env_id, **SMALL[env_id])
    rng = np.random.default_rng(0)
    opening = session.reset(seed=4)
    assert [m["role"] for m in opening] == ["user"]
    step = 0
    while not session.done:
        core = session.env.unwrapped
        # A wrong answer first at every other step: feedback turns as well as new observations.
        answer = core.sample_wrong_answer(rng) if step % 2 == 0 else core.oracle_answer()
        new, reward, done, info = session.step(answer)
        assert all(m["role"] == "user" for m in new) and (not new) == done
        assert session.messages[-len(new) - 1] == {"role": "assistant", "content": answer}
        rebuilt = to_openai_messages(*conversation(session.env))
        assert rebuilt == session.messages
        step += 1
        if step > 40:
            break
    assert session.done


@pytest.mark.parametrize("env_id", ["GeneralPoints-L-v0", "VIRL-L-v0"])
def test_oracle_sessions_succeed(env_id):
    session = ChatSession(env_id)
    session.reset(seed=1)
    deltas = _play(session, _oracle)
    assert session.success and session.episode_return == sum(
        t["reward"] for t in session.env.unwrapped.transcript()
    )
    assert deltas[-1] == []  # nothing follows the last answer


def test_generalpoints_delta_is_the_verifier_feedback():
    session = ChatSession("GeneralPoints-L-v0")
    session.reset(seed=2)
    new, reward, done, info = session.step('{"cards": [], "number": [], "formula": "1+"}')
    assert reward == -3.0 and not done and len(new) == 1
    assert new[0]["content"].startswith("Attempt 1 of 5 was not accepted: ")
    assert info["feedback"] in new[0]["content"]
    assert "Rules:" not in new[0]["content"]  # the task is not restated


def test_virl_deltas_carry_only_what_is_new():
    session = ChatSession("VIRL-L-v0", route_length="long")
    opening = session.reset(seed=7)[0]["content"]
    assert "[Instructions]" in opening and "[Action space]" in opening
    core = session.env.unwrapped
    wrong = core.sample_wrong_answer(np.random.default_rng(0), "wrong_action")
    new, reward, _, info = session.step(wrong)
    assert reward == -1.0 and new[0]["content"] == f"{info['feedback']} Answer again in the same JSON format."
    new, reward, _, _ = session.step(core.oracle_answer())
    text = new[0]["content"]
    assert reward == 1.0 and text.startswith("Correct. [Current observation]\nO_2: ")
    for restated in ("[Instructions]", "[Action space]", "[Output]", "A_1:", "O_1:"):
        assert restated not in text


def test_an_oracle_virl_conversation_grows_linearly():
    """Each step adds the answer and a bounded observation turn; the env's own
    observation restates a prompt that itself grows, so stacking those is quadratic."""
    session = ChatSession("VIRL-L-v0", route_length="long")
    sizes, restated = [], []
    for seed in range(3):
        session.reset(seed=seed)
        core = session.env.unwrapped
        start = sum(len(m["content"]) for m in session.messages)
        obs_total = start
        while not session.done:
            answer = core.oracle_answer()
            new, _, _, _ = session.step(answer)
            sizes.append(sum(len(m["content"]) for m in new))
            if not session.done:
                obs_total += len(answer) + len(core.chat_messages()[-1]["content"][0]["text"])
        steps = len(core.transcript())
        total = sum(len(m["content"]) for m in session.messages)
        assert steps >= 8
        longest_answer = max(len(t["answer"]) for t in core.transcript())
        assert total <= start + steps * (longest_answer + max(sizes))
        restated.append(obs_total / total)
    assert max(sizes) < 200
    assert min(restated) > 3  # restating the env prompt every step costs several times more


def test_image_sessions_send_png_data_urls_that_round_trip():
    session = ChatSession("VIRL-VL-v0", view_size=24)
    opening = session.reset(seed=5)
    parts = opening[0]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    core = session.env.unwrapped
    hf, images = to_hf_messages(opening)
    assert hf[0]["content"][0] == {"type": "image"} and len(images) == 1
    np.testing.assert_array_equal(np.asarray(images[0]), core.chat_images()[0])
    wrong = core.sample_wrong_answer(np.random.default_rng(1), "wrong_action")
    new, _, _, _ = session.step(wrong)
    assert isinstance(new[0]["content"], str)  # no new image: the agent did not move
    new, _, done, _ = session.step(core.oracle_answer())
    if not done:
        hf, images = to_hf_messages(new)
        assert count_images(hf) == 1
        np.testing.assert_array_equal(np.asarray(images[0]), core.chat_images()[0])
    gp = ChatSession("GeneralPoints-VL-v0", image_size=64)
    hf, images = to_hf_messages(gp.reset(seed=0))
    np.testing.assert_array_equal(np.asarray(images[0]), gp.env.unwrapped.chat_images()[0])
    new, _, _, _ = gp.step("{}")
    assert isinstance(new[0]["content"], str)  # feedback turns show no new image


def test_conversation_without_images_renders_nothing():
    session = ChatSession("VIRL-VL-v0", view_size=24)
    session.reset(seed=5)
    session.step(session.env.unwrapped.oracle_answer())
    messages, images = conversation(session.env, images=False)
    assert images == [] and count_images(messages) == 2
    tail, images = conversation(session.env, start=2)
    assert count_images(tail) == len(images) == 1


def test_bad_use_and_bad_images_raise_clear_errors():
    session = ChatSession("GeneralPoints-L-v0")
    with pytest.raises(RuntimeError, match="reset"):
        session.step("x")
    session.reset(seed=0)
    session.step(_oracle(session))
    with pytest.raises(RuntimeError, match="reset"):
        session.step("x")
    with pytest.raises(ValueError, match="unknown gengym env"):
        ChatSession("Nope-v0")
    with pytest.raises(ValueError, match="no variant"):
        ChatSession("GeneralPoints-L-v0", variant="visual-ood")
    good = image_data_url(np.zeros((4, 4, 3), np.uint8))
    for url in ("https://example.com/a.png", "data:image/png;base64,@@@", "data:image/png;base64,AAAA",
                "data:text/plain;base64,AAAA", None):
        with pytest.raises(ValueError):
            to_hf_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    for bad in ([3], [{"role": "user"}], [{"role": "user", "content": 5}],
                [{"role": "user", "content": [{"type": "audio"}]}]):
        with pytest.raises(ValueError):
            to_hf_messages(bad)
    hf, images = to_hf_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": good}}]}])
    assert images[0].size == (4, 4)
    with pytest.raises(ValueError, match="placeholders"):
        to_openai_messages([{"role": "user", "content": [{"type": "image"}]}], [])


def test_ppo_chat_prompt_format_is_the_session_conversation():
    """PPO's ``chat`` prompt format shows the env's episode as the session does."""
    from trainers.common.prompting import turn_prompt

    session = ChatSession("VIRL-L-v0")
    session.reset(seed=2)
    core = session.env.unwrapped
    for _ in range(3):
        session.step(core.oracle_answer())
    obs = {"text": core.chat_messages()[0]["content"][0]["text"]}
    messages, images = turn_prompt(session.env, obs, "chat")
    assert images == [] and to_openai_messages(messages, images) == session.messages
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]


def test_a_text_only_session_of_an_image_env_sends_text():
    session = ChatSession("VIRL-VL-v0", images=False, view_size=24)
    opening = session.reset(seed=5)
    assert isinstance(opening[0]["content"], str) and "four street views" in opening[0]["content"]
    while not session.done:
        session.step(session.env.unwrapped.oracle_answer())
    assert all(isinstance(m["content"], str) for m in session.messages)
