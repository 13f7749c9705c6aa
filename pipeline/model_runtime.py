"""Load a LineGuard ONNX model and score batches with onnxruntime (CUDA when present, else CPU)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from pipeline.errors import ModelLoadError
from pipeline.model_metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class BatchScores:
    """Outputs of one batched inference."""

    reconstruction: np.ndarray  # N x C x H x W, float32 in model input scale
    anomaly_map: np.ndarray  # N x 1 x H x W
    score: np.ndarray  # N


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate the metadata of a model file without building an inference session."""
    model = _load_proto(path)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})


def _load_proto(path: Path) -> onnx.ModelProto:
    if not Path(path).is_file():
        raise ModelLoadError(str(path), "file not found")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a corrupt file
        raise ModelLoadError(str(path), f"not a readable ONNX file ({type(exc).__name__})") from exc


def choose_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA first when this onnxruntime build has it and the caller wants it, the CPU always last."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if prefer_gpu and CUDA in available else [CPU]


class OnnxModel:
    """One loaded model: an inference session plus its validated metadata."""

    def __init__(self, path: Path, prefer_gpu: bool = True, intra_op_threads: int = 0) -> None:
        self.path = Path(path)
        proto = _load_proto(self.path)
        self.metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # onnxruntime logs a multi-line error when the CUDA libraries are missing and then falls
        # back to the CPU on its own; keep its log quiet and say once, plainly, what runs.
        options.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(
                proto.SerializeToString(), sess_options=options, providers=choose_providers(prefer_gpu)
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(str(path), f"onnxruntime rejected the graph: {exc}") from exc
        self._check_signature()
        self.provider = self.session.get_providers()[0]
        log.info("model %s v%s runs on %s", self.metadata.model_name, self.metadata.model_version, self.provider)

    def _check_signature(self) -> None:
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME]:
            raise ModelLoadError(str(self.path), f"expected one input {INPUT_NAME!r}, found {inputs}")
        if tuple(outputs) != OUTPUT_NAMES:
            raise ModelLoadError(str(self.path), f"expected outputs {list(OUTPUT_NAMES)}, found {outputs}")

    def score(self, batch: np.ndarray) -> BatchScores:
        """Run one N x C x H x W float32 batch through the graph."""
        spec = self.metadata.input_spec
        expected = (spec.channels, spec.size, spec.size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"batch shape {batch.shape} does not match model input N x {expected}")
        reconstruction, anomaly_map, score = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return BatchScores(reconstruction=reconstruction, anomaly_map=anomaly_map, score=score)

    def score_in_chunks(self, batch: np.ndarray, chunk: int = 16) -> BatchScores:
        """Score a large array in fixed-size chunks to bound memory."""
        parts = [self.score(batch[start : start + chunk]) for start in range(0, len(batch), chunk)]
        return BatchScores(
            reconstruction=np.concatenate([p.reconstruction for p in parts]),
            anomaly_map=np.concatenate([p.anomaly_map for p in parts]),
            score=np.concatenate([p.score for p in parts]),
        )
