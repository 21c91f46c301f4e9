"""The PPO critic: a small MLP on the policy's hidden state at the last prompt token.

The paper's critic is a value head on the policy itself: it reads the last
hidden state of the last prompt token, so it sees exactly the image and text
the policy saw before answering, and costs no second model. This module holds
that head, the helper that finds the right hidden state under left or right
padding, a config-agnostic way to read the hidden size of any Hugging Face
text or vision-language model, and save/load that never unpickles.

Design decisions:

* **Input normalisation.** Hidden states of different LMs differ in scale by
  orders of magnitude (a few large "outlier" dimensions are common), so the
  head starts with a ``LayerNorm``. One head then works for every model
  without tuning its init or learning rate per family.
* **Small output init.** The last layer's weights are drawn with standard
  deviation ``init_scale / sqrt(fan_in)`` (default 0.01) and zero bias, so the
  first values are close to 0 -- the middle of the reward range -- and early
  value errors do not dominate the first updates. Hidden layers use
  orthogonal init with ReLU gain, as in cleanrl.
* **float32 by default.** The head is tiny (about ``hidden_size * 1024``
  weights), and value targets need more precision than bfloat16's 8 bits of
  mantissa give near the paper's value clip of 0.1. Hidden states are cast to
  the head's dtype on the way in and values are returned in float32 whatever
  the head's dtype, so a head cast to bfloat16 by an engine (DeepSpeed's
  ``bf16`` mode casts the whole wrapped module) still works.
* **Construction.** Build the head outside ``deepspeed.zero.Init``: its init
  writes into the weights, which must not be partitioned yet. Under ZeRO-3,
  gather the parameters before :func:`save_value_head`.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ValueHead",
    "ValueHeadConfig",
    "hidden_size_of",
    "last_token_hidden",
    "last_token_index",
    "load_value_head",
    "save_value_head",
]

_FORMAT = "gengym-value-head"
_FORMAT_VERSION = "1"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Attribute names of sub-configs that may hold the language model's settings,
#: tried after ``get_text_config``; any name containing "text" also qualifies.
_TEXT_CONFIG_NAMES = ("text_config", "llm_config", "language_config", "decoder", "generator")
#: Names the hidden width goes by in different configs.
_HIDDEN_SIZE_NAMES = ("hidden_size", "n_embd", "d_model", "dim")


@dataclass
class ValueHeadConfig:
    """Shape and init of the value head.

    Attributes:
        hidden: Width of the MLP's hidden layer; ``0`` makes the head linear.
        layer_norm: Normalise the input hidden state first (see module docs).
        init_scale: Output-layer weights are drawn with std
            ``init_scale / sqrt(fan_in)``.
        dtype: Parameter dtype: ``"float32"`` (default), ``"bfloat16"`` or
            ``"float16"``.
    """

    hidden: int = 1024
    layer_norm: bool = True
    init_scale: float = 0.01
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` saying what to change."""
        if not isinstance(self.hidden, int) or isinstance(self.hidden, bool) or self.hidden < 0:
            raise ValueError(f"hidden must be an int >= 0 (0 = linear head), got {self.hidden!r}")
        if not isinstance(self.init_scale, (int, float)) or not math.isfinite(self.init_scale):
            raise ValueError(f"init_scale must be a finite number, got {self.init_scale!r}")
        if self.init_scale < 0:
            raise ValueError(f"init_scale must be >= 0, got {self.init_scale}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.layer_norm, bool):
            raise ValueError(f"layer_norm must be a bool, got {self.layer_norm!r}")


class ValueHead(nn.Module):
    """``[..., hidden_size]`` hidden states to ``[...]`` float32 values.

    Args:
        hidden_size: Width of the policy's hidden states; see
            :func:`hidden_size_of`.
        config: Shape and init; defaults to :class:`ValueHeadConfig()`.

    Example:
        >>> head = ValueHead(8, ValueHeadConfig(hidden=4))
        >>> head(torch.randn(3, 8)).shape
        torch.Size([3])
    """

    def __init__(self, hidden_size: int, config: ValueHeadConfig | None = None) -> None:
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        self.hidden_size = hidden_size
        self.config = config if config is not None else ValueHeadConfig()
        self.config.validate()
        cfg = self.config
        layers: list[nn.Module] = []
        if cfg.layer_norm:
            layers.append(nn.LayerNorm(hidden_size))
        width = hidden_size
        if cfg.hidden > 0:
            layers += [nn.Linear(hidden_size, cfg.hidden), nn.ReLU()]
            width = cfg.hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()
        self.to(_DTYPES[cfg.dtype])

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re)draw the weights as described in the module docs."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        for layer in linears[:-1]:
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0))
            nn.init.zeros_(layer.bias)
        out = linears[-1]
        nn.init.normal_(out.weight, std=self.config.init_scale / math.sqrt(out.in_features))
        nn.init.zeros_(out.bias)
        for module in self.net:
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    @property
    def param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, hidden_states: Tensor) -> Tensor:
        """Values of ``hidden_states`` (``[..., hidden_size]``), as float32 ``[...]``."""
        if hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"expected hidden states of width {self.hidden_size}, got {hidden_states.shape[-1]}"
            )
        return self.net(hidden_states.to(self.param_dtype)).squeeze(-1).float()

    @classmethod
    def for_model_config(cls, model_config: Any, config: ValueHeadConfig | None = None) -> ValueHead:
        """A head sized for a model, from its (possibly nested) config."""
        return cls(hidden_size_of(model_config), config)


