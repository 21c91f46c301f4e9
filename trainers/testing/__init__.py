"""Things built from code for tests and the demo: tiny offline models.

Nothing here downloads anything. :mod:`trainers.testing.tiny_models` builds
real Hugging Face architectures with random weights, a small byte-level BPE
tokenizer and a chat template, and saves them like any user checkpoint, so
that every trainer can be exercised end to end on a CPU.
"""
