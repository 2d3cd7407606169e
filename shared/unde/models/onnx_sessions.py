"""ONNX Runtime sessions tuned per role.

- ``latency`` (the `embedder` function): one request at a time, as fast as possible — all
  intra-op threads on each operator, sequential execution, every graph fusion.
- ``throughput`` (the indexer): large batches; inter-op parallelism from settings (parallel
  execution only when it is > 1).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from unde.errors import ConfigError
from unde.models.base import Role


def session_options(role: Role, intra_op_threads: int, inter_op_threads: int = 1) -> ort.SessionOptions:
    """SessionOptions for `role` with the thread counts from settings."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    if role == "latency":
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    else:
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if inter_op_threads > 1
                                  else ort.ExecutionMode.ORT_SEQUENTIAL)
    options.log_severity_level = 3
    return options


def open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """An InferenceSession on the CPU provider, or ConfigError if the file is not a model."""
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ConfigError(f"cannot load ONNX model {path}: {exc}") from exc


def check_io(session: ort.InferenceSession, path: Path, inputs: list[str],
             output: str | None) -> str:
    """Check the named inputs/output exist; return the output name to fetch."""
    have_inputs = {node.name for node in session.get_inputs()}
    missing = [name for name in inputs if name not in have_inputs]
    if missing:
        raise ConfigError(f"{path.name}: no input named {missing} (it has {sorted(have_inputs)})")
    outputs = [node.name for node in session.get_outputs()]
    if output is None:
        return outputs[0]
    if output not in outputs:
        raise ConfigError(f"{path.name}: no output named {output!r} (it has {outputs})")
    return output
