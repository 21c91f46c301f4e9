"""Oracle SFT data for every gengym env, and the ``gengym data`` command.

See :mod:`trainers.data.oracle`: optimal answers (or revision dialogues)
from an env's oracle, each re-checked by the env's verifier, as a Hugging
Face ``datasets.Dataset`` in the format TRL's SFT takes. Importing this
package does not import ``datasets``; building a dataset does.
"""

from trainers.data.oracle import (
    OracleDataConfig,
    OracleError,
    build_oracle_dataset,
    clean_messages,
    episode_seed,
    iter_oracle_examples,
    save_oracle_dataset,
    to_text_only_dataset,
    verify_dataset,
    verify_example,
)

__all__ = [
    "OracleDataConfig",
    "OracleError",
    "build_oracle_dataset",
    "clean_messages",
    "episode_seed",
    "iter_oracle_examples",
    "save_oracle_dataset",
    "to_text_only_dataset",
    "verify_dataset",
    "verify_example",
]
