"""Trainers for gengym envs: SFT, PPO and what they share.

This package is the only part of gengym that uses torch, transformers, trl,
deepspeed, accelerate, peft or datasets, and it imports them only inside the
modules that need them: ``import trainers`` itself stays light, so that the
command line and the env packages can name trainer configs without paying
for (or requiring) the training stack.

Layout:

* :mod:`trainers.common.modeling` -- load any Hugging Face VLM or text LM
  (and its processor) through the Auto classes;
* :mod:`trainers.common.inputs` -- gengym chat conversations to model
  tensors: left-padded prompts for generation, generated completions appended
  for teacher-forced scoring, SFT labels on assistant tokens only;
* :mod:`trainers.testing.tiny_models` -- tiny random-weight models of several
  VLM families (and a text LM), built offline from code, for tests and the
  demo.
"""
