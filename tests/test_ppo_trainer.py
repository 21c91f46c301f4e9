"""The multi-turn PPO loop end to end, with tiny offline models on CPU."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import SMALL_GP_VL, command_env, run_gengym, tiny_ppo_config  # noqa: E402

from gengym_core.registry import make  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict, help_of  # noqa: E402
from trainers.common.metrics import read_metrics  # noqa: E402
from trainers.common.prompting import turn_prompt  # noqa: E402
from trainers.ppo.ppo_config import PPOConfig  # noqa: E402
from trainers.ppo.ppo_trainer import PPOTrainer, progress_postfix  # noqa: E402


def small_config(model: Path, out: Path, **overrides) -> PPOConfig:
    return tiny_ppo_config(model, out, **overrides)


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------- prompts
def test_revision_prompt_carries_prior_answer_and_feedback():
    env = make("GeneralPoints-L-v0")
    obs, _ = env.reset(seed=3)
    wrong = '{"cards": ["A"], "number": [1], "formula": "1+1"}'
    obs, reward, terminated, truncated, info = env.step(wrong)
    assert reward < 0 and not (terminated or truncated)

    messages, images = turn_prompt(env, obs, "observation")
    assert len(messages) == 1 and images == []
    text = messages[0]["content"][-1]["text"]
    assert "1+1" in text and info["feedback"].split(".")[0] in text

    messages, _ = turn_prompt(env, obs, "chat")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == wrong
    assert info["feedback"].split(".")[0] in messages[2]["content"][0]["text"]


def test_vision_prompt_holds_the_table_image():
    env = make("GeneralPoints-VL-v0")
    obs, _ = env.reset(seed=0)
    messages, images = turn_prompt(env, obs, "observation")
    assert messages[0]["content"][0] == {"type": "image"}
    assert len(images) == 1 and images[0].shape == obs["image"].shape


# --------------------------------------------------------------- one update
@pytest.mark.parametrize("family", ["llava", "idefics3", "mllama"])
def test_one_update_on_gp_vl_single_device(tiny_model_path, tmp_path, family):
    run_and_check_one_update(tiny_model_path(family), tmp_path, "none")


@pytest.mark.slow
def test_one_update_on_gp_vl_zero3(tiny_model_path, tmp_path):
    """The real DeepSpeed ZeRO-3 path, one CPU process over gloo."""
    run_and_check_one_update(tiny_model_path("llava"), tmp_path, "zero3")


def run_and_check_one_update(model_path: Path, tmp_path: Path, backend: str) -> None:
    cfg = small_config(model_path, tmp_path / "run", env_id="GeneralPoints-VL-v0", deepspeed=backend)
    trainer = PPOTrainer(cfg)
    with trainer.engine.full_state_dict() as state:
        before = {k: v.clone() for k, v in state.items()}
    final = trainer.train()
    with trainer.engine.full_state_dict() as state:
        changed = [k for k, v in state.items() if not torch.equal(v, before[k])]
    assert any(k.startswith("policy.") for k in changed), "the policy did not change"
    assert any(k.startswith("value_head.") for k in changed), "the value head did not change"

    (record,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    for key in (
        "losses/policy",
        "losses/value",
        "ppo/clip_fraction",
        "ppo/approx_kl",
        "env/per_step_accuracy",
        "env/recognition_accuracy",
        "perf/rollout_tokens_per_s",
        "perf/update_tokens_per_s",
        "compute/gflops",
    ):
        assert key in record and record[key] is not None, key
    assert record["compute/gflops"] > 0

    # The final policy is a normal Hugging Face checkpoint that generates.
    from trainers.common.inputs import encode_prompts
    from trainers.common.modeling import load_model_and_processor

    loaded = load_model_and_processor(final)
    env = make("GeneralPoints-VL-v0")
    obs, _ = env.reset(seed=0)
    messages, images = turn_prompt(env, obs, "observation")
    inputs = encode_prompts(loaded.processor, [messages], [images])
    out = loaded.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert (final / "value_head.safetensors").is_file()
    assert json.loads((final / "gengym_training.json").read_text())["method"] == "ppo"


def test_lora_run_ends_with_a_merged_loadable_policy(tiny_model_path, tmp_path):
    from safetensors.torch import load_file

    from trainers.common.modeling import load_model_and_processor

    base = tiny_model_path("qwen2")
    final = PPOTrainer(small_config(base, tmp_path / "run", lora=True, lora_target_modules="q_proj,v_proj")).train()
    assert (final / "adapter" / "adapter_config.json").is_file() and (final / "value_head.safetensors").is_file()
    policy = tmp_path / "run" / "checkpoints" / "update-00001" / "policy"  # the experiment runner evaluates these
    assert (policy / "adapter" / "adapter_config.json").is_file() and (policy / "model.safetensors").is_file()
    loaded = load_model_and_processor(final)  # a plain checkpoint, as gengym eval and PPO load it
    merged, original = load_file(final / "model.safetensors"), load_file(base / "model.safetensors")
    assert merged.keys() == original.keys()
    changed = {k for k in merged if not torch.equal(merged[k], original[k])}
    assert changed and all(".q_proj." in k or ".v_proj." in k for k in changed), changed
    assert loaded.model.config.model_type == "qwen2"


def test_text_model_on_image_env_fails_early(tiny_model_path, tmp_path):
    cfg = small_config(tiny_model_path("qwen2"), tmp_path, env_id="GeneralPoints-VL-v0")
    with pytest.raises(ValueError, match="text-only model"):
        PPOTrainer(cfg)


def test_an_answer_the_model_could_not_reread_is_never_sampled(tiny_model_path, tmp_path):
    """A VLM biased towards its own image placeholder still trains: the backend never
    samples it, so the scoring pass sees as many placeholders as images."""
    cfg = small_config(tiny_model_path("llava"), tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL)
    trainer = PPOTrainer(cfg)
    policy = trainer.engine.module.policy
    placeholder = policy.config.image_token_index

    def favour_placeholder(module, args, output):
        output = output.clone()
        output[..., placeholder] += 100.0
        return output

    policy.get_output_embeddings().register_forward_hook(favour_placeholder)
    buffer, _ = trainer.rollout(0)
    assert placeholder not in buffer.tokens[buffer.masks.bool()].tolist()
    assert (buffer.logprobs[buffer.masks.bool()] < 0).all(), "every answer token was scored"


def test_a_value_head_saved_with_the_start_checkpoint_is_trained_on(tiny_model_path, tmp_path):
    import shutil

    from trainers.ppo.value_head import ValueHead, ValueHeadConfig, save_value_head

    start = tmp_path / "start"
    shutil.copytree(tiny_model_path("qwen2"), start)
    saved = ValueHead(32, ValueHeadConfig(hidden=8))
    torch.nn.init.normal_(saved.net[-1].weight)
    save_value_head(saved, start / "value_head.safetensors")

    with pytest.raises(ConfigError, match="is 8 wide, but value_head_hidden is 1024: set value_head_hidden 8"):
        PPOTrainer(small_config(start, tmp_path / "a"))
    trainer = PPOTrainer(small_config(start, tmp_path / "b", value_head_hidden=8))
    loaded = trainer.engine.module.value_head.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in saved.state_dict().items())
    # A separate critic starting from the same checkpoint reads the same features: same head.
    trainer = PPOTrainer(small_config(start, tmp_path / "c", critic="separate", value_head_hidden=8))
    loaded = trainer.engine.module.value_head.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in saved.state_dict().items())


def test_a_separate_critic_is_saved_and_continued(tiny_model_path, tmp_path):
    from safetensors.torch import load_file

    from trainers.ppo.value_head import load_value_head

    base = tiny_model_path("qwen2")
    first = PPOTrainer(small_config(base, tmp_path / "a", critic="separate", value_head_hidden=16))
    final = first.train()
    critic = final / "critic"
    assert not (final / "value_head.safetensors").exists(), "a head of another model's features beside the policy"
    trained_critic = load_file(critic / "model.safetensors")
    assert any(not torch.equal(v, load_file(base / "model.safetensors")[k]) for k, v in trained_critic.items())
    head = load_value_head(critic / "value_head.safetensors")

    second = PPOTrainer(
        small_config(final, tmp_path / "b", critic="separate", critic_model=str(critic), value_head_hidden=16)
    )
    body = second.engine.module.critic_body.state_dict()
    assert trained_critic.keys() <= body.keys()
    assert all(torch.equal(v, body[k]) for k, v in trained_critic.items())
    loaded = second.engine.module.value_head.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in head.state_dict().items())


@pytest.mark.parametrize("disable", [True, False])
def test_dropout_is_off_so_the_update_scores_the_rollout_function(tiny_model_path, tmp_path, disable):
    """Rollouts are scored in eval mode, updates run in train mode: with dropout
    (attention's float rate, LoRA's module) the two would differ before any step."""
    import shutil

    start = tmp_path / "start"
    shutil.copytree(tiny_model_path("qwen2"), start)
    config = json.loads((start / "config.json").read_text())
    (start / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    cfg = small_config(start, tmp_path / "run", lora=True, lora_dropout=0.5, disable_dropout=disable)
    trainer = PPOTrainer(cfg)
    policy = trainer.engine.module.policy
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_()
    obs, _ = trainer.envs[0].reset(seed=0)
    messages, images = turn_prompt(trainer.envs[0], obs, "observation")
    inputs = trainer._encode([messages], [images])
    with torch.no_grad():
        policy.eval()
        reference = policy(**inputs).logits
        policy.train()
        trained = [policy(**inputs).logits for _ in range(2)]
    assert all(torch.allclose(t, reference, atol=1e-5) for t in trained) == disable


def _refuse_to_load(*args, **kwargs):
    raise AssertionError("weights were loaded before the settings were checked")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"env_id": "Nope-v0"}, "unknown gengym env 'Nope-v0'"),
        ({"env_kwargs": {"bogus": 1}}, "unknown GeneralPoints option"),
        ({"model": "/no/such/checkpoint"}, "is not a folder"),
        ({"critic": "separate", "critic_model": "/no/such/critic"}, "critic_model: '/no/such/critic' is not a folder"),
        ({"device": "cuda"}, "no CUDA device"),
        ({"world_size": 2}, "deepspeed none trains in one process, but a launcher started 2"),
        ({"lora": True, "lora_target_modules": "q_proj,foo_proj"}, "lora_target_modules foo_proj match no module"),
        ({"generation_backend": "vllm", "env_id": "GeneralPoints-VL-v0"}, "text prompts only"),
        ({"generation_backend": "vllm", "lora": True}, "cannot take LoRA"),
        ({"generation_backend": "vllm", "deepspeed": "zero3", "gather_for_generation": False}, "gather_for_generation"),
    ],
)
def test_runs_that_cannot_start_fail_before_loading_weights(tiny_model_path, tmp_path, monkeypatch, settings, message):
    if settings.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    settings = dict(settings)
    monkeypatch.setenv("WORLD_SIZE", str(settings.pop("world_size", 1)))
    monkeypatch.setattr("trainers.ppo.models.load_model_and_processor", _refuse_to_load)
    cfg = small_config(settings.pop("model", tiny_model_path("qwen2")), tmp_path, **settings)
    with pytest.raises(ConfigError, match=message) as err:
        PPOTrainer(cfg)
    if cfg.generation_backend == "vllm":
        from trainers.generation.vllm_backend import vllm_available

        assert vllm_available() or "pip install vllm" in str(err.value)


def test_a_prompt_longer_than_max_prompt_length_names_the_setting(tiny_model_path, tmp_path):
    trainer = PPOTrainer(small_config(tiny_model_path("qwen2"), tmp_path, max_prompt_length=20))
    with pytest.raises(ConfigError, match="more than max_prompt_length=20: raise max_prompt_length"):
        trainer.train()


def test_backends_holding_their_own_weights_are_told_after_every_update(tiny_model_path, tmp_path, monkeypatch):
    """vLLM keeps its own copy of the weights: the loop must say when they changed."""
    from trainers.generation.hf import HFGenerationBackend

    events = []

    class RecordingBackend(HFGenerationBackend):
        @contextlib.contextmanager
        def rollout_phase(self):
            events.append("rollout")
            yield

        def update_weights(self, model):
            assert model is self.model
            events.append("weights")

    monkeypatch.setattr("trainers.ppo.ppo_trainer.make_backend", lambda name, *args, **kw: RecordingBackend(*args, **kw))
    PPOTrainer(small_config(tiny_model_path("qwen2"), tmp_path, total_updates=2, save_every=10)).train()
    assert events == ["rollout", "weights", "rollout", "weights"]


# ------------------------------------------------------------ learning signal
def digit_reward(turns):
    return [1.0 if any(c.isdigit() for c in t.answer) else 0.0 for t in turns]


def test_ppo_raises_a_simple_reward(tiny_model_path, tmp_path):
    """Single-token answers rewarded when they contain a digit: a few updates
    must move probability mass onto digit tokens (sign and plumbing)."""
    cfg = small_config(
        tiny_model_path("qwen2"),
        tmp_path / "run",
        num_envs=8,
        num_steps=2,
        total_updates=5,
        minibatch_size=8,
        micro_batch_size=8,
        ppo_epochs=4,
        max_new_tokens=1,
        temperature=1.0,
        learning_rate=3e-2,
        clip_range=0.2,
        gamma=0.0,
        seed=1,
        save_every=100,
    )
    trainer = PPOTrainer(cfg, reward_fn=digit_reward)
    tokenizer = trainer.tokenizer
    digit_ids = torch.tensor([i for i in range(len(tokenizer)) if any(c.isdigit() for c in tokenizer.decode([i]))])

    def expected_reward() -> float:
        """Exact probability of a digit answer, averaged over fixed prompts."""
        total = 0.0
        for seed in range(4):
            obs, _ = trainer.envs[0].reset(seed=100 + seed)
            messages, images = turn_prompt(trainer.envs[0], obs, "observation")
            with torch.no_grad():
                logits = trainer.engine.module.policy(**trainer._encode([messages], [images])).logits[0, -1]
            total += torch.softmax(logits.float(), -1)[digit_ids].sum().item()
        return total / 4

    start = expected_reward()
    trainer.train()
    end = expected_reward()
    assert end > start + 0.2, (start, end)
    rewards = [m["env/turn_reward"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert len(rewards) == 5 and rewards[-1] > rewards[0]


# ------------------------------------------------------------ buffer and metrics
def test_bootstrap_values_live_in_the_buffer_not_in_turn_info(tiny_model_path, tmp_path):
    """A verification budget of one answer truncates every unsolved episode at its second turn:
    its return is bootstrapped from the critic's value, which reward functions never see."""
    seen = []

    def recording_reward(turns):
        seen.extend(t.info for t in turns)
        return [t.env_reward for t in turns]

    cfg = small_config(tiny_model_path("qwen2"), tmp_path, num_steps=3, minibatch_size=3,
                       env_kwargs={"verify_iter": 1})
    trainer = PPOTrainer(cfg, reward_fn=recording_reward)
    buffer, _ = trainer.rollout(0)
    buffer.rewards = trainer.score_rewards(buffer)
    cut = buffer.truncated
    assert cut.any(), "no episode was truncated; the test needs one"
    assert (buffer.bootstrap_values[cut] != 0).all() and (buffer.bootstrap_values[~cut] == 0).all()
    # Cut or not, every turn's info holds the env's keys and nothing else.
    assert len(seen) == buffer.size and {frozenset(i) for i in seen} == {frozenset(seen[0])}, seen
    assert {"verdict", "feedback", "success"} <= set(seen[0]) and not any(k.startswith("_") for k in seen[0])


