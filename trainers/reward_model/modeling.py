"""A reward model for any Hugging Face VLM or text LM: a scalar head on the last token's hidden state.

TRL's ``RewardTrainer`` expects an ``AutoModelForSequenceClassification``,
and most vision-language families have none (LLaVA, Mllama, Idefics3,
Qwen2-VL...). gengym therefore builds every reward model the same way,
whatever the family: the checkpoint is loaded through the same Auto classes
as the policy (:func:`~trainers.common.modeling.load_model_and_processor`,
so any checkpoint the trainers can train can become a reward model, the SFT
init checkpoint included), and a small head -- the PPO critic's
:class:`~trainers.ppo.value_head.ValueHead`, LayerNorm then linear by default
-- reads the final hidden state at the last real token of the rendered
conversation (prompt, answer and the template's end-of-turn), which has
attended to the whole prompt, images included, and to the whole answer.
The score is that head's output: one float per conversation.

On disk a reward model is a folder holding the backbone in Hugging Face
format (``from_pretrained`` loads it; its language-model head is kept,
unused), its processor or tokenizer, the head in ``reward_head.safetensors``
(plain tensors plus JSON metadata: loading executes nothing) and
``gengym_reward_model.json``. :func:`load_reward_model` also takes a text
``*ForSequenceClassification`` checkpoint with one label (e.g. trained with
TRL's own ``RewardTrainer``), so reward models from elsewhere plug in too.

Conversations are encoded for scoring with
:func:`encode_for_scoring`, in training and in the PPO loop alike, so the
model scores exactly the token layout it was trained on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.ppo.value_head import (
    ValueHead,
    ValueHeadConfig,
    last_token_hidden,
    load_value_head,
    save_value_head,
)
from trainers.reward_model.reward_config import REWARD_HEAD_FILE, REWARD_MODEL_FILE

_FORMAT = "gengym-reward-model"


def encode_for_scoring(
    processor: Any,
    conversations: Sequence[Sequence[dict[str, Any]]],
    images: Sequence[Sequence[Any]] | None,
    *,
    max_length: int | None,
) -> Any:
    """Whole conversations (ending with the answer) as model inputs, image tokens never truncated.

    The model's own chat template renders each conversation without a
    generation prompt, so it ends with the answer's end-of-turn, the token
    whose hidden state is scored.

    Raises:
        ValueError: Malformed conversations, images for a text model, or a
            row longer than ``max_length``.
    """
    from trainers.common.inputs import encode_prompts

    return encode_prompts(processor, conversations, images, add_generation_prompt=False, max_length=max_length)


class RewardModel(nn.Module):
    """A generative backbone and a scalar head: ``model(**inputs).logits`` is ``[B, 1]`` scores.

    Args:
        backbone: Any model loaded through the Auto classes.
        head: Maps the backbone's hidden size to one float.

    Behaves enough like a ``PreTrainedModel`` for TRL's ``RewardTrainer``
    (``config`` with ``num_labels = 1``, model tags, gradient checkpointing,
    ``main_input_name``); saving goes through :func:`save_reward_model`.
    """

    main_input_name = "input_ids"

    def __init__(self, backbone: nn.Module, head: ValueHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        backbone.config.num_labels = 1  # one score per sequence; TRL checks it

    @property
    def config(self) -> Any:
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        inputs.pop("use_cache", None)
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            **inputs,
            use_cache=False,
            output_hidden_states=True,
            logits_to_keep=1,  # the language-model head is not needed
        )
        hidden = last_token_hidden(out.hidden_states[-1], attention_mask)
        return SequenceClassifierOutput(logits=self.head(hidden).unsqueeze(-1))

    def add_model_tags(self, tags: Any) -> None:
        self.backbone.add_model_tags(tags)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)
        self.backbone.config.use_cache = False

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.gradient_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone, "is_gradient_checkpointing", False))


class _SequenceClassifierScorer(nn.Module):
    """A ``*ForSequenceClassification`` model with one label, behind the same interface."""

    main_input_name = "input_ids"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> Any:
        inputs.pop("use_cache", None)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **inputs)


def new_reward_model(backbone: nn.Module, *, head_hidden: int = 0) -> RewardModel:
    """A :class:`RewardModel` with a freshly drawn head (``head_hidden`` 0 = LayerNorm + linear)."""
    head = ValueHead.for_model_config(backbone.config, ValueHeadConfig(hidden=head_hidden))
    return RewardModel(backbone, head)


def save_reward_model(
    model: RewardModel, directory: str | os.PathLike[str], *, processor: Any, record: dict[str, Any]
) -> Path:
    """Write a reward model folder (see the module docs). Call on one process, with ZeRO-3 weights gathered."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(str(directory), safe_serialization=True)
    save_value_head(model.head, directory / REWARD_HEAD_FILE)
    processor.save_pretrained(str(directory))
    info = {"format": _FORMAT, "head": REWARD_HEAD_FILE, "scored_token": "last", **record}
    (directory / REWARD_MODEL_FILE).write_text(json.dumps(info, indent=2))
    return directory


