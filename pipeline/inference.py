"""Load a LineGuard ONNX model, score batches with onnxruntime (TensorRT if asked, CUDA, or the CPU), hot-reload it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from pipeline.conditions import ConditionMap
from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, OUTPUT_NAMES, UNKNOWN_CONDITION, ModelMetadata
from pipeline.errors import ModelLoadError
from pipeline.providers import CPU, TensorRT, open_session, provider_reason, why_not_loaded
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SCORED_OUTPUTS = ("anomaly_map", "score")
RECONSTRUCTION_OUTPUT = "reconstruction"


@dataclass(frozen=True)
class BatchScores:
    """Outputs of one batched inference."""

    anomaly_map: np.ndarray  # N x 1 x H x W
    score: np.ndarray  # N


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate the metadata of a model file."""
    return ModelMetadata.from_props(read_props(path))


def read_props(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file, from onnxruntime's model metadata (`get_modelmeta`).

    The session is built on the CPU with graph optimisations off, so reading the props of a file costs little more
    than parsing it, and a file onnxruntime cannot load is refused here rather than on the line.
    """
    if not Path(path).is_file():
        raise ModelLoadError(str(path), "file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # a corrupt file is reported below, not as onnxruntime's own error log
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, ... for a corrupt file
        raise ModelLoadError(str(path), f"not a readable ONNX file ({type(exc).__name__})") from exc
    return dict(session.get_modelmeta().custom_metadata_map)


def load_proto(path: Path) -> onnx.ModelProto:
    """A model file's whole proto (graph, weights and metadata; external weight files are left unread), for the
    callers that build a session from it."""
    if not Path(path).is_file():
        raise ModelLoadError(str(path), "file not found")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a corrupt file
        raise ModelLoadError(str(path), f"not a readable ONNX file ({type(exc).__name__})") from exc


def graph_inputs(proto: onnx.ModelProto) -> list[str]:
    """The names a caller feeds (older exporters also list the weights among the graph's inputs)."""
    weights = {t.name for t in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in weights]


def scoring_subgraph(proto: onnx.ModelProto) -> bytes:
    """The model cut down to the nodes its anomaly map and score depend on (serialized for onnxruntime)."""
    scoring = onnx.utils.Extractor(proto).extract_model(graph_inputs(proto), list(SCORED_OUTPUTS))
    del scoring.metadata_props[:]
    scoring.metadata_props.extend(proto.metadata_props)
    return scoring.SerializeToString()


class OnnxModel:
    """One loaded model: an inference session plus its validated metadata."""

    def __init__(
        self,
        path: Path,
        prefer_gpu: bool = True,
        intra_op_threads: int = 0,
        tensorrt: TensorRT | None = None,
        bind_io: bool | None = None,
        spinning: bool = True,
    ) -> None:
        """`intra_op_threads`: onnxruntime's threads per inference (0: one per core); `spinning`: whether they busy-wait
        between operators. `tensorrt`: score on TensorRT when it loads (the restoring session stays on CUDA: it opens
        on the first defect, too late to build an engine). `bind_io`: score through IO binding (None: on a GPU
        only)."""
        self.path = Path(path)
        proto = load_proto(self.path)
        self.metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
        self._check_signature(proto)
        spec = self.metadata.input_spec
        inputs = {INPUT_NAME: (spec.channels, spec.size, spec.size)}
        if self.metadata.condition is not None:
            inputs[CONDITION_INPUT_NAME] = ()
        trt = tensorrt.options(inputs, self.metadata.precision == "fp16") if tensorrt is not None else None
        # Every frame needs the map and the score; only kept (defective) frames need the restored image. onnxruntime
        # runs every node of a graph whatever is fetched, so the line scores on the graph cut down to what the map
        # and the score depend on (a feature model's image restorer was about a third of the time), and the whole
        # graph opens on the first restore.
        self.session = open_session(scoring_subgraph(proto), self.path, prefer_gpu, intra_op_threads, trt, spinning)
        self._restoring: ort.InferenceSession | None = None
        self._open_full = lambda: open_session(
            proto.SerializeToString(), self.path, prefer_gpu, intra_op_threads, spinning=spinning
        )
        self.provider = self.session.get_providers()[0]
        self.metadata = apply_threshold_override(self.metadata, thresholds_path(self.path))
        # Conditional models (cvae) map each frame's camera id or header to the index their second input takes.
        self.conditions = ConditionMap(self.metadata.condition) if self.metadata.condition is not None else None
        device = "cpu" if self.provider == CPU else "cuda"
        if bind_io is None:
            # on the CPU the bound run measured no faster: 0.8 to 1.03x the plain one on 2 cores (bench/gpu_parity.py)
            bind_io = device != "cpu"
        self._bound = BoundScoring(self.session, device) if bind_io else None
        reason = provider_reason(self.provider, prefer_gpu, tensorrt, ort.get_available_providers(), why_not_loaded)
        log.info(
            "model %s v%s runs on %s%s",
            self.metadata.model_name,
            self.metadata.model_version,
            self.provider,
            f" ({reason})" if reason else "",
        )
        if self.metadata.precision == "fp16" and self.provider == CPU:
            # onnxruntime's CPU provider casts most float16 nodes back to float32: it runs, about 3x slower.
            log.warning("model %s is fp16, made for a GPU: on the CPU its fp32 file scores faster", self.path.name)
        if self.metadata.precision == "int8" and self.provider != CPU:
            # Its quantise/dequantise pairs are tuned for the CPU provider's int8 kernels (not measured on a GPU).
            log.warning(
                "model %s is int8, made for CPU lines: on %s serve its fp32 or an fp16 file",
                self.path.name,
                self.provider,
            )

    @property
    def layout(self) -> object:
        """What a replacement must keep to take over mid-stream: the input layout frames are prepared for."""
        return self.metadata.input_spec

    def warm_up(self, batch_size: int = 1) -> None:
        """One inference on a mid-gray batch so the first real batch does not pay for allocation and kernel
        selection, and one restore, so the first defect does not wait for the whole graph to open; a model that fails
        there or answers NaN/inf is refused before it serves a frame (not at its first defect, on the writer's
        thread)."""
        spec = self.metadata.input_spec
        batch = np.full((batch_size, spec.channels, spec.size, spec.size), 0.5, dtype=np.float32)
        try:
            scores = self.score(batch)
            restored = self.restore(batch[:1])
        except Exception as exc:  # onnxruntime raises its own types (Fail, RuntimeException, ...) at run time
            raise ModelLoadError(str(self.path), f"warm-up inference failed: {type(exc).__name__}: {exc}") from exc
        if not (np.isfinite(scores.score).all() and np.isfinite(scores.anomaly_map).all()):
            raise ModelLoadError(str(self.path), "warm-up inference gave non-finite scores (NaN or inf)")
        if not np.isfinite(restored).all():
            raise ModelLoadError(str(self.path), "warm-up restore gave a non-finite frame (NaN or inf)")

    def _check_signature(self, proto: onnx.ModelProto) -> None:
        inputs = graph_inputs(proto)
        outputs = [o.name for o in proto.graph.output]
        expected = [INPUT_NAME] if self.metadata.condition is None else [INPUT_NAME, CONDITION_INPUT_NAME]
        if inputs != expected:
            raise ModelLoadError(str(self.path), f"expected inputs {expected} (metadata), found {inputs}")
        if tuple(outputs) != OUTPUT_NAMES:
            raise ModelLoadError(str(self.path), f"expected outputs {list(OUTPUT_NAMES)}, found {outputs}")

    def _feed(self, batch: np.ndarray, conditions: np.ndarray | None) -> dict[str, np.ndarray]:
        """The graph's inputs; a conditional model given no conditions scores every frame unconditionally."""
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        if self.conditions is not None:
            if conditions is None:
                conditions = np.full(len(batch), UNKNOWN_CONDITION, dtype=np.int64)
            feed[CONDITION_INPUT_NAME] = np.ascontiguousarray(conditions, dtype=np.int64)
        return feed

    def score(self, batch: np.ndarray, conditions: np.ndarray | None = None) -> BatchScores:
        """Run one N x C x H x W float32 batch (with N condition indices for a conditional model) through the graph."""
        spec = self.metadata.input_spec
        expected = (spec.channels, spec.size, spec.size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"batch shape {batch.shape} does not match model input N x {expected}")
        # The graph also outputs the reconstruction, but nothing downstream reads it: not fetching it
        # saves copying a full N x C x H x W float array out of onnxruntime on every batch.
        feed = self._feed(batch, conditions)
        if self._bound is not None:
            anomaly_map, score = self._bound.run(feed)
        else:
            anomaly_map, score = self.session.run(list(SCORED_OUTPUTS), feed)
        return BatchScores(anomaly_map=anomaly_map, score=score)

    def restore(self, batch: np.ndarray, conditions: np.ndarray | None = None) -> np.ndarray:
        """The model's restored (denoised) frames, N x C x H x W in [0, 1], for the frames that are kept.

        A separate call on the defective frames only: on the normal path nothing copies a full-size
        image out of onnxruntime.
        """
        if self._restoring is None:
            self._restoring = self._open_full()
        (reconstruction,) = self._restoring.run([RECONSTRUCTION_OUTPUT], self._feed(batch, conditions))
        return reconstruction

    def score_in_chunks(self, batch: np.ndarray, chunk: int = 16, conditions: np.ndarray | None = None) -> BatchScores:
        """Score a large array in fixed-size chunks to bound memory."""
        parts = [
            self.score(batch[start : start + chunk], None if conditions is None else conditions[start : start + chunk])
            for start in range(0, len(batch), chunk)
        ]
        return BatchScores(
            anomaly_map=np.concatenate([p.anomaly_map for p in parts]),
            score=np.concatenate([p.score for p in parts]),
        )


class BoundScoring:
    """Scoring through onnxruntime's IO binding, the GPU path: the batch is copied into an input buffer on the device
    and the map and the score are written into output buffers there, all allocated once per batch size (the full
    batch, and the shorter ones a quiet line sends), and the results come back in one copy per batch. The same code
    runs on "cpu" buffers, which is how it is tested without a GPU. One thread scores through it at a time, as the
    consumer loop does."""

    KEPT_SIZES = 4  # batch sizes whose buffers are kept; the least recently used goes beyond

    def __init__(self, session: ort.InferenceSession, device: str) -> None:
        self.session = session
        self.device = device
        self._shapes = {o.name: o.shape[1:] for o in session.get_outputs()}
        self._sizes: dict[int, tuple[ort.IOBinding, dict[str, ort.OrtValue]]] = {}

    def run(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        size = len(feed[INPUT_NAME])
        binding, inputs = self._sizes.pop(size, None) or self._allocate(feed)
        self._sizes[size] = (binding, inputs)  # now the most recently used
        while len(self._sizes) > self.KEPT_SIZES:
            del self._sizes[next(iter(self._sizes))]
        for name, array in feed.items():
            inputs[name].update_inplace(array)
        self.session.run_with_iobinding(binding)
        anomaly_map, score = binding.copy_outputs_to_cpu()
        return anomaly_map, score

    def _allocate(self, feed: dict[str, np.ndarray]) -> tuple[ort.IOBinding, dict[str, ort.OrtValue]]:
        binding = self.session.io_binding()
        inputs = {}
        for name, array in feed.items():
            inputs[name] = ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype, self.device, 0)
            binding.bind_ortvalue_input(name, inputs[name])
        for name in SCORED_OUTPUTS:
            shape = [len(feed[INPUT_NAME]), *self._shapes[name]]
            if all(isinstance(d, int) for d in shape):
                output = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, self.device, 0)
                binding.bind_ortvalue_output(name, output)
            else:  # a size the graph does not state: onnxruntime allocates it on the device at each run
                binding.bind_output(name, self.device)
        return binding, inputs


def image_loader(settings: Settings) -> Callable[[Path, bool], OnnxModel]:
    """How the consumer opens an image model (ModelHolder's `load`): OnnxModel with the settings' TensorRT choice and
    onnxruntime threads."""
    return partial(
        OnnxModel,
        tensorrt=TensorRT.from_settings(settings),
        intra_op_threads=settings.inference_threads,
        spinning=settings.inference_spinning,
    )


def thresholds_path(model_path: Path) -> Path:
    """`<model>.thresholds.json`: image and pixel thresholds set after export, without re-exporting."""
    return model_path.with_name(model_path.name + ".thresholds.json")


def apply_threshold_override(metadata: ModelMetadata, path: Path) -> ModelMetadata:
    if not path.is_file():
        return metadata
    try:
        data = json.loads(path.read_text())
        image = float(data.get("image_threshold", metadata.image_threshold))
        pixel = float(data.get("pixel_threshold", metadata.pixel_threshold))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(str(path), f"unreadable threshold override: {exc}") from exc
    log.info("thresholds from %s: image %.6g, pixel %.6g", path, image, pixel)
    return metadata.with_thresholds(image, pixel)


def file_stamp(path: Path) -> tuple[float, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime, stat.st_size)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelTarget:
    """A model file to serve instead of the holder's own (the registry's active version), with its registered sha256."""

    path: Path
    sha256: str | None = None


class Servable(Protocol):
    """What ModelHolder serves: an image model (OnnxModel) or a sensor model (pipeline.sensors.model.SensorModel)."""

    metadata: ModelMetadata

    @property
    def layout(self) -> object: ...

    def warm_up(self, batch_size: int = 1) -> None: ...


M = TypeVar("M", bound=Servable)


class ModelHolder(Generic[M]):
    """The serving model plus hot reload: a changed file (or threshold override), or the file `follow` names, is
    loaded beside the old one and swapped in only if it loads, validates and keeps the same layout (`load`'s model's
    `layout`: the image input, or a sensor model's channels and window); otherwise the old one serves on."""

    def __init__(
        self,
        path: Path,
        prefer_gpu: bool = True,
        warm_up_batch: int = 1,
        load: Callable[[Path, bool], M] = OnnxModel,  # type: ignore[assignment]
    ) -> None:
        self.path = Path(path)
        self.prefer_gpu = prefer_gpu
        self.warm_up_batch = warm_up_batch
        self.load = load
        self.model: M = load(self.path, prefer_gpu)
        self.model.warm_up(warm_up_batch)
        self._tried = (self.path.resolve(), self._stamps(self.path))  # the last file a reload was decided on
        self.rejected: ModelLoadError | None = None
        # Where another file to serve is named (pipeline.registry.watch); it must answer from memory, never block.
        self.follow: Callable[[], ModelTarget | None] | None = None

    @staticmethod
    def _stamps(path: Path) -> tuple[object, object]:
        return (file_stamp(path), file_stamp(thresholds_path(path)))

    def maybe_reload(self) -> bool:
        """Swap in a changed model file, or the file `follow` names; True when a new model now serves."""
        target = self.follow() if self.follow is not None else None
        path = target.path if target is not None else self.path
        stamp = self._stamps(path)
        if (path.resolve(), stamp) == self._tried or (target is None and stamp[0] is None):
            return False
        self._tried = (path.resolve(), stamp)
        try:
            if stamp[0] is None:
                raise ModelLoadError(str(path), "file not found")
            if target is not None and target.sha256 and file_sha256(path) != target.sha256:
                raise ModelLoadError(str(path), f"file differs from the registered one (sha256 {target.sha256[:12]})")
            candidate = self.load(path, self.prefer_gpu)
            if candidate.layout != self.model.layout:
                raise ModelLoadError(str(path), "input layout differs from the serving model")
            candidate.warm_up(self.warm_up_batch)
        except Exception as exc:  # whatever a new file does wrong, the serving model goes on
            error = (
                exc if isinstance(exc, ModelLoadError) else ModelLoadError(str(path), f"{type(exc).__name__}: {exc}")
            )
            self.rejected = error
            log.error("model reload rejected, still serving v%s: %s", self.model.metadata.model_version, error)
            return False
        old = self.model.metadata.model_version
        self.model, self.path = candidate, path
        self.rejected = None
        log.info("model reloaded: v%s -> v%s (%s)", old, candidate.metadata.model_version, path)
        return True