def test_explained_variance_and_only_metrics_are_logged(tiny_model_path, tmp_path):
    trainer = PPOTrainer(small_config(tiny_model_path("qwen2"), tmp_path, num_steps=3, minibatch_size=3,
                                      env_kwargs={"verify_iter": 1}))
    buffers, logged = [], []
    compute_advantages, log = trainer.compute_advantages, trainer.metrics.log

    def keep_buffer(buffer):
        compute_advantages(buffer)
        buffers.append(buffer)

    trainer.compute_advantages = keep_buffer
    trainer.metrics.log = lambda step, metrics: (logged.append(dict(metrics)), log(step, metrics))
    trainer.train()
    (metrics,) = logged
    groups = ("env/", "losses/", "ppo/", "perf/", "compute/", "verdicts/")
    assert all(k.startswith(groups) for k in metrics), sorted(metrics)
    assert all(type(v) is float for v in metrics.values()), metrics
    values, returns = (np.asarray(t, dtype=np.float64).ravel() for t in (buffers[0].values, buffers[0].returns))
    assert np.var(returns) > 0
    expected = 1 - np.var(returns - values) / np.var(returns)
    assert metrics["ppo/explained_variance"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert (metrics["ppo/epochs"], metrics["ppo/stopped_early"]) == (1.0, 0.0)


@pytest.mark.parametrize(("target_kl", "epochs"), [(None, 3), (1e-12, 1)])
def test_target_kl_stops_the_epochs_early(tiny_model_path, tmp_path, target_kl, epochs):
    """After the first step the policy has moved (approx_kl > 0): a tiny target stops after one epoch."""
    cfg = small_config(tiny_model_path("qwen2"), tmp_path, ppo_epochs=3, minibatch_size=2, target_kl=target_kl,
                       learning_rate=1e-2)
    trainer = PPOTrainer(cfg)
    trainer.train()
    (record,) = read_metrics(tmp_path / "metrics.jsonl")
    assert record["ppo/epochs"] == epochs and record["ppo/stopped_early"] == float(epochs < 3)
    assert record["ppo/approx_kl"] > 1e-12
    assert trainer.engine.optimizer_steps == epochs * 2  # 4 turns in minibatches of 2


NORMALISE_IN_TWO_PROCESSES = r"""
import sys
import torch, torch.distributed as dist
from trainers.ppo import core
from trainers.ppo.ppo_trainer import _all_reduce, _reduce_means
dist.init_process_group("gloo")
rank = dist.get_rank()
data = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0)) * 3 + 1
whole = core.normalize_advantages(data)
mine = core.normalize_advantages(data[rank], all_reduce=_all_reduce())
assert torch.allclose(mine, whole[rank], atol=1e-6), (mine, whole[rank])
ev = core.explained_variance(data[rank] * 0.5, data[rank], all_reduce=_all_reduce())
assert torch.isclose(ev, core.explained_variance(data * 0.5, data), rtol=1e-5)
assert _reduce_means({"x": (float(rank + 1), 1 + rank)}) == {"x": 1.0}
sys.stdout.write(f"same {rank}\n")  # one write: the two processes share the pipe
sys.stdout.flush()
dist.barrier()
dist.destroy_process_group()  # a group left open can abort the process at exit
"""


@pytest.mark.slow
def test_two_processes_normalise_advantages_as_one_would(tmp_path):
    """The real all-reduce (gloo, two processes) gives each process its shard of the one-process result."""
    script = tmp_path / "normalise.py"
    script.write_text(NORMALISE_IN_TWO_PROCESSES)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(launch, env=command_env(), capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same 0" in done.stdout and "same 1" in done.stdout, done.stdout


# --------------------------------------------------------------------- resume
class Crash(RuntimeError):
    pass


def test_resume_continues_update_count_and_metrics(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    cfg = small_config(tiny_model_path("qwen2"), out, total_updates=3, save_every=1)

    calls = {"n": 0}

    def crash_in_third_update(turns):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("killed")
        return [t.env_reward for t in turns]

    with pytest.raises(Crash):
        PPOTrainer(cfg, reward_fn=crash_in_third_update).train()
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["update-00001", "update-00002"]
    # A kill can land after the logs of an update and before its checkpoint, or mid-write.
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "env/turn_reward": 9.0}) + "\n" + '{"step": 4, "env/tu')
    with (out / "samples.jsonl").open("a") as f:
        f.write(json.dumps({"update": 3, "answer": "lost"}) + "\n" + '{"update": 4')

    with pytest.raises(ConfigError, match="written with deepspeed none; resume with the same deepspeed"):
        PPOTrainer(small_config(tiny_model_path("qwen2"), out, total_updates=3, resume=True, deepspeed="zero3"))
    resumed = PPOTrainer(small_config(tiny_model_path("qwen2"), out, total_updates=3, save_every=1, resume=True))
    assert resumed.start_update == 2
    assert resumed.compute.train_tokens > 0
    resumed.train()
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["update"] for s in samples] == [1, 1, 2, 2, 3, 3] and "lost" not in [s["answer"] for s in samples]

    # An uninterrupted run does the same third update (same seeds, same data).
    fresh_out = tmp_path / "fresh"
    PPOTrainer(small_config(tiny_model_path("qwen2"), fresh_out, total_updates=3)).train()
    a = read_metrics(out / "metrics.jsonl")[-1]
    b = read_metrics(fresh_out / "metrics.jsonl")[-1]
    assert a["env/turn_reward"] == b["env/turn_reward"]
    assert math.isclose(a["losses/value"], b["losses/value"], rel_tol=1e-4)


