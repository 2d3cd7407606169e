"""The CLIP BPE tokenizer for the text tower, offline.

The export script saves the Hugging Face fast tokenizer of FashionCLIP as ``tokenizer.json``
(normaliser, byte-level BPE with ``</w>`` suffixes, ``<|startoftext|> … <|endoftext|>``
template); the `tokenizers` package runs it from that file, with no network and no
`transformers`. Sequences are truncated and padded to the tower's context length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unde.errors import ConfigError


class ClipTokenizer:
    """Texts → (input_ids, attention_mask), both (n, context_length) int64."""

    def __init__(self, path: Path, context_length: int, pad_token: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # an optional dependency: only the text tower needs it
            raise ConfigError("the text tower needs the 'tokenizers' package") from exc
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise ConfigError(f"cannot load tokenizer {path}: {exc}") from exc
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ConfigError(f"tokenizer {path.name} has no pad token {pad_token!r}")
        self.context_length = context_length
        self.pad_id = pad_id
        self._tokenizer.enable_truncation(max_length=context_length)
        self._tokenizer.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)

    def token_id(self, token: str) -> int | None:
        """The id of a token (e.g. ``<|startoftext|>``), None if it is not in the vocabulary."""
        return self._tokenizer.token_to_id(token)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask for `texts`."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        return ids.reshape(len(texts), self.context_length), mask.reshape(len(texts), self.context_length)
