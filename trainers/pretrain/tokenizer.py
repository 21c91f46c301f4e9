"""A character tokenizer for the compact env texts, saved in Hugging Face format.

The model the pretraining stage trains reads and writes one line of
GeneralPoints text (:mod:`gym_generalpoints.compact`), so its vocabulary is
characters: every printable ASCII character and the newline (anything an
observation can hold, see :func:`gengym_core.spaces.to_prompt_text`), plus
``10``, ``11``, ``12`` and ``13`` as single tokens, so that every card value
under any rule of 1..13 is one token. ``1`` followed by a digit 0-3 is read
as one of those; any text still encodes and decodes back unchanged.

Special tokens: ``<pad>``, ``<bos>``, ``<eos>`` (ends an answer; generation
stops there) and ``<unk>`` (characters outside the vocabulary: a prompt
never holds one). The chat template renders ``<bos>``, then each user turn
followed by ``>`` and each assistant turn, the last one followed by
``<eos>``, with the assistant part wrapped in ``{% generation %}`` so that
assistant-only losses (SFT) find it. With ``add_generation_prompt`` it adds
nothing: the ``>`` that ends the user turn is the cue to answer. Earlier
answers carry no ``<eos>``, so a compact episode as a conversation (task,
answer, feedback, ...) renders exactly as its one-line observation does:
the model reads the same text in both prompt formats.

Example:
    >>> tok = build_tokenizer()  # doctest: +SKIP
    >>> tok.apply_chat_template([{"role": "user", "content": "J10 Q10 K10 T24|K 3 7 A"}],
    ...                         tokenize=False, add_generation_prompt=True)  # doctest: +SKIP
    '<bos>J10 Q10 K10 T24|K 3 7 A>'
"""

from __future__ import annotations

import string
from typing import Any

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
#: Numbers written as one token.
NUMBER_TOKENS: tuple[str, ...] = ("10", "11", "12", "13")
#: Every character a prompt observation can hold.
CHARACTERS: tuple[str, ...] = tuple(ch for ch in string.printable if ch.isprintable() or ch == "\n")
_SPLIT = r"1[0-3]|[\s\S]"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set text = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ text }}{%- if loop.last %}{{ eos_token }}{% endif -%}{% endgeneration %}"
    "{%- else -%}{{ text }}>{%- endif -%}"
    "{%- endfor -%}"
)


def vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens, the number tokens, then the characters."""
    tokens = list(SPECIAL_TOKENS) + list(NUMBER_TOKENS) + [c for c in CHARACTERS if c not in SPECIAL_TOKENS]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def build_tokenizer(model_max_length: int = 512) -> Any:
    """The tokenizer as a ``PreTrainedTokenizerFast`` with the chat template set."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab=vocabulary(), unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