def test_a_fresh_run_never_mixes_with_an_earlier_one(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    # Killed before its first checkpoint: a fresh start drops its records.
    (out).mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "env/turn_reward": 9.0}) + "\n")
    (out / "samples.jsonl").write_text(json.dumps({"update": 1, "answer": "old"}) + "\n")
    PPOTrainer(small_config(tiny_model_path("qwen2"), out)).train()
    (record,) = read_metrics(out / "metrics.jsonl")
    assert record["env/turn_reward"] != 9.0
    assert "old" not in (out / "samples.jsonl").read_text()
    # With checkpoints there, only --resume may start (a later resume would pick the old ones).
    with pytest.raises(ConfigError, match="holds checkpoints of an earlier run .*pass --resume"):
        PPOTrainer(small_config(tiny_model_path("qwen2"), out))


def test_nan_loss_stops_with_last_checkpoint_intact(tiny_model_path, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = small_config(tiny_model_path("qwen2"), out, total_updates=3, save_every=1)
    trainer = PPOTrainer(cfg)
    from trainers.ppo import core

    real_value_loss = core.value_loss
    updates = {"n": 0}
    original_advantages = trainer.compute_advantages

    def advantages_then_poison(buffer):
        updates["n"] += 1
        if updates["n"] == 2:
            monkeypatch.setattr(
                core, "value_loss", lambda *a, **k: real_value_loss(*a, **k)._replace(loss=torch.tensor(float("nan")))
            )
        return original_advantages(buffer)

    trainer.compute_advantages = advantages_then_poison
    with pytest.raises(FloatingPointError, match="loss is nan"):
        trainer.train()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["update-00001"]
    resumed = PPOTrainer(small_config(tiny_model_path("qwen2"), out, total_updates=3, resume=True))
    assert resumed.start_update == 1


def test_bad_reward_values_are_refused(tiny_model_path, tmp_path):
    trainer = PPOTrainer(small_config(tiny_model_path("qwen2"), tmp_path), reward_fn=lambda t: [float("inf")] * len(t))
    with pytest.raises(FloatingPointError, match="reward function returned inf"):
        trainer.train()


# --------------------------------------------------------------------- config
def test_every_setting_is_documented():
    assert all(help_text for help_text in help_of(PPOConfig).values())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"minibatch_size": 3, "micro_batch_size": 2}, "multiple of micro_batch_size"),
        ({"num_envs": 3, "num_steps": 3, "minibatch_size": 2, "micro_batch_size": 1}, "multiple of minibatch_size"),
        ({"clip_range": 1.5}, "clip_range"),
        ({"reward": "foo"}, "unknown reward"),
        ({"generation_backend": "warp"}, "generation_backend"),
        ({"offload_params": True, "deepspeed": "zero2"}, "offload_params needs"),
        ({"critic_model": "x"}, "critic=separate"),
        ({"lora": True, "lora_dropout": 1.0}, "lora_dropout in"),
        ({"target_kl": 0.0}, "target_kl must be a positive number"),
        ({"target_kl": float("nan")}, "target_kl must be a positive number"),
    ],
)
def test_invalid_settings_fail_with_what_to_change(settings, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(PPOConfig, settings)


EXAMPLE_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "examples" / "configs").glob("*_ppo.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_configs_follow_the_paper_and_can_start(path, tiny_model_path, monkeypatch):
    """The paper's PPO settings (REFERENCE section 3), and every check short of loading weights passes."""
    from trainers.common.config import resolve_config

    cfg = resolve_config(PPOConfig, config_file=path)
    assert (cfg.clip_range, cfg.value_clip_range, cfg.ppo_epochs) == (0.1, 0.1, 4)
    assert (cfg.gamma, cfg.gae_lambda, cfg.thought_weight) == (0.9, 0.95, 0.5)
    assert (cfg.adam_eps, cfg.max_grad_norm, cfg.temperature, cfg.max_new_tokens) == (1e-7, 0.01, 0.2, 512)
    assert cfg.batch_size == 256 and cfg.normalize_advantages
    assert cfg.learning_rate == (1e-7 if cfg.env_id == "VIRL-VL-v0" else 1e-6)
    assert cfg.kl_coef == 0 and cfg.entropy_coef == 0 and cfg.deepspeed == "zero3"
    assert path.name.startswith({"GeneralPoints-L-v0": "gp_l", "GeneralPoints-VL-v0": "gp_vl",
                                 "VIRL-L-v0": "virl_l", "VIRL-VL-v0": "virl_vl"}[cfg.env_id])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    family = "llava" if "-VL-" in cfg.env_id else "qwen2"
    dataclasses.replace(cfg, model=str(tiny_model_path(family))).check_runnable()


def test_example_configs_cover_the_four_tasks():
    from trainers.common.config import resolve_config

    envs = {resolve_config(PPOConfig, config_file=p).env_id for p in EXAMPLE_CONFIGS}
    assert envs == {"GeneralPoints-L-v0", "GeneralPoints-VL-v0", "VIRL-L-v0", "VIRL-VL-v0"}


def test_unknown_and_mistyped_yaml_settings(tmp_path):
    with pytest.raises(ConfigError, match="did you mean learning_rate"):
        config_from_dict(PPOConfig, {"learning_rat": 1e-5}, source="x.yaml")
    with pytest.raises(ConfigError, match="expected an integer"):
        config_from_dict(PPOConfig, {"num_envs": "four"})


def test_cli_rejects_bad_settings_before_loading_anything(tmp_path):
    (tmp_path / "bad.yaml").write_text("num_envs: 2\nnum_stepz: 3\n")
    out = run_gengym("ppo", "--config", str(tmp_path / "bad.yaml"), "--model", "m")
    assert out.returncode == 2
    assert "num_stepz" in out.stderr and "did you mean num_steps" in out.stderr
    out = run_gengym("ppo", "--reward", "foo", "--model", "m")
    assert out.returncode == 2 and "unknown reward" in out.stderr
    out = run_gengym("ppo", "--env", "Nope-v0", "--model", str(tmp_path / "none"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown gengym env 'Nope-v0'" in out.stderr and "is not a folder" in out.stderr


def test_progress_postfix_shows_a_dash_when_no_episode_ended():
    ended = progress_postfix({"env/turn_reward": -1.5, "env/return": 3.0, "env/success_rate": 0.25})
    assert ended == {"reward": "-1.50", "ret": "3.00", "succ": "0.25"}
    none_ended = progress_postfix({"env/turn_reward": -1.0, "env/return": math.nan, "env/success_rate": math.nan})
    assert none_ended == {"reward": "-1.00", "ret": "-", "succ": "-"}


def test_a_single_process_group_gives_its_chosen_port_back_to_the_environment():
    """A port init_distributed picked itself is not left for child commands (they would bind it too);
    one the launcher set stays."""
    script = (
        "import os; from trainers.common.engine import init_distributed; "
        "print(init_distributed('gloo'), os.environ.get('MASTER_PORT'))"
    )
    env = command_env()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "None"
    assert "(0, 0, 1)" in done.stdout
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    done = subprocess.run(
        [sys.executable, "-c", script], env={**env, "MASTER_PORT": port}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == port
