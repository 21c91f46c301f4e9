"""Pretraining a small model from scratch: the starting point of the CPU-scale experiment.

``gengym pretrain`` trains a Llama-style model of about 0.87 M parameters on
oracle play of GeneralPoints-L in its compact format over many face-card
rules and targets (:mod:`trainers.pretrain.data`), with a character
tokenizer built here (:mod:`trainers.pretrain.tokenizer`). The model gengym
ships as ``tiny:gp-l`` (see :mod:`trainers.models`) was made this way.
"""

from trainers.pretrain.pretrain_config import PretrainConfig

__all__ = ["PretrainConfig", "train_pretrain"]


def train_pretrain(config, **kwargs):
    """See :func:`trainers.pretrain.pretrain_trainer.train_pretrain` (imports torch)."""
    from trainers.pretrain.pretrain_trainer import train_pretrain as run

    return run(config, **kwargs)
