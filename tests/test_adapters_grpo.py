"""The TRL GRPO adapters (trainers.adapters): tool env, datasets, reward function.

Unit tests check the adapter's side of TRL's ``environment_factory``
contract directly; the end-to-end tests run real ``GRPOTrainer`` steps on
tiny models. A tiny random model never writes a tool call or a JSON answer
by itself, so generation is steered with a ``sequence_bias`` (a standard
generation option, passed through ``GRPOConfig.generation_kwargs``) towards
two complete outputs, a right and a wrong answer, that tie at the token
where they differ: the model's own logits choose between them, so a group
holds both and its rewards differ -- real tool calls parsed by TRL, judged by
the env, and a real policy update.
"""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest

from gengym_core.single_turn import episode_seed, iter_single_turn_tasks
from trainers.adapters.grpo_data import (
    completion_text,
    single_turn_dataset,
    tool_prompt_dataset,
    verifier_reward,
)
from trainers.adapters.grpo_env import GengymToolEnv, ToolEnvConfig, env_success, tool_env_factory
from trainers.adapters.trl_support import (
    TRLVersionError,
    check_trl_version,
    require_trl_environment_factory,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on 2 cores: one intra-op thread is ~1000x faster than two fighting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _row(seed: int) -> dict:
    return {"prompt": [{"role": "user", "content": "x"}], "seed": seed, "episode": 0}


# ----------------------------------------------------------------- tool env


@pytest.mark.parametrize("env_id", ["GeneralPoints-L-v0", "VIRL-L-v0"])
def test_a_group_shares_its_start_state(env_id):
    group = [GengymToolEnv(env_id=env_id) for _ in range(4)]
    first = [env.reset(**_row(episode_seed(0, 0))) for env in group]
    assert len(set(first)) == 1
    assert len({env.env.unwrapped.oracle_answer() for env in group}) == 1
    others = {group[0].reset(**_row(episode_seed(0, i))) for i in range(1, 6)}
    assert first[0] not in others and len(others) > 1


def test_gp_multi_turn_submissions_feedback_and_reward():
    env = GengymToolEnv(env_id="GeneralPoints-L-v0")
    prompt = env.reset(**_row(11))
    assert "make 24" in prompt
    core = env.env.unwrapped
    wrong = core.sample_wrong_answer(np.random.default_rng(0), "wrong_value")
    reply = env.submit_answer(wrong)
    assert reply.startswith("Verdict: wrong_value (reward -1).")
    assert "Attempt 1 of 5 was not accepted" in reply and "Revise your answer" in reply
    assert not env.done and env.episode_return == -1.0
    reply = env.submit_answer(core.oracle_answer())
    assert reply.startswith("Verdict: correct (reward +5).") and "episode is over" in reply
    assert env.success and env.done
    late = env.submit_answer(wrong)
    assert "not judged" in late
    assert env.get_reward() == 4.0 == sum(t["reward"] for t in env.transcript)
    assert env.submissions == 2 and env_success(environments=[env]) == [1.0]


def test_virl_episode_is_walked_through_the_tool():
    env = GengymToolEnv(env_id="VIRL-L-v0")
    env.reset(**_row(3))
    core = env.env.unwrapped
    replies = []
    while not env.done:
        replies.append(env.submit_answer(core.oracle_answer()))
    assert env.success and env.get_reward() == float(len(replies))
    # After a correct step the tool shows only the next rail point's observation:
    # the instructions and the history are already in the conversation.
    assert replies[0].startswith("Verdict: correct (reward +1).\n\nCorrect. [Current observation]\nO_2: ")
    assert all("[Instructions]" not in r and "A_1:" not in r for r in replies)
    assert max(len(r) for r in replies) < 300  # bounded: the rollout grows linearly
    assert replies[-1].endswith("The task is solved; the episode is over.")


def test_tool_budget_warnings_for_long_routes(monkeypatch):
    """Settings that cannot hold a V-IRL episode are named, with what to set instead."""
    from types import SimpleNamespace

    from trainers.adapters import grpo_env

    monkeypatch.setattr(grpo_env, "_WARNED", set())
    tight = SimpleNamespace(max_tool_calling_iterations=2, max_completion_length=64)
    with pytest.warns(UserWarning) as caught:
        factory = tool_env_factory("VIRL-L-v0", grpo_args=tight, probe_episodes=4)
    text = " ".join(str(w.message) for w in caught)
    assert "max_tool_calling_iterations=2" in text and "max_tool_calling_iterations >=" in text
    assert "max_completion_length=64" in text
    monkeypatch.setattr(grpo_env, "_WARNED", set())
    env = factory()
    with pytest.warns(UserWarning) as caught:
        env.reset(**_row(3))
    assert any("needs" in str(w.message) and "tool calls" in str(w.message) for w in caught)
    needs = env._needs(3)
    assert needs.tool_calls == len(_oracle_walk("VIRL-L-v0", 3)) and needs.completion_tokens > 64
    monkeypatch.setattr(grpo_env, "_WARNED", set())
    roomy = SimpleNamespace(max_tool_calling_iterations=16, max_completion_length=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tool_env_factory("VIRL-L-v0", grpo_args=roomy, probe_episodes=8)().reset(**_row(3))
        tool_env_factory("GeneralPoints-L-v0", grpo_args=SimpleNamespace(
            max_tool_calling_iterations=1, max_completion_length=512))().reset(**_row(3))


def _oracle_walk(env_id: str, seed: int) -> list[str]:
    from gengym_core.registry import make

    env = make(env_id)
    env.reset(seed=seed)
    answers, done = [], False
    while not done:
        answers.append(env.unwrapped.oracle_answer())
        _, _, terminated, truncated, _ = env.step(answers[-1])
        done = terminated or truncated
    return answers


@pytest.mark.parametrize("env_id, reward", [("GeneralPoints-L-v0", -3.0), ("VIRL-L-v0", -1.0)])
def test_a_silent_rollout_is_judged_as_an_empty_answer(env_id, reward):
    env = GengymToolEnv(env_id=env_id)
    env.reset(**_row(5))
    assert env.get_reward() == reward == env.get_reward()  # judged once, however often asked
    assert env.submissions == 1 and env.transcript[0]["verdict"] == "illegal"
    env.reset(**_row(5))
    assert env.submissions == 0 and env.episode_return == 0.0


def test_tool_arguments_of_any_shape_are_judged_not_raised():
    env = GengymToolEnv(env_id="GeneralPoints-L-v0")
    env.reset(**_row(2))
    oracle = json.loads(env.env.unwrapped.oracle_answer())
    assert env.submit_answer(oracle).startswith(
        "Verdict: correct"
    )  # the object itself, not its JSON
    for answer in (None, 7, ["a"], {"deep": [[[[]]]]}, "z" * 100_000, "\x00\ud800"):
        env.reset(**_row(2))
        reply = env.submit_answer(answer)
        assert reply.startswith("Verdict: illegal (reward -3).") and isinstance(reply, str)
    fresh = GengymToolEnv(env_id="GeneralPoints-L-v0")
    assert "No episode is running" in fresh.submit_answer("{}")
    with pytest.raises(RuntimeError, match="before reset"):
        fresh.get_reward()


@pytest.mark.parametrize("seed", [None, -1, True, "3", 2.5])
def test_reset_needs_a_seed_column(seed):
    env = GengymToolEnv(env_id="GeneralPoints-L-v0")
    row = {"prompt": []} if seed is None else {"prompt": [], "seed": seed}
    with pytest.raises(ValueError, match="seed"):
        env.reset(**row)


def test_image_envs_send_images_as_content_blocks():
    from PIL import Image

    gp = GengymToolEnv(env_id="GeneralPoints-VL-v0", env_kwargs={"image_size": 64})
    first = gp.reset(**_row(1))
    assert [b["type"] for b in first] == ["image", "text"]
    assert isinstance(first[0]["image"], Image.Image) and first[0]["image"].size == (64, 64)
    wrong = gp.env.unwrapped.sample_wrong_answer(np.random.default_rng(0), "wrong_cards")
    assert isinstance(gp.submit_answer(wrong), str)  # feedback turns show no new image
    text_only = GengymToolEnv(
        env_id="GeneralPoints-VL-v0", env_kwargs={"image_size": 64}, images=False
    )
    assert isinstance(text_only.reset(**_row(1)), str)

    virl = GengymToolEnv(env_id="VIRL-VL-v0", env_kwargs={"view_size": 32})
    virl.reset(**_row(4))
    reply = virl.submit_answer(virl.env.unwrapped.oracle_answer())
    assert [b["type"] for b in reply] == ["image", "text"]  # the next rail point's street views
    assert np.array_equal(np.asarray(reply[0]["image"]), virl.env.unwrapped.chat_images()[0])


def test_only_submit_answer_becomes_a_tool():
    from transformers.utils import get_json_schema

    # TRL lists the class's plain functions; everything but reset, get_reward and "_" names is a tool.
    public = [
        name
        for name, _ in inspect.getmembers(GengymToolEnv, predicate=inspect.isfunction)
        if not name.startswith("_")
    ]
    assert sorted(public) == ["get_reward", "reset", "submit_answer"]
    schema = get_json_schema(GengymToolEnv(env_id="VIRL-L-v0").submit_answer)["function"]
    assert schema["name"] == "submit_answer"
    assert schema["parameters"]["properties"]["answer"]["type"] == "string"
    assert schema["parameters"]["required"] == ["answer"]


def test_config_is_checked_early():
    with pytest.raises(ValueError, match="env_id"):
        ToolEnvConfig("")
    with pytest.raises(ValueError, match="unknown gengym env"):
        GengymToolEnv(env_id="Nope-v0")
    with pytest.raises(ValueError, match="no variant"):
        tool_env_factory("GeneralPoints-L-v0", variant="visual-ood")
    with pytest.raises(TypeError, match="either"):
        GengymToolEnv(ToolEnvConfig("VIRL-L-v0"), variant="id")
    for make_it in (
        lambda: tool_env_factory("GeneralPoints-L-v0", env_kwargs={"bogus": 1}),
        lambda: single_turn_dataset("GeneralPoints-L-v0", 2, env_kwargs={"bogus": 1}),
    ):
        with pytest.raises(ValueError, match="unknown GeneralPoints option"):
            make_it()


def test_factory_makes_fresh_envs_and_warns_for_images():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factory = tool_env_factory("VIRL-L-v0", variant="rule-ood")
    a, b = factory(), factory()
    assert a is not b and a.config == b.config and a.env.unwrapped.config.action_space == "relative"
    with pytest.warns(UserWarning, match="single-turn path"):
        tool_env_factory("GeneralPoints-VL-v0", env_kwargs={"image_size": 64})


def test_trl_version_guard():
    check_trl_version("1.16.0")
    check_trl_version("1.16.3.dev0")
    for old in ("1.15.9", "0.29.1"):
        with pytest.raises(TRLVersionError, match=r"trl>=1\.16\.0"):
            check_trl_version(old)
    with pytest.warns(UserWarning, match="tested with trl 1.16"):
        check_trl_version("1.17.0")
    import trl

    assert require_trl_environment_factory() == trl.__version__


# ----------------------------------------------------------------- datasets


def test_tool_prompt_dataset_rows_carry_group_seeds():
    ds = tool_prompt_dataset("VIRL-L-v0", 4, seed=9, environment="virl")
    assert ds.column_names == ["prompt", "seed", "episode", "environment"]
    assert ds["seed"] == [episode_seed(9, i) for i in range(4)]
    assert ds[0]["prompt"][0]["role"] == "user" and ds["environment"] == ["virl"] * 4
    with pytest.raises(ValueError, match="unknown gengym env"):
        tool_prompt_dataset("Nope-v0", 2)
    with pytest.raises(ValueError, match="num_prompts"):
        tool_prompt_dataset("VIRL-L-v0", 0)


@pytest.mark.parametrize("env_id", ["GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-VL-v0"])
def test_single_turn_rows_score_like_the_env(env_id):
    kwargs = {"image_size": 64} if env_id == "GeneralPoints-VL-v0" else {"view_size": 32}
    kwargs = {} if env_id.endswith("-L-v0") else kwargs
    ds = single_turn_dataset(env_id, 3, seed=2, env_kwargs=kwargs)
    tasks = list(iter_single_turn_tasks(env_id, 3, seed=2, env_kwargs=kwargs))
    oracle = [[{"role": "assistant", "content": t.oracle_answer}] for t in tasks]
    assert verifier_reward(oracle, ds["verifier"]) == [t.score(t.oracle_answer) for t in tasks]
    junk = ["Let me think...", "{", "4*6"]
    assert verifier_reward(junk, ds["verifier"]) == [
        t.score(j) for t, j in zip(tasks, junk, strict=True)
    ]
    row = ds[0]
    if "VL" in env_id:
        placeholders = [p for m in row["prompt"] for p in m["content"] if p["type"] == "image"]
        assert len(placeholders) == len(row["images"]) == 1
        assert np.array_equal(np.asarray(row["images"][0]), tasks[0].images[0])
    else:
        assert "images" not in ds.column_names and isinstance(row["prompt"][0]["content"], str)


def test_verifier_reward_rejects_bad_rows():
    with pytest.raises(ValueError, match="unknown family"):
        verifier_reward(["x"], ['{"family": "poker"}'])
    with pytest.raises(ValueError, match="1 completions but 2"):
        verifier_reward(["x"], ["{}", "{}"])


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    tool_turns = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "submit_answer"}}],
        },
        {"role": "tool", "name": "submit_answer", "content": "Verdict: ..."},
        {"role": "assistant", "content": [{"type": "text", "text": "final"}]},
    ]
    assert completion_text(tool_turns) == "final"
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    with pytest.raises(TypeError):
        completion_text(3)


