"""Line image build step: register the CUDA and cuDNN libraries of the NVIDIA wheels with the dynamic loader, then
load each library this onnxruntime-gpu build names, so a mismatch fails the build instead of scoring on the CPU.

Run as root in deploy/Dockerfile.line (`python deploy/gpu_libs.py --register`); without --register it only checks.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import sysconfig
from pathlib import Path

LOADER_CONF = Path("/etc/ld.so.conf.d/nvidia-wheels.conf")


def wanted_libraries() -> list[str]:
    """The sonames the CUDA execution provider of this onnxruntime-gpu build loads (its CUDA major, cuDNN 9)."""
    from onnxruntime.capi.build_and_package_info import cuda_version

    major = int(cuda_version.split(".")[0])
    cufft = 12 if major >= 13 else 11  # cuFFT's soname runs one behind from CUDA 13 on (onnxruntime's own rule)
    cuda = [f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}", f"libcufft.so.{cufft}"]
    return [*cuda, "libcurand.so.10", f"libnvrtc.so.{major}", "libcudnn.so.9"]


def unresolved_provider_libraries() -> list[str]:
    """Libraries the CUDA provider links that the loader cannot find, apart from the driver's libcuda.so.1 (the NVIDIA
    container toolkit mounts it when the container starts with a GPU)."""
    import onnxruntime

    provider = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    linked = subprocess.run(["ldd", str(provider)], capture_output=True, text=True, check=True).stdout
    missing = [line.split()[0] for line in linked.splitlines() if "not found" in line]
    return [name for name in missing if not name.startswith("libcuda.so")]


def register() -> list[Path]:
    """Write every lib folder of the site-packages/nvidia wheels into the loader's configuration and run ldconfig."""
    root = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
    folders = sorted(p for p in root.glob("*/lib") if p.is_dir())
    if not folders:
        sys.exit(f"error: no NVIDIA wheel libraries under {root} (onnxruntime-gpu[cuda,cudnn] not installed?)")
    LOADER_CONF.write_text("".join(f"{folder}\n" for folder in folders))
    subprocess.run(["ldconfig"], check=True)
    return folders


def main() -> None:
    if "--register" in sys.argv[1:]:
        for folder in register():
            print(f"loader path: {folder}")
    missing = []
    for name in wanted_libraries():
        try:
            ctypes.CDLL(name)
        except OSError as exc:
            missing.append(f"{name} ({exc})")
    missing += [f"{name} (linked by the CUDA provider)" for name in unresolved_provider_libraries()]
    if missing:
        sys.exit("error: onnxruntime's CUDA provider would fall back to the CPU; cannot load: " + ", ".join(missing))
    print("CUDA and cuDNN libraries load: " + " ".join(wanted_libraries()))


if __name__ == "__main__":
    main()
