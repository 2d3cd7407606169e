"""Which image embedder a process uses, from settings.

``EMBED_PROVIDER``: ``fashionclip`` → the ONNX export in ``MODEL_DIR`` (ConfigError when it is
missing or broken); ``local`` → the offline descriptor; ``auto`` → FashionCLIP when
``MODEL_DIR`` holds a ``model.json``, else the offline descriptor.
"""

from __future__ import annotations

from unde.errors import ConfigError
from unde.models.base import ImageEmbedder, Role
from unde.models.manifest import has_model
from unde.settings import EmbeddingModelSettings


def resolved_provider(settings: EmbeddingModelSettings) -> str:
    """'fashionclip' or 'local': what `load_embedder` will build for these settings."""
    if settings.embed_provider == "auto":
        return "fashionclip" if has_model(settings.model_dir) else "local"
    return settings.embed_provider


def load_embedder(settings: EmbeddingModelSettings, role: Role) -> ImageEmbedder:
    """Build the embedder the settings ask for, tuned for `role` ('latency' | 'throughput')."""
    provider = resolved_provider(settings)
    if provider == "local":
        from unde.models.descriptor import DescriptorEmbedder

        return DescriptorEmbedder()
    if settings.model_dir is None:
        raise ConfigError("EMBED_PROVIDER=fashionclip needs MODEL_DIR (a FashionCLIP ONNX export)")
    from unde.models.fashionclip import FashionClipImageEmbedder

    return FashionClipImageEmbedder(
        settings.model_dir, role,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        max_batch=settings.embed_max_batch,
    )
