"""Pieces shared by every gengym environment family.

``gengym_core`` sits below the env packages (``gym_generalpoints``,
``gym_virl``) and the ``trainers`` package. It holds what all of them agree
on, so that a trainer written against one env family works with the others:

* :mod:`gengym_core.spaces` -- the text spaces for raw model answers and
  prompt observations;
* :mod:`gengym_core.answers` -- tolerant extraction of the JSON object a model
  answers with (code fences, trailing commas, single quotes, prose around it);
* :mod:`gengym_core.chat` -- chat messages in the format Hugging Face
  processors and TRL expect;
* :mod:`gengym_core.protocol` -- the methods every gengym env offers beyond
  the Gymnasium API (oracle answer, chat transcript, images);
* :mod:`gengym_core.wrappers` -- wrappers that work for every family.

Like the env packages it never imports torch, transformers, trl or deepspeed.
"""

__version__ = "0.1.0"