# ------------------------------------------------------- GRPOTrainer steps


def _steering(tokenizer, texts: list[str]) -> list:
    """``sequence_bias`` entries that make generation write one of ``texts``.

    The bias of a token grows with the length of the text prefix it
    continues, so the longest matching prefix wins; the texts tie where
    they first differ, and the model's own logits choose there.
    """
    bias: dict[tuple[int, ...], float] = {}
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for k in range(len(ids)):
            bias[tuple(ids[: k + 1])] = 10.0 * (k + 1)
    return [[list(key), value] for key, value in bias.items()]


def _grpo_args(tmp_path, **overrides):
    from trl import GRPOConfig

    settings = dict(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=8,
        num_generations=8,
        max_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=0,
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


def _snapshot(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model, before) -> int:
    import torch

    return sum(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_grpo_trainer_step_through_the_tool_env(tiny_model_path, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    path = tiny_model_path("qwen2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = qwen2_5_chat_template  # a tool-calling template TRL can parse
    model = AutoModelForCausalLM.from_pretrained(path)

    factory = tool_env_factory("GeneralPoints-L-v0")
    dataset = tool_prompt_dataset("GeneralPoints-L-v0", 1, seed=0)
    probe = factory()
    probe.reset(**dataset[0])
    right = probe.env.unwrapped.oracle_answer()
    wrong = probe.env.unwrapped.sample_wrong_answer(np.random.default_rng(0), "wrong_value")

    def call(answer: str) -> str:
        payload = json.dumps({"name": "submit_answer", "arguments": {"answer": answer}})
        return f"<tool_call>\n{payload}\n</tool_call><|im_end|>"

    args = _grpo_args(
        tmp_path,
        max_completion_length=768,
        max_tool_calling_iterations=1,
        generation_kwargs={"sequence_bias": _steering(tokenizer, [call(right), call(wrong)])},
    )
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=factory,
        reward_funcs=[env_success],
    )
    before = _snapshot(model)
    trainer.train()
    log = trainer.state.log_history[0]

    envs = trainer.environments
    assert len(envs) == 8 and {e.seed for e in envs} == {dataset[0]["seed"]}  # one group, one hand
    assert log["tools/call_frequency"] > 0 and log["tools/failure_frequency"] == 0
    first = [e.transcript[0] for e in envs]
    assert {t["answer"] for t in first} == {right, wrong}  # the model chose both
    for env in envs:
        assert env.episode_return == sum(t["reward"] for t in env.transcript)
        assert env.episode_return == (5.0 if env.success else -1.0)
    expected = np.mean([e.episode_return for e in envs])
    assert log["rewards/GengymToolEnv/mean"] == pytest.approx(expected)
    assert log["rewards/env_success/mean"] == pytest.approx(np.mean([e.success for e in envs]))
    assert log["reward_std"] > 0 and "loss" in log
    assert _changed(model, before) > 0


def test_grpo_trainer_step_on_single_turn_image_rows(tiny_model_path, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOTrainer

    path = tiny_model_path("llava")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    dataset = single_turn_dataset("GeneralPoints-VL-v0", 1, seed=1, env_kwargs={"image_size": 64})
    task = next(
        iter_single_turn_tasks("GeneralPoints-VL-v0", 1, seed=1, env_kwargs={"image_size": 64})
    )
    right = task.oracle_answer
    wrong = json.dumps({**json.loads(right), "cards": ["A", "A", "A", "A"]})
    assert task.judge(wrong).verdict == "wrong_cards"
    texts = [answer + "<|im_end|>" for answer in (right, wrong)]

    args = _grpo_args(
        tmp_path,
        max_completion_length=96,
        generation_kwargs={"sequence_bias": _steering(processor.tokenizer, texts)},
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        reward_funcs=[verifier_reward],
    )
    before = _snapshot(model)
    trainer.train()
    log = trainer.state.log_history[0]
    # Both answers were sampled: mean reward strictly between wrong_cards (-1.5) and correct (+5).
    assert -1.5 < log["rewards/verifier_reward/mean"] < 5.0
    assert log["reward_std"] > 0 and "loss" in log
    assert _changed(model, before) > 0


# ---------------------------------------------------------------- examples


def _example(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gengym_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv",
    [
        ["--env", "GeneralPoints-L-v0", "--mode", "tools", "--max-completion-length", "24"],
        ["--env", "GeneralPoints-VL-v0", "--mode", "single-turn", "--env-kwarg", "image_size=64",
         "--max-completion-length", "24"],
    ],
)
def test_grpo_example_trains_a_step(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    common = ["--tiny", "--max-steps", "1", "--num-prompts", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = _example("grpo_trl").main(argv + common + ["--output-dir", str(tmp_path)])
    assert (
        "loss" in last and last["reward"] == -3.0
    )  # a silent or unreadable answer, judged illegal


@pytest.mark.parametrize("env_id", ["VIRL-L-v0", "GeneralPoints-L-v0"])
def test_grpo_example_scripted_policy_calls_the_tool(env_id, tmp_path, monkeypatch, capsys):
    """The smoke run really plays episodes: a wrong answer, then the oracle's, through the tool."""
    from trainers.adapters import grpo_env

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    monkeypatch.setattr(grpo_env, "_WARNED", set())
    argv = ["--tiny", "--scripted", "--env", env_id, "--mode", "tools", "--max-steps", "1",
            "--num-prompts", "2", "--output-dir", str(tmp_path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("error", message=".*(tool calls|completion tokens)")  # settings fit
        last = _example("grpo_trl").main(argv)
    assert "max_tool_calling_iterations=" in capsys.readouterr().out
    assert last["tools/call_frequency"] >= 2 and last["tools/failure_frequency"] == 0
    assert last["rewards/env_success/mean"] == 1.0
    # One wrong answer (a negative reward), then every step right (+5 GeneralPoints, +1 a rail point).
    best = 5.0 if env_id == "GeneralPoints-L-v0" else last["tools/call_frequency"] - 1
    assert 0 < last["reward"] < best


def test_grpo_example_rejects_bad_arguments(tmp_path, monkeypatch, capsys):
    example = _example("grpo_trl")
    with pytest.raises(SystemExit):
        example.parse_args(["--tiny", "--model", "x"])

    def must_not_load(*args, **kwargs):
        raise AssertionError("bad settings must stop before a model loads")

    monkeypatch.setattr(example, "load_model", must_not_load)
    for argv, message in [
        (["--env", "Nope-v0"], "unknown gengym env"),
        (["--env-kwarg", "bogus=1"], "bogus"),
        (["--variant", "visual-ood"], "no variant"),
        (["--num-prompts", "0"], "num_prompts"),
        (["--num-generations", "3", "--batch-size", "4"], "divisible"),
        (["--env", "GeneralPoints-VL-v0", "--mode", "tools"], "--mode single-turn"),
    ]:
        with pytest.raises(SystemExit) as stop, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            example.main(["--tiny", "--output-dir", str(tmp_path), *argv])
        assert stop.value.code == 2 and message in capsys.readouterr().err, argv


@pytest.mark.parametrize("extra", [[], ["--async", "--group"]])
def test_gymnasium_vector_example(extra, capsys):
    result = _example("gymnasium_vector").main(
        ["--num-envs", "3", "--steps", "12", "--single-turn-tasks", "3"] + extra
    )
    vector = result["vector"]
    assert vector["episodes"] > 0 and 0 < vector["success_rate"] <= 1
    assert sum(vector["verdicts"].values()) == 3 * 12
    assert (len(set(vector["first_prompts"])) == 1) == ("--group" in extra)
    assert result["single_turn"] == {"tasks": 3, "oracle_mean": 5.0, "wrong_mean": -3.0}
    assert "episodes, mean return" in capsys.readouterr().out


def test_grpo_trainer_step_with_two_envs(tiny_model_path, tmp_path, monkeypatch):
    """A dict of factories routes each row to its env by TRL's ``environment`` column."""
    from datasets import concatenate_datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    path = tiny_model_path("qwen2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = qwen2_5_chat_template
    model = AutoModelForCausalLM.from_pretrained(path)
    factories = {
        "gp": tool_env_factory("GeneralPoints-L-v0"),
        "virl": tool_env_factory("VIRL-L-v0"),
    }
    dataset = concatenate_datasets(
        [
            tool_prompt_dataset("GeneralPoints-L-v0", 1, seed=0, environment="gp"),
            tool_prompt_dataset("VIRL-L-v0", 1, seed=0, environment="virl"),
        ]
    )
    args = _grpo_args(
        tmp_path,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        shuffle_dataset=False,
    )
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=factories,
    )
    trainer.train()
    envs = trainer.environments
    assert sorted(e.config.env_id for e in envs) == ["GeneralPoints-L-v0"] * 2 + ["VIRL-L-v0"] * 2
    # Silent rollouts: each env judged one empty answer with its own verifier.
    assert sorted(e.episode_return for e in envs) == [-3.0, -3.0, -1.0, -1.0]
    assert trainer.state.log_history[0]["reward"] == pytest.approx(-2.0)
