"""Evaluation: run an agent in gengym envs on the paper's ID and OOD variants.

The core (:mod:`trainers.eval.evaluate`, :mod:`trainers.eval.stats`) needs no
torch: the oracle and random baselines run on the base install. Only the
model agent (:class:`trainers.eval.agents.ModelAgent`) loads torch.
"""
