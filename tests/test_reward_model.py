"""Reward models (trainers.reward_model) and the reward-model:PATH reward of PPO, with tiny models on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import (  # noqa: E402
    REPO,
    SMALL_GP_VL,
    gengym_command,
    run_command,
    run_gengym,
    tiny_ppo_config,
    tiny_run_config,
)
from safetensors.torch import load_file  # noqa: E402

from gengym_core.chat import assistant_message, message_text  # noqa: E402
from gengym_core.registry import make  # noqa: E402
from gym_generalpoints import GeneralPointsRewards  # noqa: E402
from trainers.common.compute import TRAINING_RECORD  # noqa: E402
from trainers.common.config import ConfigError, config_from_dict, help_of  # noqa: E402
from trainers.common.modeling import load_model_and_processor  # noqa: E402
from trainers.common.prompting import turn_prompt  # noqa: E402
from trainers.pairs.build import build_pairs_dataset, pair_conversations  # noqa: E402
from trainers.pairs.config import PairsConfig  # noqa: E402
from trainers.ppo.ppo_config import PPOConfig  # noqa: E402
from trainers.ppo.ppo_trainer import PPOTrainer  # noqa: E402
from trainers.reward_model import GengymRewardModelConfig  # noqa: E402
from trainers.reward_model.modeling import encode_for_scoring, load_reward_model, new_reward_model  # noqa: E402
from trainers.reward_model.reward_trainer import RewardCollator, train_reward_model  # noqa: E402
from trainers.rewards import Turn  # noqa: E402
from trainers.rewards.reward_model import RewardModelReward  # noqa: E402


def rm_config(model: Path, out: Path, **overrides) -> GengymRewardModelConfig:
    settings = dict(num_pairs=8, max_steps=2, per_device_batch_size=4, learning_rate=3e-3)
    return tiny_run_config(GengymRewardModelConfig, model, out, **{**settings, **overrides})


def pair_scores(model, processor, rows) -> tuple[torch.Tensor, torch.Tensor]:
    batch = RewardCollator(processor, None)(rows)
    with torch.no_grad():
        scores = model(**batch).logits.squeeze(-1)
    return scores[: len(rows)], scores[len(rows) :]


@pytest.fixture(scope="module")
def text_reward_model(tiny_model_path, tmp_path_factory):
    """A reward model trained on GP-L oracle pairs from tiny qwen2 (12 steps: every pair 6 times)."""
    out = tmp_path_factory.mktemp("rm") / "run"
    return train_reward_model(rm_config(tiny_model_path("qwen2"), out, max_steps=12))


def gp_l_pairs(n: int = 8):
    return build_pairs_dataset(PairsConfig(env_id="GeneralPoints-L-v0", num_pairs=n, progress_bar=False), progress=False)[0]


# ------------------------------------------------------------------ the model
@pytest.mark.parametrize(("family", "env_id"), [("qwen2", "GeneralPoints-L-v0"), ("llava", "GeneralPoints-VL-v0")])
def test_score_reads_the_last_real_token_whatever_the_padding(tiny_model, family, env_id):
    loaded = tiny_model(family)
    torch.manual_seed(0)
    model = new_reward_model(loaded.model).eval()
    kwargs = SMALL_GP_VL if "VL" in env_id else {}
    dataset = build_pairs_dataset(PairsConfig(env_id=env_id, num_pairs=2, env_kwargs=kwargs, progress_bar=False),
                                  progress=False)[0]
    short, _, images = pair_conversations(dataset[0])
    longer = short[:-1] + [assistant_message(message_text(short[-1]) + " and some more words at the end")]
    with torch.no_grad():
        alone = model(**encode_for_scoring(loaded.processor, [short], [images] if images else None, max_length=None))
        batch = encode_for_scoring(loaded.processor, [short, longer], [images, images] if images else None,
                                   max_length=None)
        together = model(**batch)
        # The head on the backbone's last hidden state at the final position, computed directly.
        out = loaded.model(**batch, output_hidden_states=True)
        direct = model.head(out.hidden_states[-1][:, -1])
    assert batch["attention_mask"][0, 0] == 0  # the short row is padded
    assert alone.logits.shape == (1, 1)
    torch.testing.assert_close(alone.logits[0], together.logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together.logits.squeeze(-1), direct, atol=1e-4, rtol=1e-4)


def test_text_reward_model_learns_to_rank_pairs_and_records_its_compute(text_reward_model, tiny_model_path):
    base = tiny_model_path("qwen2")
    rows = list(gp_l_pairs())
    loaded = load_reward_model(text_reward_model)
    chosen, rejected = pair_scores(loaded.model, loaded.processor, rows)
    assert float((chosen > rejected).float().mean()) >= 0.75, (chosen, rejected)

    before, after = load_file(base / "model.safetensors"), load_file(text_reward_model / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the backbone trained too
    # 6 N_RM (D_init + D_RM): 12 steps of 4 pairs = each of the 8 pairs 6 times.
    record = json.loads((text_reward_model / TRAINING_RECORD).read_text())
    processor = load_model_and_processor(base).processor
    tokens = 6 * sum(int(RewardCollator(processor, None)([row])["attention_mask"].sum()) for row in rows)
    assert record["train_tokens"] == tokens and record["num_params"] == loaded.num_params
    assert record["gflops"] == pytest.approx(6 * loaded.num_params * tokens / 1e9) == record["train_gflops"]


def test_vlm_reward_model_scores_turns_with_images(tiny_model_path, tmp_path):
    final = train_reward_model(
        rm_config(tiny_model_path("mllama"), tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL,
                  num_pairs=4)
    )
    reward = RewardModelReward(str(final), device="cpu", batch_size=3)
    env = make("GeneralPoints-VL-v0", **SMALL_GP_VL)
    obs, _ = env.reset(seed=0)
    messages, images = turn_prompt(env, obs, "observation")
    answers = [env.unwrapped.oracle_answer(), "no idea", '{"cards": [], "number": [], "formula": "1"}', ""]
    turns = [Turn("GeneralPoints-VL-v0", messages, images, a, env_reward=0.0) for a in answers]
    scores = reward(turns)
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    assert len(set(scores)) == 4  # the answer matters
    assert reward.compute.tokens > 0
    # A turn scored alone gets the score it got in the batch.
    assert reward(turns[1:2])[0] == pytest.approx(scores[1], abs=1e-4)


def test_a_text_backbone_on_image_pairs_fails_before_pairs_or_weights(tiny_model_path, tmp_path, monkeypatch):
    import trainers.pairs.build as pairs_build
    import trainers.reward_model.reward_trainer as reward_trainer

    def must_not_run(*args, **kwargs):
        raise AssertionError("the backbone's kind is known from its config and the env: nothing should be built")

    monkeypatch.setattr(pairs_build, "build_pairs_dataset", must_not_run)
    monkeypatch.setattr(reward_trainer, "load_model_and_processor", must_not_run)
    text = tiny_model_path("qwen2")
    with pytest.raises(ConfigError, match="text-only model but the pairs of GeneralPoints-VL-v0 hold images"):
        train_reward_model(rm_config(text, tmp_path / "run", env_id="GeneralPoints-VL-v0", env_kwargs=SMALL_GP_VL))
    with pytest.raises(ConfigError, match="unknown GeneralPoints option"):
        train_reward_model(rm_config(text, tmp_path / "run", env_kwargs={"bogus": 1}))
    monkeypatch.undo()
    # A pairs folder of image pairs is checked the same way, before the backbone loads.
    dataset, info = build_pairs_dataset(
        PairsConfig(env_id="GeneralPoints-VL-v0", num_pairs=2, env_kwargs=SMALL_GP_VL, progress_bar=False),
        progress=False,
    )
    pairs_build.save_pairs_dataset(dataset, info, tmp_path / "pairs")
    monkeypatch.setattr(reward_trainer, "load_model_and_processor", must_not_run)
    with pytest.raises(ConfigError, match="text-only model"):
        train_reward_model(rm_config(text, tmp_path / "run", env_id="", dataset=str(tmp_path / "pairs")))


def test_sequence_classifier_checkpoints_plug_in(tiny_model_path, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    base = tiny_model_path("qwen2")
    config = AutoConfig.from_pretrained(base, num_labels=1)
    classifier = AutoModelForSequenceClassification.from_config(config)
    classifier.save_pretrained(tmp_path / "seqcls")
    load_model_and_processor(base).processor.save_pretrained(tmp_path / "seqcls")
    reward = RewardModelReward(str(tmp_path / "seqcls"), device="cpu")
    turn = Turn("GeneralPoints-L-v0", [{"role": "user", "content": [{"type": "text", "text": "2 2 3 4"}]}], [], "x", 0.0)
    (score,) = reward([turn])
    assert isinstance(score, float)
    with pytest.raises(ValueError, match="not a reward model"):
        load_reward_model(base)  # a causal LM without a reward head
    # The spec check (before any model loads) accepts the classifier and refuses the causal LM.
    assert config_from_dict(PPOConfig, {"reward": f"reward-model:{tmp_path / 'seqcls'}"}).reward
    with pytest.raises(ConfigError, match="not a reward model"):
        config_from_dict(PPOConfig, {"reward": f"reward-model:{base}"})


# ------------------------------------------------------------------ PPO with the reward model
def ppo_config(policy: Path, out: Path, **overrides) -> PPOConfig:
    return tiny_ppo_config(policy, out, **{"log_samples": 4, **overrides})


def test_ppo_against_the_reward_model_updates_and_charges_its_compute(text_reward_model, tiny_model_path, tmp_path):
    policy = tiny_model_path("qwen2")
    spec = f"reward-model:{text_reward_model}"
    # One user message per turn, so that each logged prompt can be scored again below.
    trainer = PPOTrainer(ppo_config(policy, tmp_path / "rlhf", reward=spec, prompt_format="observation",
                                    reward_weights={"reward-model": 1.0, "env": 0.5}))
    with trainer.engine.full_state_dict() as state:
        before = {k: v.clone() for k, v in state.items()}
    trainer.train()
    with trainer.engine.full_state_dict() as state:
        assert any(not torch.equal(v, before[k]) for k, v in state.items() if k.startswith("policy."))

    # Each logged turn's reward is the reward model's score plus half the verifier's reward.
    model = load_reward_model(text_reward_model)
    table = GeneralPointsRewards()
    samples = [json.loads(line) for line in (tmp_path / "rlhf" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    for sample in samples:
        messages = [{"role": "user", "content": [{"type": "text", "text": sample["prompt"]}]}]
        batch = encode_for_scoring(model.processor, [messages + [assistant_message(sample["answer"])]], None,
                                   max_length=None)
        with torch.no_grad():
            score = float(model.model(**batch).logits)
        assert sample["reward"] == pytest.approx(score + 0.5 * table.for_verdict(sample["verdict"]), abs=1e-4)

    # The same run with the verifier's reward differs in compute by exactly the reward model's forwards.
    plain = PPOTrainer(ppo_config(policy, tmp_path / "env", prompt_format="observation"))
    plain.train()
    scoring = trainer.reward_fn.source.compute
    assert scoring.tokens > 0
    extra = trainer.compute.buffer_tokens - plain.compute.buffer_tokens
    assert extra == scoring.num_params * scoring.tokens // trainer.compute.num_params
    assert trainer.compute.flops - plain.compute.flops == pytest.approx(scoring.flops, rel=1e-3)


def test_folders_that_are_not_reward_models_fail_before_anything_loads(text_reward_model, tmp_path):
    run = text_reward_model.parent
    assert config_from_dict(PPOConfig, {"reward": f"reward-model:{text_reward_model}"}).reward
    with pytest.raises(ConfigError, match=f"a run folder; pass its final/ folder: reward-model:{run / 'final'}"):
        config_from_dict(PPOConfig, {"reward": f"reward-model:{run}"})
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "gengym_pairs.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds preference pairs"):
        config_from_dict(PPOConfig, {"reward": f"reward-model:{pairs}"})
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "gengym_reward_model.json").write_text((text_reward_model / "gengym_reward_model.json").read_text())
    with pytest.raises(ConfigError, match="no reward_head.safetensors"):
        config_from_dict(PPOConfig, {"reward": f"reward-model:{copy}"})
    # Through the command: exit code 2 and the message, no traceback.
    out = run_gengym("ppo", "--env", "GeneralPoints-L-v0", "--model", "m", "--reward", f"reward-model:{run}")
    assert out.returncode == 2 and "pass its final/ folder" in out.stderr and "Traceback" not in out.stderr


def test_a_text_reward_model_on_an_image_env_is_refused_before_anything_loads(text_reward_model, tiny_model_path,
                                                                              tmp_path):
    settings = {"env_id": "GeneralPoints-VL-v0", "env_kwargs": SMALL_GP_VL, "reward": f"reward-model:{text_reward_model}"}
    with pytest.raises(ConfigError, match="reward model .* is text-only and cannot see the env's images"):
        tiny_ppo_config(tiny_model_path("llava"), tmp_path / "run", **settings).check_runnable()


def test_bad_reward_model_specs_fail_before_anything_loads(tmp_path):
    for settings, message in [
        ({"reward": "reward-model"}, "needs a model path"),
        ({"reward": f"reward-model:{tmp_path / 'missing'}"}, "not a folder"),
        ({"reward": f"reward-model:{tmp_path}", "reward_weights": {"judge": 1.0}}, "unknown"),
        ({"reward": f"reward-model:{tmp_path}", "reward_weights": {"reward-model": 0, "env": 0}}, "all zero"),
        ({"reward": "env", "reward_weights": {"env": 2.0}}, "drop them"),
        ({"reward_device": "gpu7"}, "reward_device"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(PPOConfig, settings)


# ------------------------------------------------------------------ config and command
def test_every_setting_is_documented_and_checked():
    assert all(help_of(GengymRewardModelConfig).values())
    for settings, message in [
        ({"head_hidden": -1}, "head_hidden"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"dataset": "d", "variant": "rule-ood"}, "only shape generated pairs"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(GengymRewardModelConfig, settings)


def test_example_configs_load():
    from trainers.common.config import load_yaml

    configs = sorted((REPO / "examples" / "configs").glob("*_rm.yaml"))
    assert {p.name for p in configs} >= {"gp_l_rm.yaml", "gp_vl_rm.yaml"}
    for path in configs:
        assert config_from_dict(GengymRewardModelConfig, load_yaml(path), source=str(path)).env_id


def test_deepspeed_zero3_through_the_command_line(tiny_model_path, tmp_path):
    base = tiny_model_path("llava")
    out = tmp_path / "run"
    cmd = gengym_command(
        "reward-model", "--env", "GeneralPoints-VL-v0", "--env-kwarg",
        "image_size=[64,64]", "--model", str(base), "--output-dir", str(out), "--deepspeed", "zero3",
        "--max-steps", "2", "--num-pairs", "4", "--per-device-batch-size", "2", "--gradient-accumulation-steps",
        "1", "--learning-rate", "1e-3", "--no-tensorboard", "--no-progress-bar", "--warmup-ratio", "0",
    )
    returncode, stderr = run_command(cmd, timeout=600)
    assert returncode == 0, stderr[-3000:]
    final = out / "final"
    before, after = load_file(base / "model.safetensors"), load_file(final / "model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert load_reward_model(final).is_vision
    bad = run_gengym("reward-model", "--env", "GeneralPoints-L-v0")
    assert bad.returncode == 2 and "--model" in bad.stderr
