"""Tiny ONNX towers built with the `onnx` helper API, and a tiny CLIP-style BPE tokenizer.

The image tower is a real patch-embedding network: Conv(3→4, kernel 16, stride 16) over
``pixel_values`` [N,3,224,224] → flatten → Gemm to [N,dim]. `reference_image_tower` computes
the same function in numpy, so tests can check the ONNX path end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PATCH, CHANNELS, SIZE = 16, 4, 224
GRID = SIZE // PATCH
VOCAB_SIZE, CONTEXT = 64, 12


def image_weights(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic conv kernel, Gemm matrix and bias."""
    rng = np.random.default_rng(42)
    kernel = rng.normal(0, 0.05, (CHANNELS, 3, PATCH, PATCH)).astype(np.float32)
    matrix = rng.normal(0, 0.05, (CHANNELS * GRID * GRID, dim)).astype(np.float32)
    bias = rng.normal(0, 0.1, (dim,)).astype(np.float32)
    return kernel, matrix, bias


def build_image_tower(path: Path, dim: int = 512, input_name: str = "pixel_values",
                      output_name: str = "image_embeds") -> None:
    """Write the tiny image tower to `path`."""
    kernel, matrix, bias = image_weights(dim)
    nodes = [
        helper.make_node("Conv", [input_name, "kernel"], ["patches"], kernel_shape=[PATCH, PATCH],
                         strides=[PATCH, PATCH]),
        helper.make_node("Flatten", ["patches"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "matrix", "bias"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_image_tower",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(kernel, "kernel"), numpy_helper.from_array(matrix, "matrix"),
         numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def reference_image_tower(pixel_values: np.ndarray, dim: int = 512) -> np.ndarray:
    """The tiny tower in numpy (float64): patchify, convolve, project."""
    kernel, matrix, bias = image_weights(dim)
    n = pixel_values.shape[0]
    patches = pixel_values.astype(np.float64).reshape(n, 3, GRID, PATCH, GRID, PATCH)
    conv = np.einsum("ncypxq,kcpq->nkyx", patches, kernel.astype(np.float64))
    return conv.reshape(n, -1) @ matrix + bias


def text_table(dim: int) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 1, (VOCAB_SIZE, dim)).astype(np.float32)


def build_text_tower(path: Path, dim: int = 512) -> None:
    """Masked sum of token embeddings: input_ids/attention_mask [N,T] → [N,dim]."""
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["text_embeds"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny_text_tower",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", CONTEXT]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(text_table(dim), "table"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_tokenizer(path: Path) -> None:
    """A CLIP-style BPE tokenizer (lower-case, `</w>` word ends, <|startoftext|>…<|endoftext|>)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, end_of_word_suffix="</w>",
                                  special_tokens=["<|startoftext|>", "<|endoftext|>"])
    corpus = ["a photo of a red dress", "a photo of a blue shirt", "striped jeans", "red red dress"] * 5
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", tokenizer.token_to_id("<|startoftext|>")),
                        ("<|endoftext|>", tokenizer.token_to_id("<|endoftext|>"))])
    tokenizer.save(str(path))


def write_model_dir(model_dir: Path, *, dim: int = 512, manifest_dim: int | None = None,
                    text: bool = False, **manifest_extra: Any) -> Path:
    """A complete FashionCLIP-style export directory with the tiny towers."""
    model_dir.mkdir(parents=True, exist_ok=True)
    build_image_tower(model_dir / "image.onnx", dim)
    manifest: dict[str, Any] = {
        "model_version": "tiny-test-v1", "dim": manifest_dim or dim,
        "image": {"path": "image.onnx", "input": "pixel_values", "output": "image_embeds"}}
    if text:
        build_text_tower(model_dir / "text.onnx", dim)
        build_tokenizer(model_dir / "tokenizer.json")
        manifest["text"] = {"path": "text.onnx", "context_length": CONTEXT}
        manifest["tokenizer"] = "tokenizer.json"
    manifest.update(manifest_extra)
    (model_dir / "model.json").write_text(json.dumps(manifest))
    return model_dir
