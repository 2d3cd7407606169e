"""FashionCLIP 2.0 through ONNX Runtime: the production image (and text) embedder.

A model directory holds ``model.json`` (see `unde.models.manifest`), ``image.onnx`` and,
for zero-shot tagging, ``text.onnx`` + ``tokenizer.json``. Images go through the exact CLIP
preprocessing; the tower's projected embedding is L2-normalised. The output dimension is
checked against the manifest when the model is loaded (one warm-up run), so a wrong export
fails at start-up, not on the first request.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from unde.errors import ConfigError
from unde.models.base import Role, l2_normalise
from unde.models.clip_preprocess import preprocess
from unde.models.clip_tokenizer import ClipTokenizer
from unde.models.manifest import ModelManifest, read_manifest
from unde.models.onnx_sessions import check_io, open_session, session_options


def _check_dim(embeddings: np.ndarray, manifest: ModelManifest, tower: str) -> None:
    if embeddings.ndim != 2 or embeddings.shape[1] != manifest.dim:
        raise ConfigError(f"{tower} tower outputs shape {tuple(embeddings.shape)}; "
                          f"model.json says dim={manifest.dim}")


class FashionClipImageEmbedder:
    """The ONNX image tower: images → (n, dim) float32 unit rows."""

    def __init__(self, model_dir: Path, role: Role, *, intra_op_threads: int,
                 inter_op_threads: int = 1, max_batch: int = 32) -> None:
        self.manifest = read_manifest(model_dir)
        self.model_version = self.manifest.model_version
        self.dim = self.manifest.dim
        self.role = role
        self.max_batch = max_batch
        self.threads = {"intra_op": intra_op_threads,
                        "inter_op": 1 if role == "latency" else inter_op_threads}
        tower = self.manifest.image
        path = model_dir / tower.path
        self._session = open_session(path, session_options(role, intra_op_threads, inter_op_threads))
        self._input = tower.input
        self._output = check_io(self._session, path, [tower.input], tower.output)
        size = self.manifest.image_size
        _check_dim(self.run(np.zeros((1, 3, size, size), dtype=np.float32)), self.manifest, "image")

    def run(self, pixel_values: np.ndarray) -> np.ndarray:
        """The raw tower on preprocessed `pixel_values` (n, 3, s, s) → (n, dim) unnormalised."""
        (out,) = self._session.run([self._output], {self._input: pixel_values})
        return np.asarray(out)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed `images` (chunks of at most `max_batch` per model call)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(images), self.max_batch):
            batch = preprocess(images[start : start + self.max_batch], self.manifest.image_size,
                               mode=self.manifest.preprocess, mean=self.manifest.mean, std=self.manifest.std)
            chunks.append(self.run(batch))
        embeddings = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        _check_dim(embeddings, self.manifest, "image")
        return l2_normalise(embeddings)


class FashionClipTextEncoder:
    """The ONNX text tower with its tokenizer: texts → (n, dim) float32 unit rows."""

    def __init__(self, model_dir: Path, *, intra_op_threads: int = 1) -> None:
        self.manifest = read_manifest(model_dir)
        tower = self.manifest.text
        if tower is None or self.manifest.tokenizer is None:
            raise ConfigError(f"MODEL_DIR: {model_dir} has no text tower/tokenizer in model.json")
        self.model_version = self.manifest.model_version
        self.dim = self.manifest.dim
        self.tokenizer = ClipTokenizer(model_dir / self.manifest.tokenizer, tower.context_length,
                                       tower.pad_token)
        path = model_dir / tower.path
        self._session = open_session(path, session_options("latency", intra_op_threads))
        inputs = [tower.input_ids] + ([tower.attention_mask] if tower.attention_mask else [])
        self._output = check_io(self._session, path, inputs, tower.output)
        self._tower = tower
        _check_dim(self.embed(["a photo"]), self.manifest, "text")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` (e.g. zero-shot prompts "a photo of a red dress")."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = self.tokenizer(texts)
        feeds: dict[str, np.ndarray] = {self._tower.input_ids: ids}
        if self._tower.attention_mask:
            feeds[self._tower.attention_mask] = mask
        (out,) = self._session.run([self._output], feeds)
        return l2_normalise(np.asarray(out))


def zero_shot(image_embeddings: np.ndarray, text_embeddings: np.ndarray,
              temperature: float = 100.0) -> np.ndarray:
    """Softmax over labels of CLIP logits (`temperature` × cosine): (n_images, n_labels)."""
    logits = temperature * (image_embeddings @ text_embeddings.T)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def ort_version() -> str:
    """The onnxruntime version (reported by /healthz)."""
    return str(ort.__version__)
