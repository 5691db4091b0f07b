"""Environment fingerprint: library versions and the CPU features that decide inference speed.

Read from package metadata and /proc, never by importing the libraries (TensorFlow would cost seconds
and hundreds of MB, and the fingerprint also runs on edge boards).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("edgeship", "tensorflow", "tensorflow-cpu", "keras", "numpy", "onnx", "onnxruntime", "tf2onnx",
            "ai-edge-litert", "tflite-runtime", "pillow")
CPU_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd",
                         "asimddp", "sve")


def library_versions(packages=PACKAGES) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, sorted(flags.intersection(CPU_FLAGS_OF_INTEREST))


def peak_rss_mb() -> float | None:
    """This process's peak RSS in MB. VmHWM where /proc exists: ru_maxrss of an exec'ed child on Linux
    starts at its parent's peak, which would credit a TensorFlow parent's memory to a runtime-only child."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def gpu_description() -> str | None:
    """'NAME (driver VERSION)' of each NVIDIA GPU, from nvidia-smi when it is installed."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = [line.split(", ") for line in done.stdout.strip().splitlines() if ", " in line]
    return "; ".join(f"{name} (driver {driver})" for name, driver in gpus) or None


def emulated() -> bool:
    """Whether this process runs under QEMU user-mode emulation (an aarch64 userland on an x86 host, say):
    its timings are not the hardware's. QEMU fakes /proc/self and /proc/cpuinfo, but not the parent's
    executable (the QEMU binary when the parent is emulated too), nor the host kernel's release name."""
    try:
        if "qemu" in os.path.basename(os.readlink(f"/proc/{os.getppid()}/exe")):
            return True
    except OSError:
        pass
    machine, release = platform.machine().lower(), platform.release().lower()
    other_kernels = {"aarch64": ("amd64", "x86_64"), "arm64": ("amd64", "x86_64"), "x86_64": ("arm64", "aarch64")}
    return any(name in release for name in other_kernels.get(machine, ()))  # e.g. Debian's 6.1.0-18-amd64


def fingerprint() -> dict:
    model, flags = _cpuinfo()
    return {
        "gpu": gpu_description(),
        "emulated": emulated(),
        "machine": platform.machine(),
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": flags,
        "os": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
        "libraries": library_versions(),
    }
