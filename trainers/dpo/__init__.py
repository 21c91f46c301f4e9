"""DPO on preference pairs from a gengym env, for any Hugging Face VLM or text LM.

* :mod:`trainers.dpo.dpo_config` -- :class:`GengymDPOConfig` (imports nothing heavy);
* :mod:`trainers.dpo.dpo_trainer` -- :func:`train_dpo`, TRL's ``DPOTrainer``
  extended through its hooks (a collator that renders every pair with the
  model's own template and processor and never truncates image tokens;
  compute bookkeeping for the paper's FLOPs axis);
* :mod:`trainers.dpo.cli` -- the ``gengym dpo`` command.

Example:
    >>> from trainers.dpo import GengymDPOConfig
    >>> GengymDPOConfig(env_id="GeneralPoints-L-v0", model="path/to/checkpoint").beta
    0.1
"""

from trainers.dpo.dpo_config import GengymDPOConfig

__all__ = ["GengymDPOConfig", "train_dpo"]


def train_dpo(config: GengymDPOConfig):
    """Run DPO and return the final checkpoint folder; see :func:`trainers.dpo.dpo_trainer.train_dpo`."""
    from trainers.dpo.dpo_trainer import train_dpo as _train_dpo

    return _train_dpo(config)