# --------------------------------------------------------------------------
# Reading the hidden size from any model config
# --------------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _sub_configs(obj: Any) -> list[tuple[str, Any]]:
    """(name, value) pairs of ``obj`` that look like nested configs.

    Only dicts, ``SimpleNamespace`` objects and config-like objects (with
    ``to_dict``) are followed, so the search never wanders into arbitrary
    objects a config may reference.
    """
    items = obj.items() if isinstance(obj, Mapping) else getattr(obj, "__dict__", {}).items()
    return [
        (str(name), value)
        for name, value in items
        if isinstance(value, (Mapping, SimpleNamespace)) or hasattr(value, "to_dict")
    ]


def _own_hidden_size(obj: Any) -> int | None:
    for name in _HIDDEN_SIZE_NAMES:
        value = _get(obj, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def hidden_size_of(config: Any) -> int:
    """Width of the language model's hidden states, for any HF model config.

    Vision-language configs nest the language model's settings (Mllama, LLaVA,
    Idefics: ``text_config``; others ``llm_config``...), and the top-level or
    vision sub-config may carry a different ``hidden_size``. The lookup,
    without any per-architecture branch:

    1. ``config.get_text_config(decoder=True)`` when the config has it (every
       ``transformers`` config does): the sub-config that produces text;
    2. that config's own width (``hidden_size``, ``n_embd``, ``d_model``, ``dim``);
    3. otherwise a breadth-first search through nested sub-configs (objects or
       plain dicts such as a parsed ``config.json``), visiting those whose name
       is a known language-model name or contains ``"text"`` first.

    Args:
        config: A ``transformers`` config, any object with such attributes, or
            a dict.

    Returns:
        The hidden size.

    Raises:
        ValueError: No hidden size could be found.
    """
    start = config
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        try:
            start = get_text_config(decoder=True)
        except (TypeError, ValueError):  # ambiguous or unusual configs: search instead
            start = config
    queue: deque[Any] = deque([start, config])
    seen: set[int] = set()
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        size = _own_hidden_size(node)
        if size is not None:
            return size
        subs = _sub_configs(node)
        text_like = [v for n, v in subs if n in _TEXT_CONFIG_NAMES or "text" in n.lower()]
        others = [v for n, v in subs if not (n in _TEXT_CONFIG_NAMES or "text" in n.lower())]
        queue.extend(text_like + others)
    raise ValueError(
        f"could not find the hidden size in {type(config).__name__}: looked for "
        f"{', '.join(_HIDDEN_SIZE_NAMES)} in it and its nested configs"
    )


# --------------------------------------------------------------------------
# Picking the last real token
# --------------------------------------------------------------------------


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last non-padding position of each row of ``[B, L]``.

    Works for left padding (always ``L - 1``), right padding (``length - 1``)
    and any other layout, because it looks for the last ``1`` rather than
    counting ones.

    Raises:
        ValueError: A row has no non-padding position.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq_len], got {tuple(attention_mask.shape)}")
    present = attention_mask != 0
    if not bool(present.any(dim=-1).all()):
        raise ValueError("a row of attention_mask has no non-padding token")
    length = attention_mask.shape[-1]
    from_end = present.flip(-1).to(torch.int32).argmax(dim=-1)  # first 1 from the right
    return length - 1 - from_end


