"""`lineguard quantize`: a trained model in another precision (INT8 static quantisation today), its thresholds
recalibrated on its own scores and its parity with the original reported.

No torch here: the work is onnxruntime's (quantisation, scoring) and the calibration of training.evaluation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from rich.console import Console
from rich.table import Table

from pipeline.contract import INPUT_NAME, ModelMetadata
from pipeline.errors import ConfigError
from pipeline.inference import RECONSTRUCTION_OUTPUT, OnnxModel, file_sha256
from training.data.images import list_images, load_images, split_validation, train_folder
from training.evaluation.calibrate import calibrate_model
from training.evaluation.evaluate import evaluate
from training.export.half import to_float16
from training.export.metadata import update_metadata

# Where training_config says nothing (a file not made by `lineguard train`): train.py's defaults.
DEFAULT_FALSE_ALARM_RATE = 1e-3
DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True)
class QuantizeConfig:
    """Everything `quantize()` needs; the defaults are the settings measured best on the default model
    (bench/bench_quantize.py, docs/TRAINING.md "INT8 for CPU lines")."""

    model: Path  # the fp32 file `lineguard train` wrote
    calibration_dir: Path  # normal images: MVTec layout (train/good) or a plain folder
    out: Path
    validation_dir: Path | None = None  # MVTec-layout test set: image AUROC before and after
    precision: str = "int8"
    calibration_images: int = 64  # normals the quantiser sets its activation ranges on
    per_channel: bool = True  # one weight scale per output channel (per tensor: one per layer)
    float_op_types: tuple[str, ...] = ("AveragePool",)  # kept in float: slower in int8 on onnxruntime's CPU kernels
    float_convs: int = 3  # the first convolutions, kept in float (`early_convs`)
    speed_batch: int = 32  # the consumer's default batch
    speed_rounds: int = 3  # 0: no speed figures

    def __post_init__(self) -> None:
        if self.precision not in CONVERTERS:
            raise ConfigError("precision", self.precision, f"one of {', '.join(sorted(CONVERTERS))}")
        if self.float_convs < 0:
            raise ConfigError("float_convs", self.float_convs, "at least 0")
        if self.calibration_images < 1:
            raise ConfigError("calibration_images", self.calibration_images, "at least 1")
        if self.speed_batch < 1:
            raise ConfigError("speed_batch", self.speed_batch, "at least 1")
        if self.speed_rounds < 0:
            raise ConfigError("speed_rounds", self.speed_rounds, "at least 0")
        if self.out.resolve() == self.model.resolve():
            raise ConfigError("out", str(self.out), "must differ from the model file (versions are never overwritten)")
        if self.validation_dir is not None and not (self.validation_dir / "test").is_dir():
            raise ConfigError("validation", str(self.validation_dir), "expected an MVTec-layout folder with test/")

    def settings(self) -> dict[str, object]:
        """The conversion's choices, recorded in the new file and in the parity report."""
        return {
            "calibration_images": self.calibration_images,
            "per_channel": self.per_channel,
            "float_op_types": list(self.float_op_types),
            "float_convs": self.float_convs,
        }


@dataclass(frozen=True)
class Parity:
    """How the converted file compares with the original: on the held-out normals, on the validation set (where
    given) and in raw scoring speed (onnxruntime alone, same batch, same process)."""

    precision: str
    out: Path
    model_version: str
    n_normals: int
    normal_correlation: float  # Pearson, image scores of the held-out normals
    image_threshold: tuple[float, float]  # before, after
    pixel_threshold: tuple[float, float]
    frames_per_second: tuple[float, float] | None = None
    validation_correlation: float | None = None  # Pearson, image scores of every validation image
    image_auroc: tuple[float, float] | None = None
    pixel_auroc: tuple[float | None, float | None] | None = None
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return None if self.frames_per_second is None else self.frames_per_second[1] / self.frames_per_second[0]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "out": str(self.out), "speedup": self.speedup}


@dataclass(frozen=True)
class Normals:
    """The calibration folder's normal images, split as training split them: the quantiser's share, and the held-out
    normals the thresholds and the parity come from (never both)."""

    calibration: np.ndarray
    held_out: np.ndarray


# How each precision is made from the fp32 file: (source, destination, calibration normals, config) -> None.
Converter = Callable[[Path, Path, np.ndarray, QuantizeConfig], None]


