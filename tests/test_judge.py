"""AI judges (trainers.rewards.judge, judge:PATH) and reward specs, with tiny offline models on CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import SMALL_GP_VL, run_gengym, tiny_ppo_config  # noqa: E402

from gengym_core.chat import message_text  # noqa: E402
from gengym_core.registry import make  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict  # noqa: E402
from trainers.common.prompting import turn_prompt  # noqa: E402
from trainers.ppo.ppo_config import PPOConfig  # noqa: E402
from trainers.ppo.ppo_trainer import PPOTrainer  # noqa: E402
from trainers.rewards import (  # noqa: E402
    Turn,
    WeightedReward,
    make_reward_function,
    parse_reward_spec,
    resolve_device,
    resolve_dtype,
)
from trainers.rewards.judge import (  # noqa: E402
    MAX_ANSWER_CHARS,
    JudgeReward,
    build_rubric,
    judge_request,
    parse_judge_score,
    score_to_reward,
)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 9", 9.0),
        ("The formula uses 7 twice.\nScore: 2", 2.0),
        ("**Score:** 8.", 8.0),
        ("score is 7.5", 7.5),
        ('{"reason": "right", "score": 10}', 10.0),
        ("```json\n{'score': '6',}\n```", 6.0),
        ("I would give it 3 out of 10", 3.0),
        ("Rating 4/10", 4.0),
        ("I would give it 7/10.", 7.0),
        ("Score 7/100", None),
        ("5", 5.0),
        ("Score: 3\n...on reflection, Score: 6", 6.0),  # the last verdict wins
        ("Cards 4, 6, 10 and 24. Score: 0", 0.0),
        ("Score: 11", None),  # off the scale
        ("Score: -3", None),
        ("Score: 1e400", None),
        ("score: 7b", None),
        ('{"score": true}', None),
        ("The answer looks fine.", None),
        ("", None),
        ("{" * 5000 + "Score: 4", 4.0),  # malformed JSON does not hide the score line
        ("x" * 100_000, None),
    ],
)
def test_judge_replies_are_parsed_robustly(reply, score):
    assert parse_judge_score(reply) == score


def test_scores_map_onto_minus_one_to_one():
    assert [score_to_reward(s) for s in (0, 2.5, 5, 10)] == [-1.0, -0.5, 0.0, 1.0]


def test_rubric_follows_the_env_family_and_can_be_replaced():
    gp, virl = build_rubric("GeneralPoints-VL-v0"), build_rubric("VIRL-L-v0")
    assert "formula" in gp and "cards" in gp and "action" not in gp
    assert "intersection" in virl and "formula" not in virl
    assert build_rubric("GeneralPoints-L-v0", "  Be strict.\n") == "Be strict."


def test_the_request_shows_the_task_as_the_policy_saw_it():
    env = make("GeneralPoints-VL-v0", **SMALL_GP_VL)
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step("no json here")
    messages, images = turn_prompt(env, obs, "observation")
    long_answer = "@" * (MAX_ANSWER_CHARS + 50)
    (request,), request_images = judge_request(Turn("GeneralPoints-VL-v0", messages, images, long_answer, -3.0), "R")
    assert [p["type"] for p in request["content"]] == ["image", "text"] and len(request_images) == 1
    text = message_text(request)
    assert message_text(messages[-1]) in text  # the task, with the earlier answer and its feedback
    assert "Score: N" in text and text.count("@") == MAX_ANSWER_CHARS and "[cut]" in text

    chat, _ = turn_prompt(env, obs, "chat")
    (request,), _ = judge_request(Turn("GeneralPoints-VL-v0", chat, images, "a", -3.0), "R")
    assert "[assistant]\nno json here" in message_text(request)


def gp_turns(env_id: str, answers: list[str], **env_kwargs) -> list[Turn]:
    env = make(env_id, **env_kwargs)
    turns = []
    for seed, answer in enumerate(answers):
        obs, _ = env.reset(seed=seed)
        messages, images = turn_prompt(env, obs, "observation")
        turns.append(Turn(env_id, messages, images, answer or env.unwrapped.oracle_answer(), env_reward=0.0))
    return turns


def test_a_real_judge_model_scores_batches_and_counts_its_tokens(tiny_model_path, caplog):
    judge = JudgeReward(str(tiny_model_path("qwen2")), device="cpu", batch_size=2, max_new_tokens=6,
                        default_reward=-0.25)
    turns = gp_turns("GeneralPoints-L-v0", ["", "wrong", "24", ""])
    with caplog.at_level(logging.WARNING, logger="trainers.rewards.judge"):
        rewards = judge(turns)
    replies = judge.replies(turns[:2]) + judge.replies(turns[2:])
    expected = [score_to_reward(s) if (s := parse_judge_score(r)) is not None else -0.25 for r in replies]
    assert rewards == expected  # greedy: the same replies again
    assert judge.stats["judged"] == 4
    assert judge.stats["unparseable"] == sum(parse_judge_score(r) is None for r in replies)
    if judge.stats["unparseable"]:
        assert "counted as -0.25" in caplog.text
    # Prompt and reply tokens of three batches (one call of two, two direct calls).
    assert judge.compute.tokens > 3 * 2 * 6 and judge.compute.flops == 2 * judge.compute.num_params * judge.compute.tokens


class _CannedJudge(JudgeReward):
    """The real judge class with fixed replies, to check how replies become rewards."""

    canned = ["Score: 10", "Score: 0", "nothing", "7/10"]

    def replies(self, turns):
        return self.canned[: len(turns)]


def test_replies_become_rewards_and_unreadable_ones_the_default(tiny_model_path):
    judge = _CannedJudge(str(tiny_model_path("qwen2")), device="cpu", batch_size=4, default_reward=-0.5)
    assert judge(gp_turns("GeneralPoints-L-v0", ["a", "b", "c", "d"])) == [1.0, -1.0, -0.5, 0.4]
    assert judge.stats == {"judged": 4, "unparseable": 1}


def test_a_vision_judge_sees_the_images_and_a_text_judge_refuses_them(tiny_model_path):
    turns = gp_turns("GeneralPoints-VL-v0", ["", "x"], **SMALL_GP_VL)
    judge = JudgeReward(str(tiny_model_path("llava")), device="cpu", max_new_tokens=4)
    rewards = judge(turns)
    assert len(rewards) == 2 and all(-1.0 <= r <= 1.0 for r in rewards)
    text_judge = JudgeReward(str(tiny_model_path("qwen2")), device="cpu", max_new_tokens=4)
    with pytest.raises(ValueError, match="text-only"):
        text_judge(turns)


def test_a_text_judge_on_an_image_env_is_refused_before_anything_loads(tiny_model_path, tmp_path):
    vlm, text = tiny_model_path("llava"), tiny_model_path("qwen2")
    image_run = {"env_id": "GeneralPoints-VL-v0", "env_kwargs": SMALL_GP_VL}
    with pytest.raises(ConfigError, match="judge .* is text-only and cannot see the env's images"):
        tiny_ppo_config(vlm, tmp_path / "a", reward=f"judge:{text}", **image_run).check_runnable()
    tiny_ppo_config(vlm, tmp_path / "b", reward=f"judge:{vlm}", **image_run).check_runnable()
    tiny_ppo_config(text, tmp_path / "c", reward=f"judge:{text}").check_runnable()  # text env: any judge


def test_a_judge_hub_id_that_cannot_be_resolved_is_refused_before_anything_loads(tiny_model_path, tmp_path):
    # The suite runs with HF_HUB_OFFLINE=1: a hub id that is not cached cannot be read.
    config = tiny_ppo_config(tiny_model_path("qwen2"), tmp_path / "run", reward="judge:gengym-tests/no-such-judge")
    with pytest.raises(ConfigError, match="reward judge: cannot read a model config at 'gengym-tests/no-such-judge'"):
        config.check_runnable()


def test_ppo_against_a_judge_completes_an_update_and_charges_the_judge(tiny_model_path, tmp_path):
    policy = tiny_model_path("qwen2")
    trainer = PPOTrainer(tiny_ppo_config(policy, tmp_path / "rlaif", reward=f"judge:{policy}",
                                         judge_max_new_tokens=4, reward_batch_size=3))
    with trainer.engine.full_state_dict() as state:
        before = {k: v.clone() for k, v in state.items()}
    trainer.train()
    with trainer.engine.full_state_dict() as state:
        assert any(not torch.equal(v, before[k]) for k, v in state.items() if k.startswith("policy."))
    judge = trainer.reward_fn
    assert isinstance(judge, JudgeReward) and judge.stats["judged"] == 4
    plain = PPOTrainer(tiny_ppo_config(policy, tmp_path / "env"))
    plain.train()
    # Same rollouts (same seeds), so the difference is the judge's prompt and reply tokens (same N here).
    assert trainer.compute.buffer_tokens - plain.compute.buffer_tokens == judge.compute.tokens


def test_mixing_weights_combine_the_judge_and_the_verifier(tiny_model_path):
    mixed = make_reward_function(f"judge:{tiny_model_path('qwen2')}", weights={"judge": 2.0, "env": 0.5},
                                 device="cpu", max_new_tokens=4)
    assert isinstance(mixed, WeightedReward)
    turns = gp_turns("GeneralPoints-L-v0", ["x", "y"])
    turns[0].env_reward, turns[1].env_reward = -3.0, 5.0
    judged = mixed.source(turns)
    assert mixed(turns) == pytest.approx([2 * judged[0] - 1.5, 2 * judged[1] + 2.5])
    only_env = make_reward_function(f"judge:{tiny_model_path('qwen2')}", weights={"env": 1.0}, device="cpu")
    assert only_env(turns) == [-3.0, 5.0]  # a zero-weight source is not even asked


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"reward": "foo"}, "unknown reward"),
        ({"reward": "judge"}, "needs a model path"),
        ({"reward": "judge:"}, "needs a model path"),
        ({"reward": "env:x"}, "takes no argument"),
        ({"reward": ""}, "reward spec is empty"),
        ({"reward": "judge:m", "reward_weights": {"reward-model": 1.0}}, "unknown"),
        ({"reward": "judge:m", "reward_weights": {"judge": "lots"}}, "finite number"),
        ({"reward": "judge:m", "judge_rubric_file": "/no/such/rubric.txt"}, "not a file"),
        ({"reward": "judge:m", "judge_default_reward": float("nan")}, "finite"),
        ({"reward": "judge:m", "judge_max_new_tokens": 0}, "judge_max_new_tokens"),
    ],
)
def test_bad_reward_settings_fail_early_with_a_clear_message(settings, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(PPOConfig, settings)


def test_mixing_weights_can_be_given_as_a_flag():
    # A flag's text is read as a YAML mapping (gengym ppo --reward-weights '{judge: 1.0, env: 0.5}').
    config = config_from_dict(PPOConfig, {"reward": "judge:m", "reward_weights": "{judge: 1.0, env: 0.5}"})
    assert config.reward_weights == {"judge": 1.0, "env": 0.5}
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict(PPOConfig, {"reward": "judge:m", "reward_weights": "{judge: ["})
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict(PPOConfig, {"reward": "judge:m", "reward_weights": "judge"})


def test_a_judge_given_as_a_local_path_must_be_a_model_folder(tmp_path):
    with pytest.raises(ConfigError, match="no folder"):
        config_from_dict(PPOConfig, {"reward": f"judge:{tmp_path / 'missing'}"})
    with pytest.raises(ConfigError, match="no config.json"):
        config_from_dict(PPOConfig, {"reward": f"judge:{tmp_path}"})
    (tmp_path / "config.json").write_text("{}")
    assert config_from_dict(PPOConfig, {"reward": f"judge:{tmp_path}"}).reward  # loaded (and checked) later
    assert config_from_dict(PPOConfig, {"reward": "judge:org/model"}).reward  # a hub id


def test_reward_specs_parse_and_the_command_refuses_bad_ones():
    assert parse_reward_spec("judge:org/model") == ("judge", "org/model")
    assert parse_reward_spec("reward-model:/a/b:c") == ("reward-model", "/a/b:c")
    out = run_gengym("ppo", "--reward", "judge", "--model", "m")
    assert out.returncode == 2 and "judge:PATH" in out.stderr


def test_reward_device_and_dtype_resolve_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = resolve_device("auto")
    assert cpu == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_dtype("auto", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16


def test_a_rubric_file_replaces_the_built_in_one(tiny_model_path, tmp_path):
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Only judge whether the answer is polite.")
    judge = JudgeReward(str(tiny_model_path("qwen2")), device="cpu", rubric_file=str(rubric))
    (request,), _ = judge_request(gp_turns("GeneralPoints-L-v0", ["x"])[0], build_rubric("x", judge.rubric_text))
    assert message_text(request).startswith("Only judge whether the answer is polite.")
    assert Path(rubric).is_file()


def test_docstring_examples():
    import doctest

    import trainers.rewards
    import trainers.rewards.judge

    for module in (trainers.rewards, trainers.rewards.judge):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
