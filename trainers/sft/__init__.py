"""Supervised fine-tuning on oracle data, for any Hugging Face VLM or text LM.

* :mod:`trainers.sft.sft_config` -- :class:`GengymSFTConfig`, the settings
  with the paper's defaults (imports nothing heavy);
* :mod:`trainers.sft.sft_trainer` -- :func:`train_sft`, TRL's ``SFTTrainer``
  extended through its hooks (a collator that labels only assistant tokens
  and never truncates image tokens; compute bookkeeping for the paper's
  FLOPs axis);
* :mod:`trainers.sft.cli` -- the ``gengym sft`` command.

Example:
    >>> from trainers.sft import GengymSFTConfig
    >>> config = GengymSFTConfig(env_id="GeneralPoints-L-v0", model="path/to/checkpoint")
    >>> config.resolved_learning_rate(has_images=False)
    1e-06
"""

from trainers.sft.sft_config import GengymSFTConfig

__all__ = ["GengymSFTConfig", "train_sft"]


def train_sft(config: GengymSFTConfig):
    """Run SFT and return the final checkpoint folder; see :func:`trainers.sft.sft_trainer.train_sft`."""
    from trainers.sft.sft_trainer import train_sft as _train_sft

    return _train_sft(config)
