"""Models gengym ships inside the package, named by model specs like ``tiny:gp-l``.

Every command that takes ``--model`` (and every config's ``model`` field)
accepts ``tiny:NAME`` for a shipped model; :func:`resolve_model_spec` turns
it into the folder inside the installed package. (The experiment runner also
takes ``tiny:FAMILY`` for the random models it builds from code, such as
``tiny:qwen2``; see :mod:`trainers.testing.tiny_models`.)

``tiny:gp-l``
    A 0.87 M-parameter Llama trained from scratch by ``gengym pretrain`` on
    oracle play of ``GeneralPoints-L-compact-v0`` over many face-card rules
    and targets (the paper's OOD rule 11/12/13 never). Its folder holds the
    model (safetensors), the character tokenizer with its chat template,
    ``gengym_training.json`` (the compute record, with the exact command and
    settings) and ``training_log.jsonl``. Rebuild it with
    ``gengym pretrain --config examples/mini/pretrain.yaml --output-dir DIR``.

Example:
    >>> resolve_model_spec("tiny:gp-l") == str(shipped_model_path("gp-l"))
    True
    >>> resolve_model_spec("Qwen/Qwen2-VL-2B-Instruct")
    'Qwen/Qwen2-VL-2B-Instruct'
"""

from __future__ import annotations

from pathlib import Path

#: The prefix of built-in model specs.
SPEC_PREFIX = "tiny:"
#: Shipped model name -> its folder inside this package.
SHIPPED_MODELS: dict[str, str] = {"gp-l": "gp-l"}


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model.

    Raises:
        ValueError: ``name`` is not a shipped model.
    """
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED_MODELS)}")
    return Path(__file__).resolve().parent / SHIPPED_MODELS[name]


def is_shipped_spec(spec: str) -> bool:
    """Whether ``spec`` names a shipped model (``tiny:gp-l``)."""
    return isinstance(spec, str) and spec.startswith(SPEC_PREFIX) and spec[len(SPEC_PREFIX) :] in SHIPPED_MODELS


def resolve_model_spec(spec: str) -> str:
    """A shipped model's folder for ``tiny:NAME``; any other spec unchanged."""
    if is_shipped_spec(spec):
        return str(shipped_model_path(spec[len(SPEC_PREFIX) :]))
    return spec