def quantize(cfg: QuantizeConfig) -> Parity:
    """Convert `cfg.model`, recalibrate the thresholds on the new file's own scores, write it to `cfg.out` with the
    contract's metadata carried over, and report its parity with the original."""
    source = OnnxModel(cfg.model, prefer_gpu=False)
    metadata = source.metadata
    if metadata.kind != "image" or metadata.condition is not None:
        raise ConfigError("model", str(cfg.model), "quantize converts unconditional image models")
    if metadata.precision != "fp32":
        raise ConfigError("model", str(cfg.model), f"converts fp32 models; this one is {metadata.precision}")
    normals = load_normals(cfg.calibration_dir, metadata, cfg.calibration_images)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed once calibrated: a file carrying the original's thresholds never lies at
    # `out`, where a registry or a watching consumer could pick it up.
    partial = cfg.out.with_name(f"{cfg.out.name}.partial")
    try:
        CONVERTERS[cfg.precision](cfg.model, partial, normals.calibration, cfg)
        converted = converted_metadata(metadata, cfg)
        update_metadata(partial, converted)  # the contract first: OnnxModel refuses a file without it
        # The line compares the new file's scores with its thresholds: they come from its own scores on held-out
        # normals, by the calibration training runs after export.
        calibrated = calibrate_model(
            OnnxModel(partial, prefer_gpu=False),
            converted,
            normals.held_out,
            false_alarm_rate(metadata),
            int(metadata.training_config.get("seed", 0)),
            donors=normals.calibration,
        )
        update_metadata(partial, calibrated)
        partial.replace(cfg.out)
    finally:
        partial.unlink(missing_ok=True)
    candidate = OnnxModel(cfg.out, prefer_gpu=False)
    parity = measure_parity(source, candidate, normals.held_out, cfg)
    print_parity(parity, metadata.model_version)
    return parity


def load_normals(folder: Path, metadata: ModelMetadata, count: int) -> Normals:
    """The folder's normals preprocessed as the line does; held out as training held out its validation images (its
    fraction and seed), so a model's training folder gives the same held-out normals its fp32 thresholds came from."""
    files = list_images(train_folder(folder))
    held_idx = split_validation(len(files), *holdout(metadata))[1]
    rest = np.setdiff1d(np.arange(len(files)), held_idx)
    chosen = rest[np.linspace(0, len(rest) - 1, min(count, len(rest))).round().astype(int)]
    spec = metadata.input_spec
    return Normals(load_images([files[i] for i in chosen], spec), load_images([files[i] for i in held_idx], spec))


def holdout(metadata: ModelMetadata) -> tuple[float, int]:
    config = metadata.training_config
    return float(config.get("val_fraction", DEFAULT_HOLDOUT)), int(config.get("seed", 0))


def false_alarm_rate(metadata: ModelMetadata) -> float:
    """The budget the original's threshold was set for (an F1-optimal original: the training default)."""
    if metadata.false_alarm is not None:
        return metadata.false_alarm.rate
    return float(metadata.training_config.get("false_alarm_rate", DEFAULT_FALSE_ALARM_RATE))


def converted_metadata(metadata: ModelMetadata, cfg: QuantizeConfig) -> ModelMetadata:
    """The original's contract with the new precision, its own version (the registry keeps one file per version) and
    where it came from; the thresholds follow from calibration."""
    record = {
        "source_version": metadata.model_version,
        "source_sha256": file_sha256(cfg.model),
        "calibration_dir": str(cfg.calibration_dir),
        **cfg.settings(),
    }
    return replace(
        metadata,
        precision=cfg.precision,  # type: ignore[arg-type]
        model_version=f"{metadata.model_version}-{cfg.precision}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_config={**metadata.training_config, "conversion": record},
    )


