"""Preference pairs from a gengym env, and the ``gengym pairs`` command.

A pair is an env state (the prompt and images the policy would see) with a
*chosen* answer the env's verifier accepts there and a *rejected* answer it
refuses there: the training data of DPO (:mod:`trainers.dpo`) and of reward
models (:mod:`trainers.reward_model`). Pairs come from the env's oracle and
its wrong-answer sampler (one rejected answer per error category, in
rotation) or from a model's own samples labelled by the verifier, and every
pair is replayed in a fresh env before it is written.

* :mod:`trainers.pairs.config` -- :class:`PairsConfig` (imports nothing heavy);
* :mod:`trainers.pairs.build` -- building, storing, reading back and
  re-verifying pairs;
* :mod:`trainers.pairs.sampler` -- sampling answers from a model;
* :mod:`trainers.pairs.cli` -- ``gengym pairs``.

Importing this package does not import ``datasets`` or torch.
"""

from trainers.pairs.config import PairsConfig

__all__ = ["PairsConfig"]
