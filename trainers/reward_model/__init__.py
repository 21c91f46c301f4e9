"""Reward models for RLHF, trained on env preference pairs, for any Hugging Face VLM or text LM.

* :mod:`trainers.reward_model.reward_config` -- :class:`GengymRewardModelConfig`
  (imports nothing heavy);
* :mod:`trainers.reward_model.modeling` -- the reward model: any generative
  backbone plus a scalar head on the last token's hidden state; saving and
  loading (also of text sequence-classification reward models);
* :mod:`trainers.reward_model.reward_trainer` -- :func:`train_reward_model`,
  TRL's ``RewardTrainer`` extended through its hooks;
* :mod:`trainers.reward_model.cli` -- the ``gengym reward-model`` command.

PPO uses a trained reward model with ``--reward reward-model:PATH`` (see
:mod:`trainers.rewards.reward_model`).
"""

from trainers.reward_model.reward_config import GengymRewardModelConfig

__all__ = ["GengymRewardModelConfig", "train_reward_model"]


def train_reward_model(config: GengymRewardModelConfig):
    """Train a reward model; see :func:`trainers.reward_model.reward_trainer.train_reward_model`."""
    from trainers.reward_model.reward_trainer import train_reward_model as _train

    return _train(config)