@dataclass
class LoadedRewardModel:
    """A reward model ready to score.

    Attributes:
        model: ``model(**inputs).logits`` gives ``[B, 1]`` scores.
        processor: Its processor (VLM) or tokenizer.
        is_vision: Whether it takes images.
        num_params: ``N`` of its scoring forward (backbone and head).
        path: Where it was loaded from.
    """

    model: nn.Module
    processor: Any
    is_vision: bool
    num_params: int
    path: str


def is_reward_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a gengym reward model (written by ``gengym reward-model``)."""
    return (Path(path) / REWARD_MODEL_FILE).is_file() and (Path(path) / REWARD_HEAD_FILE).is_file()


def load_reward_model(
    path: str | os.PathLike[str], *, dtype: Any = "float32", device: Any = "cpu"
) -> LoadedRewardModel:
    """Load a gengym reward model folder, or a text sequence-classification checkpoint with one label.

    Raises:
        ValueError: ``path`` is neither (the message says what was found).
    """
    from trainers.common.compute import count_parameters
    from trainers.common.modeling import load_model_and_processor, prepare_tokenizer_for_generation

    path = os.fspath(path)
    if is_reward_model_folder(path):
        loaded = load_model_and_processor(path, dtype=dtype)
        head = load_value_head(Path(path) / REWARD_HEAD_FILE)
        model = RewardModel(loaded.model, head)
        processor, is_vision = loaded.processor, loaded.is_vision
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from trainers.common.config import ConfigError
        from trainers.common.modeling import read_model_config, readable_weights

        try:
            config = read_model_config(path)
        except ConfigError as err:
            raise ValueError(
                f"{path!r} is not a reward model: no {REWARD_MODEL_FILE} (write one with `gengym reward-model`) "
                f"and no readable model config ({err})"
            ) from err
        architectures = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in architectures) or config.num_labels != 1:
            raise ValueError(
                f"{path!r} is not a reward model: no {REWARD_MODEL_FILE} (train one with `gengym reward-model`), and "
                f"its config ({', '.join(architectures) or type(config).__name__}) is not a sequence classifier "
                "with one label"
            )
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        with readable_weights(path):
            classifier = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, trust_remote_code=False)
        processor = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        prepare_tokenizer_for_generation(processor)
        if classifier.config.pad_token_id is None:
            classifier.config.pad_token_id = processor.pad_token_id
        if processor.chat_template is None:
            raise ValueError(f"{path!r} has no chat template; gengym renders every conversation with the model's own")
        model, is_vision = _SequenceClassifierScorer(classifier), False
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return LoadedRewardModel(
        model=model, processor=processor, is_vision=is_vision, num_params=count_parameters(model), path=path
    )