def last_token_hidden(hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
    """Hidden state of the last non-padding token of each row.

    To read the state at the last *prompt* token of a teacher-forced forward
    over ``[prompt | completion]``, pass the prompt part: ``hidden_states[:,
    :prompt_len]`` with the prompt's attention mask.

    Args:
        hidden_states: ``[B, L, H]``, e.g. ``outputs.hidden_states[-1]``.
        attention_mask: ``[B, L]``, 1 on real tokens, 0 on padding.

    Returns:
        ``[B, H]``.

    Example:
        >>> h = torch.arange(6.0).reshape(2, 3, 1)
        >>> last_token_hidden(h, torch.tensor([[0, 1, 1], [1, 1, 0]])).squeeze(-1).tolist()
        [2.0, 4.0]
    """
    if hidden_states.dim() != 3 or hidden_states.shape[:2] != attention_mask.shape:
        raise ValueError(
            f"hidden_states {tuple(hidden_states.shape)} must be [batch, seq_len, hidden] "
            f"matching attention_mask {tuple(attention_mask.shape)}"
        )
    index = last_token_index(attention_mask).to(hidden_states.device)
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    return hidden_states[rows, index]


# --------------------------------------------------------------------------
# Save / load without pickle
# --------------------------------------------------------------------------


def save_value_head(head: ValueHead, path: str | os.PathLike[str]) -> None:
    """Write the head's weights and shape to a ``.safetensors`` file.

    The file holds plain tensors plus string metadata (hidden size and
    :class:`ValueHeadConfig` as JSON), so loading it executes nothing. Under
    ZeRO-3 call this inside ``deepspeed.zero.GatheredParameters(head.parameters())``
    on one rank.
    """
    from safetensors.torch import save_file

    tensors = {name: t.detach().contiguous().cpu() for name, t in head.state_dict().items()}
    metadata = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "hidden_size": str(head.hidden_size),
        "config": json.dumps(asdict(head.config)),
    }
    save_file(tensors, os.fspath(path), metadata=metadata)


def read_value_head_config(path: str | os.PathLike[str]) -> tuple[int, ValueHeadConfig]:
    """``(hidden_size, config)`` of a head saved by :func:`save_value_head`, from its metadata alone.

    Reads no tensors, so a run can check a starting head before loading anything.

    Raises:
        ValueError: The file is not a readable gengym value head.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if metadata.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a gengym value head (metadata format {metadata.get('format')!r})")
    if metadata.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported value head version {metadata.get('format_version')!r}")
    try:
        hidden_size = int(metadata["hidden_size"])
        fields = json.loads(metadata["config"])
        if not isinstance(fields, dict) or set(fields) - set(ValueHeadConfig.__dataclass_fields__):
            raise ValueError("unexpected config fields")
        return hidden_size, ValueHeadConfig(**fields)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: value head metadata do not fit: {err}") from err


def load_value_head(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ValueHead:
    """Rebuild a head saved by :func:`save_value_head`.

    The metadata is parsed as JSON and validated, the head is rebuilt from it,
    and the weights are loaded strictly (every tensor present, shapes equal).

    Raises:
        ValueError: The file is not a value head, or its contents do not fit.
    """
    from safetensors import SafetensorError, safe_open

    hidden_size, config = read_value_head_config(path)
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        head = ValueHead(hidden_size, config)
        head.load_state_dict(tensors, strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: value head metadata or weights do not fit: {err}") from err
    return head.to(device)
