"""Load any Hugging Face VLM or text LM, with its processor, through the Auto classes.

gengym's trainers must run on whatever checkpoint a user names, so nothing
here knows a model family. Whether a checkpoint is a vision-language model is
read from its config: a config that ``AutoModelForImageTextToText`` can
instantiate is a VLM (loaded with ``AutoProcessor``), otherwise one that
``AutoModelForCausalLM`` can instantiate is a text LM (loaded with
``AutoTokenizer``). The image-text mapping is asked first because some
configs (Mllama, Gemma 3) are in both and would otherwise load as text-only
models without their vision tower.

Example:
    >>> from trainers.common.modeling import load_model_and_processor  # doctest: +SKIP
    >>> loaded = load_model_and_processor("HuggingFaceTB/SmolVLM-256M-Instruct")  # doctest: +SKIP
    >>> loaded.is_vision, type(loaded.processor).__name__  # doctest: +SKIP
    (True, 'Idefics3Processor')
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``dtype`` names accepted by :func:`load_model_and_processor` besides torch dtypes.
DTYPE_NAMES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A model with what turns chat into its inputs.

    Attributes:
        model: The ``PreTrainedModel`` (in eval mode, as ``from_pretrained``
            leaves it).
        processor: The ``ProcessorMixin`` of a VLM, or the tokenizer of a text
            LM. Both take conversations through ``apply_chat_template``;
            :func:`get_tokenizer` gets the tokenizer out of either.
        is_vision: Whether the model takes images.
        path: The path or hub id it was loaded from.
    """

    model: Any
    processor: Any
    is_vision: bool
    path: str

    @property
    def tokenizer(self) -> Any:
        """The tokenizer inside :attr:`processor`."""
        return get_tokenizer(self.processor)

    def __iter__(self):
        """Unpack as ``model, processor, is_vision = load_model_and_processor(...)``."""
        return iter((self.model, self.processor, self.is_vision))


def get_tokenizer(processor_or_tokenizer: Any) -> Any:
    """The tokenizer of a processor, or the argument itself if it is a tokenizer.

    Raises:
        TypeError: The object is neither a tokenizer nor holds one.
    """
    from transformers import PreTrainedTokenizerBase

    if isinstance(processor_or_tokenizer, PreTrainedTokenizerBase):
        return processor_or_tokenizer
    tokenizer = getattr(processor_or_tokenizer, "tokenizer", None)
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    raise TypeError(
        f"expected a tokenizer or a processor holding one, got {type(processor_or_tokenizer).__name__}"
    )


def is_vision_processor(processor_or_tokenizer: Any) -> bool:
    """Whether this processor takes images (it has an image processor)."""
    return getattr(processor_or_tokenizer, "image_processor", None) is not None