class NormalBatches(CalibrationDataReader):
    """The quantiser's calibration feed: normal images, preprocessed as the line does, a few at a time."""

    def __init__(self, images: np.ndarray, batch: int = 8) -> None:
        self._batches: Iterator[np.ndarray] = (images[i : i + batch] for i in range(0, len(images), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def scoring_tail(proto: onnx.ModelProto) -> list[str]:
    """The nodes that make the anomaly map and the score out of the model's reconstruction (the error, its blur and
    pooling, the maximum): every node the `reconstruction` output does not depend on. They stay in float: an error is
    a small difference of two large activations, which 8 bits cannot resolve."""
    needed = upstream(proto, [RECONSTRUCTION_OUTPUT])
    return [node.name for node in proto.graph.node if node.name not in needed]


def compared_with_stored(proto: onnx.ModelProto, tail: list[str]) -> list[str]:
    """The nodes outside the scoring tail that compute what the tail compares with a matrix stored in the graph (a
    memory of normal codes: feature-cae's code, its encoder): for each tail product of a stored matrix with what one
    tensor from outside the tail becomes, that tensor's producers, upstream to where the path meets a tensor the tail
    reads elsewhere (the features the reconstruction is compared with). A product with a tail value made of several
    outside tensors (the map's smoothing of the reconstruction error) compares nothing stored with them.

    They stay in float. The distance to the nearest stored code is small next to the codes themselves, and stored codes
    are float while an int8 encoder's codes are rounded: with the encoder in int8, magnetic tile's default model fell
    from 0.940 to 0.656 image AUROC (score correlation on normals 0.16); with it in float, 0.944 (0.996)."""
    stored = {tensor.name for tensor in proto.graph.initializer}
    stored |= {output for node in proto.graph.node if node.op_type == "Constant" for output in node.output}
    inside = set(tail)
    producer = {output: node for node in proto.graph.node for output in node.output}
    readers: dict[str, set[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name)
    found: set[str] = set()
    for product in (n for n in proto.graph.node if n.name in inside and n.op_type in ("MatMul", "Gemm")):
        if not stored.intersection(product.input):
            continue
        # the tail nodes between the product and the quantised part, and the outside tensors they read
        path, entries = {product.name}, set()
        pending = [name for name in product.input if name not in stored]
        while pending:
            tensor = pending.pop()
            node = producer.get(tensor)
            if node is None or node.name not in inside:
                entries.add(tensor)
            elif node.name not in path:
                path.add(node.name)
                pending.extend(name for name in node.input if name not in stored)
        if len(entries) == 1:
            # up to where the tail also reads a tensor on its own: the path has reached the shared features
            found |= upstream(proto, list(entries), stop=lambda name, path=path: bool(readers[name] & (inside - path)))
    return sorted(found)


def early_convs(proto: onnx.ModelProto, count: int) -> list[str]:
    """The first `count` convolutions and every node before them (the input's normalisation): a pretrained backbone's
    stem and first block, whose batch-norm-folded weights amplify rounding most (the default model's backbone
    features: 39 % rms error all in int8, 14 % with the first three convolutions in float)."""
    first = [node for node in proto.graph.node if node.op_type == "Conv"][:count]
    return sorted(upstream(proto, [name for node in first for name in node.output]))


def upstream(proto: onnx.ModelProto, tensors: list[str], stop: Callable[[str], bool] = lambda _: False) -> set[str]:
    """The names of the nodes `tensors` depend on, not followed past the tensors `stop` names."""
    producer = {output: node for node in proto.graph.node for output in node.output}
    found: set[str] = set()
    pending = list(tensors)
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in found:
            continue
        found.add(node.name)
        pending.extend(name for name in node.input if not stop(name))
    return found


def read_float(proto: onnx.ModelProto, nodes: set[str]) -> None:
    """Let `nodes` read the float tensors, not their quantise-dequantise copies: onnxruntime's QDQ quantiser points
    every reader of a quantised tensor at the copy, nodes left in float included, so the scoring tail would compare a
    rounded feature map with its reconstruction."""
    quantised = {node.output[0]: node.input[0] for node in proto.graph.node if node.op_type == "QuantizeLinear"}
    original = {
        node.output[0]: quantised[node.input[0]]
        for node in proto.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in quantised
    }
    for node in proto.graph.node:
        if node.name in nodes:
            for index, name in enumerate(node.input):
                node.input[index] = original.get(name, name)


def to_int8(source: Path, out: Path, calibration: np.ndarray, cfg: QuantizeConfig) -> None:
    """onnxruntime's static quantisation in QDQ form: int8 weights (per channel), uint8 activations with ranges from
    the normals' minima and maxima; the scoring tail, what it compares with a stored memory and the first convolutions
    stay float."""
    with tempfile.TemporaryDirectory(prefix="lineguard-quantize-") as scratch:
        # shape inference and constant folding first, as onnxruntime advises: without them the quantised default
        # model scored slower than the fp32 file (0.9x where it scored 1.5x with them)
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        proto = onnx.load(str(prepared))
        for index, node in enumerate(proto.graph.node):  # nodes are kept in float by name
            node.name = node.name or f"{node.op_type}_{index}"
        onnx.save(proto, str(prepared))
        tail = scoring_tail(proto)
        kept = [
            *tail,
            *compared_with_stored(proto, tail),
            *early_convs(proto, cfg.float_convs),
            *(node.name for node in proto.graph.node if node.op_type in cfg.float_op_types),
        ]
        quantize_static(
            str(prepared),
            str(out),
            NormalBatches(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=cfg.per_channel,
            nodes_to_exclude=kept,
        )
    quantised = onnx.load(str(out))
    read_float(quantised, set(kept))
    onnx.save(quantised, str(out))


def to_fp16(source: Path, out: Path, calibration: np.ndarray, cfg: QuantizeConfig) -> None:
    """Half-precision weights and arithmetic (`training.export.half.to_float16`: the image input, the outputs and the
    score head stay float32); for GPUs, where fp16 kernels run, and recalibrated like the int8 file."""
    onnx.save(to_float16(onnx.load(str(source))), str(out))


CONVERTERS: dict[str, Converter] = {"int8": to_int8, "fp16": to_fp16}


def measure_parity(source: OnnxModel, candidate: OnnxModel, held_out: np.ndarray, cfg: QuantizeConfig) -> Parity:
    before, after = source.score_in_chunks(held_out).score, candidate.score_in_chunks(held_out).score
    parity = Parity(
        precision=cfg.precision,
        out=cfg.out,
        model_version=candidate.metadata.model_version,
        n_normals=len(held_out),
        normal_correlation=correlation(before, after),
        image_threshold=(source.metadata.image_threshold, candidate.metadata.image_threshold),
        pixel_threshold=(source.metadata.pixel_threshold, candidate.metadata.pixel_threshold),
        settings=cfg.settings(),
    )
    if cfg.speed_rounds:
        speed = scoring_speed([source, candidate], held_out, cfg.speed_batch, cfg.speed_rounds)
        parity = replace(parity, frames_per_second=(speed[0], speed[1]))
    if cfg.validation_dir is not None:
        (first, first_pred), (second, second_pred) = (
            evaluate(path, cfg.validation_dir) for path in (cfg.model, cfg.out)
        )
        parity = replace(
            parity,
            validation_correlation=correlation(first_pred.scores, second_pred.scores),
            image_auroc=(first.image_auroc, second.image_auroc),
            pixel_auroc=(first.pixel_auroc, second.pixel_auroc),
        )
    return parity


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    if len(first) < 2 or np.std(first) == 0 or np.std(second) == 0:
        return float("nan")
    return float(np.corrcoef(first, second)[0, 1])


def scoring_speed(
    models: list[OnnxModel], images: np.ndarray, batch: int, rounds: int, repeats: int = 2
) -> list[float]:
    """Frames per second of each model's `score` on the same batch, rounds interleaved (so a busy moment of the
    machine costs every model alike); the best round of each counts."""
    frames = np.resize(images, (batch, *images.shape[1:])).astype(np.float32)
    for model in models:
        model.warm_up(batch)
    best = [0.0] * len(models)
    for _ in range(rounds):
        for index, model in enumerate(models):
            started = time.perf_counter()
            for _ in range(repeats):
                model.score(frames)
            best[index] = max(best[index], repeats * batch / (time.perf_counter() - started))
    return best


def print_parity(parity: Parity, source_version: str) -> None:
    table = Table(title=f"{parity.precision}: v{source_version} -> v{parity.model_version} ({parity.out})")
    for column in ("", "fp32", parity.precision):
        table.add_column(column)
    if parity.frames_per_second is not None:
        before, after = parity.frames_per_second
        table.add_row(f"raw scoring frames/s (x{parity.speedup:.2f})", f"{before:.1f}", f"{after:.1f}")
    if parity.image_auroc is not None:
        table.add_row("image AUROC", *(f"{v:.4f}" for v in parity.image_auroc))
    if parity.pixel_auroc is not None and None not in parity.pixel_auroc:
        table.add_row("pixel AUROC", *(f"{v:.4f}" for v in parity.pixel_auroc))  # type: ignore[str-format]
    table.add_row("image threshold", *(f"{v:.5g}" for v in parity.image_threshold))
    table.add_row("pixel threshold", *(f"{v:.5g}" for v in parity.pixel_threshold))
    table.add_row(f"score correlation, {parity.n_normals} held-out normals", "", f"{parity.normal_correlation:.4f}")
    if parity.validation_correlation is not None:
        table.add_row("score correlation, validation", "", f"{parity.validation_correlation:.4f}")
    Console(stderr=True).print(table)
