"""The FashionCLIP ONNX path on tiny towers the tests build: loading, batching, checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.models.tiny_models import CONTEXT, reference_image_tower, text_table, write_model_dir
from unde.errors import ConfigError
from unde.models.base import ImageEmbedder
from unde.models.clip_preprocess import preprocess
from unde.models.descriptor import DescriptorEmbedder
from unde.models.fashionclip import FashionClipImageEmbedder, FashionClipTextEncoder, zero_shot
from unde.models.onnx_sessions import session_options
from unde.models.registry import load_embedder, resolved_provider
from unde.settings import EmbeddingModelSettings


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("fashionclip"), text=True)


def photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(11)
    sizes = [(600, 800), (480, 600), (300, 200), (224, 224), (1000, 700)]
    return [Image.fromarray(rng.integers(0, 256, (sizes[i % 5][1], sizes[i % 5][0], 3), dtype=np.uint8))
            for i in range(count)]


def test_embeddings_are_the_tower_output_normalised(model_dir: Path) -> None:
    embedder = FashionClipImageEmbedder(model_dir, "latency", intra_op_threads=1)
    assert isinstance(embedder, ImageEmbedder)
    images = photos(3)
    vectors = embedder.embed(images)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    expected = reference_image_tower(preprocess(images))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    assert embedder.model_version == "tiny-test-v1" and embedder.dim == 512


def test_batch_equals_singles_and_chunking(model_dir: Path) -> None:
    images = photos(5)
    single = FashionClipImageEmbedder(model_dir, "latency", intra_op_threads=1)
    chunked = FashionClipImageEmbedder(model_dir, "throughput", intra_op_threads=1, max_batch=2)
    batch = single.embed(images)
    singles = np.concatenate([single.embed([image]) for image in images])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    np.testing.assert_allclose(chunked.embed(images), batch, atol=1e-5)
    assert single.embed([]).shape == (0, 512)


def test_session_options_per_role() -> None:
    latency = session_options("latency", 4, 3)
    assert (latency.intra_op_num_threads, latency.inter_op_num_threads) == (4, 1)
    assert latency.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert latency.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    throughput = session_options("throughput", 4, 2)
    assert (throughput.intra_op_num_threads, throughput.inter_op_num_threads) == (4, 2)
    assert throughput.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert session_options("throughput", 2, 1).execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_dimension_mismatch_fails_at_load(tmp_path: Path) -> None:
    write_model_dir(tmp_path, dim=256, manifest_dim=512)
    with pytest.raises(ConfigError, match="dim=512"):
        FashionClipImageEmbedder(tmp_path, "latency", intra_op_threads=1)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: (d / "model.json").unlink(), "does not exist"),
    (lambda d: (d / "model.json").write_text("{not json"), "not readable JSON"),
    (lambda d: (d / "model.json").write_text(json.dumps({"dim": 512})), "model_version"),
    (lambda d: (d / "image.onnx").unlink(), "lacks image.onnx"),
    (lambda d: (d / "image.onnx").write_bytes(b"not a model"), "cannot load ONNX model"),
    (lambda d: (d / "model.json").write_text(json.dumps(
        {"model_version": "x", "image": {"input": "pixels"}})), "no input named"),
    (lambda d: (d / "model.json").write_text(json.dumps(
        {"model_version": "x", "image": {"output": "nope"}})), "no output named"),
])
def test_broken_model_dirs_are_config_errors(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    write_model_dir(tmp_path)
    change(tmp_path)
    with pytest.raises(ConfigError, match=message):
        FashionClipImageEmbedder(tmp_path, "latency", intra_op_threads=1)


def test_text_tower_tokenises_and_embeds(model_dir: Path) -> None:
    encoder = FashionClipTextEncoder(model_dir)
    ids, mask = encoder.tokenizer(["A photo of a RED dress", "striped " * 40])
    assert ids.shape == mask.shape == (2, CONTEXT)
    bos, eos = encoder.tokenizer.token_id("<|startoftext|>"), encoder.tokenizer.pad_id
    assert ids[0, 0] == bos and eos in ids[0]
    assert mask[0].sum() < CONTEXT and mask[1].sum() == CONTEXT  # padded vs truncated
    assert ids[1, -1] == eos  # truncation keeps the end-of-text token
    vectors = encoder.embed(["A photo of a RED dress", "striped " * 40])
    table = text_table(512)
    expected = (table[ids] * mask[..., None]).sum(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    # Lower-casing happens in the tokenizer: case does not change the vector.
    np.testing.assert_allclose(encoder.embed(["a photo of a red dress"])[0], vectors[0], atol=1e-6)


def test_zero_shot_prefers_the_matching_label() -> None:
    labels = np.eye(3, 8, dtype=np.float32)
    images = np.array([[0.1, 0.9, 0.0, 0, 0, 0, 0, 0]], dtype=np.float32)
    probs = zero_shot(images / np.linalg.norm(images), labels)
    assert probs.argmax() == 1 and probs.sum() == pytest.approx(1.0)


def test_text_tower_missing_is_a_config_error(tmp_path: Path) -> None:
    write_model_dir(tmp_path)
    with pytest.raises(ConfigError, match="no text tower"):
        FashionClipTextEncoder(tmp_path)


def test_registry_picks_the_provider(model_dir: Path, tmp_path: Path) -> None:
    auto_with_model = EmbeddingModelSettings(embed_provider="auto", model_dir=model_dir)
    assert resolved_provider(auto_with_model) == "fashionclip"
    embedder = load_embedder(auto_with_model, "throughput")
    assert isinstance(embedder, FashionClipImageEmbedder) and embedder.role == "throughput"
    auto_empty = EmbeddingModelSettings(embed_provider="auto", model_dir=tmp_path, offline_model_dir=tmp_path / "none")
    assert isinstance(load_embedder(auto_empty, "latency"), DescriptorEmbedder)
    assert isinstance(load_embedder(EmbeddingModelSettings(embed_provider="local", model_dir=model_dir),
                                    "latency"), DescriptorEmbedder)
    with pytest.raises(ConfigError, match="MODEL_DIR"):
        load_embedder(EmbeddingModelSettings(embed_provider="fashionclip"), "latency")
    with pytest.raises(ConfigError, match="does not exist"):
        load_embedder(EmbeddingModelSettings(embed_provider="fashionclip", model_dir=tmp_path), "latency")
