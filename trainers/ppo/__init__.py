"""Multi-turn PPO for gengym envs.

Importing this package imports nothing heavy; the pieces live in modules:

* :mod:`trainers.ppo.core` -- the PPO math as pure tensor functions: GAE over
  env turns, advantage normalisation, clipped policy and value losses, KL
  estimators, chunked log-probs and entropy, the cosine LR multiplier;
* :mod:`trainers.ppo.value_head` -- the critic: an MLP on the policy's hidden
  state at the last prompt token, with safe save/load;
* :mod:`trainers.ppo.buffer` -- one update's turns as tensors with explicit fields;
* :mod:`trainers.ppo.models` -- policy, critic, KL reference and engine, built apart from the loop;
* :mod:`trainers.ppo.ppo_config` -- the trainer's settings;
* :mod:`trainers.ppo.ppo_trainer` -- the loop.
"""