def is_vision_config(config: Any) -> bool | None:
    """Classify a model config through the Auto mappings.

    Returns:
        ``True`` when ``AutoModelForImageTextToText`` can build it, ``False``
        when only ``AutoModelForCausalLM`` can, ``None`` when neither can.
        Remote-code configs are classified by the Auto classes their
        ``auto_map`` names.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
    )

    auto_map = getattr(config, "auto_map", None) or {}
    if (
        type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
        or "AutoModelForImageTextToText" in auto_map
    ):
        return True
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING or "AutoModelForCausalLM" in auto_map:
        return False
    return None


def auto_dtype_name(on_cuda: bool) -> str:
    """What a ``dtype`` of ``"auto"`` means for a model that only runs forward passes
    (evaluation, sampling, reward models, judges): bfloat16 on a GPU that has
    it, else float32."""
    import torch

    return "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else "float32"


#: What a checkpoint that needs its own code gets told (gengym never runs it without the flag).
REMOTE_CODE_HINT = (
    "gengym never runs a checkpoint's own code unless told to: pass --trust-remote-code "
    "(sft, dpo, reward-model) if you trust it"
)


def _local_config_has_auto_map(path: str) -> bool:
    import json

    try:
        return bool(json.loads((Path(path).expanduser() / "config.json").read_text()).get("auto_map"))
    except (OSError, ValueError, AttributeError):
        return False


def read_model_config(path: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    """A checkpoint's config (``AutoConfig``), never running its code unless ``trust_remote_code``.

    ``trust_remote_code`` is always passed on explicitly: left unset,
    transformers asks on the terminal whether to run a checkpoint's code
    (and runs it on ``y``); here a checkpoint that needs its code simply
    cannot be read.

    Raises:
        ConfigError: No readable config, or one that needs the checkpoint's
            own code (saying how to allow it).
    """
    from transformers import AutoConfig

    from trainers.common.config import ConfigError

    path = os.fspath(path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if not trust_remote_code and ("custom code" in str(err) or _local_config_has_auto_map(path)):
            raise ConfigError(
                f"{path!r} needs its own Python code to load (auto_map in its config); {REMOTE_CODE_HINT}"
            ) from None
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot read a model config at {path!r}: {first_line}") from err


@contextlib.contextmanager
def readable_weights(path: str) -> Iterator[None]:
    """Turn a damaged weights file met while loading ``path`` into a :class:`ConfigError` naming it.

    An empty or truncated ``*.safetensors`` (a copy or a save cut short)
    otherwise ends a command with safetensors' own traceback.
    """
    from safetensors import SafetensorError

    from trainers.common.config import ConfigError

    try:
        yield
    except SafetensorError as err:
        raise ConfigError(
            f"cannot load the weights in {path!r}: a .safetensors file there is empty, truncated or damaged "
            f"({err}); copy or save the checkpoint again"
        ) from None


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return "auto"
    if dtype in DTYPE_NAMES:
        return getattr(torch, dtype)
    raise ValueError(
        f"dtype must be a torch.dtype or one of {', '.join(DTYPE_NAMES)}; got {dtype!r}"
    )


def load_model_and_processor(
    path_or_id: str | os.PathLike[str],
    *,
    dtype: Any = "auto",
    device: Any = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
    **model_kwargs: Any,
) -> LoadedModel:
    """Load a checkpoint and its processor (VLM) or tokenizer (text LM).

    The tokenizer is made ready for batched generation, see
    :func:`prepare_tokenizer_for_generation`.

    Args:
        path_or_id: Local directory or Hugging Face hub id.
        dtype: ``"auto"`` (the checkpoint's own dtype), ``"float32"``,
            ``"bfloat16"``, ``"float16"`` or a ``torch.dtype``.
        device: Where to move the model (``"cpu"``, ``"cuda:0"``, a
            ``torch.device``); ``None`` leaves it where ``from_pretrained``
            puts it (the CPU), which is what DeepSpeed ZeRO-3 wants.
        trust_remote_code: Allow the checkpoint's own Python code (only for
            checkpoints you trust).
        chat_template: A Jinja chat template to use instead of the
            checkpoint's own (needed for base checkpoints that ship none).
        **model_kwargs: Passed on to the model's ``from_pretrained`` (e.g.
            ``attn_implementation="sdpa"``).

    Returns:
        A :class:`LoadedModel` (it also unpacks as ``model, processor,
        is_vision``).

    Raises:
        ValueError: No config can be read at ``path_or_id`` (a ``ConfigError``,
            as for a checkpoint that needs its own code without
            ``trust_remote_code``, or damaged weights), or neither Auto model
            class fits it, or a VLM comes without an image processor, or
            there is no chat template.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    path = os.fspath(path_or_id)
    config = read_model_config(path, trust_remote_code=trust_remote_code)

    is_vision = is_vision_config(config)
    if is_vision is None:
        raise ValueError(
            f"{path!r} has a {type(config).__name__} (model_type {config.model_type!r}), which neither "
            "AutoModelForImageTextToText nor AutoModelForCausalLM can load; gengym trains generative "
            "vision-language or text models only"
        )
    model_class = AutoModelForImageTextToText if is_vision else AutoModelForCausalLM
    with readable_weights(path):
        model = model_class.from_pretrained(
            path, dtype=_resolve_dtype(dtype), trust_remote_code=trust_remote_code, **model_kwargs
        )
    if device is not None:
        model = model.to(device)

    if is_vision:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        if not is_vision_processor(processor):
            raise ValueError(
                f"{path!r} is a vision-language model ({type(model).__name__}) but AutoProcessor found no "
                f"image processor there (got {type(processor).__name__}); save the processor with the model"
            )
    else:
        processor = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer = get_tokenizer(processor)
    if chat_template is not None:
        processor.chat_template = chat_template
        tokenizer.chat_template = chat_template
    if processor.chat_template is None:
        raise ValueError(
            f"{path!r} has no chat template; gengym builds every prompt with the model's own template "
            "(use an instruct/chat checkpoint or pass chat_template=...)"
        )
    prepare_tokenizer_for_generation(tokenizer)
    if (
        getattr(model, "generation_config", None) is not None
        and model.generation_config.pad_token_id is None
    ):
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, processor=processor, is_vision=is_vision, path=path)


def prepare_tokenizer_for_generation(tokenizer: Any) -> Any:
    """Left padding, and a pad token when the tokenizer has none.

    Why: decoder-only models continue from the last position of each row, so
    in a batch of prompts of different lengths the padding must go on the
    left or the model would generate after pad tokens. Padding needs a pad
    id; when a checkpoint has none the EOS token stands in: the attention
    mask hides padded positions, so which id fills them does not matter, and
    reusing EOS adds no untrained embedding row. (Code that must tell a
    generated EOS from padding looks at positions, not ids; see
    :func:`trainers.common.inputs.append_completions`.)

    Returns:
        The same tokenizer, changed in place.

    Raises:
        ValueError: The tokenizer has neither a pad nor an EOS token.
    """
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has neither a pad nor an EOS token; set tokenizer.pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def eos_token_ids(model: Any, processor_or_tokenizer: Any) -> list[int]:
    """Every token id that ends a generated answer, without duplicates.

    The union of the model's ``generation_config.eos_token_id`` (an int or a
    list: chat models often stop on several, e.g. end-of-turn and
    end-of-text) and the tokenizer's EOS token.
    """
    ids: list[int] = []
    config_ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(config_ids, int):
        ids.append(config_ids)
    elif isinstance(config_ids, Sequence):
        ids.extend(int(i) for i in config_ids)
    tokenizer_eos = get_tokenizer(processor_or_tokenizer).eos_token_id
    if tokenizer_eos is not None:
        ids.append(int(tokenizer_eos))
    return list(dict.fromkeys(ids))


def forget_load_renames(model: Any) -> None:
    """Make ``save_pretrained`` write standard weight names for a ZeRO-3-loaded model.

    transformers 5 records on each loaded model which checkpoint renamings it
    applied, and ``save_pretrained`` reverts exactly those. A model loaded
    under ZeRO-3 partitioning records the family's whole list instead (legacy
    renamings included), and reverting all of them writes doubled names such
    as ``language_model.model.model.*``; ``from_pretrained`` still maps those
    back, but other tools reading the files would not. Dropping the record
    makes ``save_pretrained`` revert the family's standard renamings, which is
    what a model loaded without DeepSpeed writes.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "_weight_conversions", None) is not None:
        base._weight_conversions = None
