"""Execution providers: which onnxruntime is asked for (opt-in TensorRT, CUDA, the CPU always last), the sessions
opened on them, and why the provider that runs does, said once in plain words."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from pipeline.errors import ModelLoadError
from pipeline.settings import Settings

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class TensorRT:
    """Opt-in TensorRT on top of CUDA (`LINEGUARD_TENSORRT`). It builds an engine for the model at the first session,
    minutes for a large model; `cache_dir` keeps the engines so that the next start and every reload of the same file
    load them instead (None: rebuilt at every start). The engines are built for batches of 1 to `max_batch` frames,
    so a short last batch does not build another one."""

    cache_dir: Path | None = None
    max_batch: int = 32

    @classmethod
    def from_settings(cls, settings: Settings) -> TensorRT | None:
        if not settings.tensorrt:
            return None
        return cls(cache_dir=settings.tensorrt_cache_dir, max_batch=settings.batch_size)

    def options(self, inputs: dict[str, tuple[int, ...]], fp16: bool) -> dict[str, str]:
        """The provider's options for a graph whose inputs have these per-frame shapes (the batch axis left out)."""

        def shapes(batch: int) -> str:
            return ",".join(f"{name}:{'x'.join(str(d) for d in (batch, *shape))}" for name, shape in inputs.items())

        options = {
            "trt_fp16_enable": str(fp16),
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(self.max_batch),
            "trt_profile_max_shapes": shapes(self.max_batch),
        }
        if self.cache_dir is not None:
            options |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(self.cache_dir)}
        return options


Provider = str | tuple[str, dict[str, str]]


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def choose_providers(prefer_gpu: bool = True, tensorrt: dict[str, str] | None = None) -> list[Provider]:
    """What to ask onnxruntime for, in order: TensorRT (with `tensorrt`, its options) when asked for and in this build,
    then CUDA when the caller wants the GPU and this build has it, the CPU always last."""
    available = ort.get_available_providers()
    if not prefer_gpu or CUDA not in available:
        return [CPU]
    if tensorrt is not None and TENSORRT in available:
        return [(TENSORRT, tensorrt), CUDA, CPU]
    return [CUDA, CPU]


def provider_reason(
    running: str, prefer_gpu: bool, tensorrt: TensorRT | None, available: list[str], why_not: Callable[[str], str]
) -> str:
    """Why `running` scores, for the one log line (empty for CUDA when nothing else was asked): `why_not(provider)`
    says why a provider in this build did not load."""
    if running == TENSORRT:
        assert tensorrt is not None
        cache = tensorrt.cache_dir
        return f"asked for; engine cache {cache}" if cache else "asked for; no engine cache: built at every start"
    if not prefer_gpu:
        return "by choice: prefer_gpu is off" + ("; TensorRT asked for, which needs the GPU" if tensorrt else "")
    if running == CUDA:
        if tensorrt is None:
            return ""
        if TENSORRT not in available:
            return "asked for TensorRT, which this onnxruntime build does not have"
        return f"asked for TensorRT, which is not loadable: {why_not(TENSORRT)}"
    cuda = why_not(CUDA) if CUDA in available else "not in this onnxruntime build (the CPU package)"
    return f"CUDA provider unavailable: {cuda}" + ("; TensorRT asked for, which needs it too" if tensorrt else "")


def open_session(
    graph: bytes | str,
    path: Path,
    prefer_gpu: bool,
    intra_op_threads: int = 0,
    tensorrt: dict[str, str] | None = None,
    spinning: bool = True,
) -> ort.InferenceSession:
    """An onnxruntime session for `graph` (serialized bytes or a file name) on the preferred providers (TensorRT with
    these options when given).

    onnxruntime logs a multi-line error when the CUDA libraries are missing and then falls back to the CPU on its own;
    its log is kept quiet here and the caller says once, plainly, what runs. TensorRT is asked for only when its
    libraries load: onnxruntime prints its failure to stdout rather than to its log. A graph it rejects is a
    ModelLoadError.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Spinning keeps onnxruntime's idle threads busy-waiting for the next operator: fastest alone, but the cycles it
    # burns are the decode pool's and the writer's on a small machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 4
    wanted = choose_providers(prefer_gpu, tensorrt)
    if provider_name(wanted[0]) == TENSORRT and tensorrt_missing():
        wanted = wanted[1:]
    if CUDA in wanted:
        # The CUDA provider's library load failure goes to the default logger, not the session's.
        ort.set_default_logger_severity(4)
    try:
        return ort.InferenceSession(graph, sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelLoadError(str(path), f"onnxruntime rejected the graph: {exc}") from exc


def why_not_loaded(provider: str) -> str:
    """Why a GPU provider of this build did not load, as far as can be told cheaply."""
    if provider == TENSORRT:
        return tensorrt_missing() or "it failed to start (onnxruntime printed why)"
    return cuda_fallback_reason()


def tensorrt_missing() -> str:
    """What the TensorRT provider needs and this machine lacks, as far as can be told cheaply (empty: nothing)."""
    if cuda_driver_missing():
        return cuda_fallback_reason()
    for library in ("libnvinfer.so.10", "libnvonnxparser.so.10"):
        try:
            ctypes.CDLL(library)
        except OSError:
            return f"the TensorRT 10 libraries are missing ({library})"
    return ""


def cuda_driver_missing() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return True
    return False


def cuda_fallback_reason() -> str:
    """Why the CUDA provider did not load, as far as can be told cheaply: the driver first (a container started without
    a GPU has none), then the CUDA and cuDNN libraries this onnxruntime build needs."""
    if cuda_driver_missing():
        return "no NVIDIA driver (libcuda.so.1): no GPU on this machine, or the container was started without one"
    from onnxruntime.capi.build_and_package_info import cuda_version

    return f"no usable GPU, or the CUDA {cuda_version} / cuDNN 9 libraries are missing"
