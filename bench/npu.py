"""Arm Ethos-U NPUs through Vela, Arm's compiler for them (`pip install 'edgeship[mcu]'`): which operators of an
int8 .tflite the NPU takes (and Vela's own reason for each it leaves on the CPU), the cycles, SRAM and flash for a
named configuration, and the time that is at its clock. These are Vela's estimates, not measurements: they go into
the report's NpuStage, never into bench rows, so `--compare` and the Pareto front never mix them with timings."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeship.core.figures import NpuMapping, NpuOperator
from edgeship.runtime.fileio import atomic_write_bytes, sha256_bytes
from edgeship.runtime.errors import UsageError

VELA = "import sys; from ethosu.vela.vela import main; sys.exit(main())"
_CPU_WARNING = re.compile(r"Warning \(supported operators\) operator: (\w+), ofm: '(.*?)'\s*\nReason: (.*?)(?:\n\s*\n|\Z)",
                          re.S)
_OP_COUNT = re.compile(r"(CPU|NPU) operators = (\d+)")


def npu_configs() -> tuple[str, ...]:
    """The Ethos-U configurations the installed Vela ships (ethos-u55-128, ethos-u65-256, ...)."""
    try:
        from ethosu.vela.architecture_features import Accelerator
    except ImportError:
        raise UsageError("ethos-u-vela is not installed here; pip install 'edgeship[mcu]'") from None
    return tuple(a.value for a in Accelerator)


def vela_version() -> str | None:
    try:
        from importlib.metadata import version

        return f"vela {version('ethos-u-vela')}"
    except Exception:
        return None


def compile_for_npu(model: Path, config: str, scratch: Path | None = None, keep: Path | None = None) -> NpuMapping:
    """MODEL compiled by Vela for CONFIG with its default system configuration and memory mode; Vela's optimized
    .tflite is written to KEEP (atomically) when given."""
    if config not in npu_configs():
        raise UsageError(f"--npu {config}: not an Ethos-U configuration Vela knows; choose from "
                         f"{', '.join(npu_configs())}")
    with tempfile.TemporaryDirectory(prefix="edgeship-vela-", dir=scratch) as out:
        done = subprocess.run([sys.executable, "-c", VELA, str(model), "--accelerator-config", config,
                               "--output-dir", out, "--verbose-performance"], capture_output=True, text=True,
                              timeout=600)
        summary = next(Path(out).glob("*_summary_*.csv"), None)
        layers = next(Path(out).glob("*_per-layer.csv"), None)
        if done.returncode != 0 or summary is None or layers is None:
            last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-1:]
            return NpuMapping(config, vela=vela_version(), error=f"Vela failed: {last[0][:300] if last else 'no output'}")
        mapping = _mapping(config, done.stdout, _rows(summary)[0], _rows(layers))
        optimized = next(Path(out).glob("*_vela.tflite"), None)
        if keep is not None and optimized is not None:
            data = optimized.read_bytes()
            atomic_write_bytes(keep, data)
            mapping.file, mapping.sha256 = keep.name, sha256_bytes(data)
        return mapping


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _mapping(config: str, log: str, summary: dict, layers: list[dict]) -> NpuMapping:
    reasons = {name: " ".join(reason.split()) for _, name, reason in _CPU_WARNING.findall(log)}
    counts = {side: int(n) for side, n in _OP_COUNT.findall(log)}  # Vela's own count of the original operators
    operators = [NpuOperator(op=row["Original Operator"], target=row["Target"], name=row.get("Name") or None,
                             kernel=row["NNG Operator"], cycles=int(float(row["Op Cycles"] or 0)),
                             macs=int(float(row["MAC Count"] or 0)),
                             reason=reasons.get(row.get("Name")) if row["Target"] != "NPU" else None)
                 for row in layers]
    clock, cycles = float(summary["core_clock"]), int(float(summary["cycles_total"]))
    macs = sum(o.macs or 0 for o in operators)
    on_npu = sum(o.macs or 0 for o in operators if o.target == "NPU")
    kib = 1024
    flash = sum(float(summary.get(f"{where}_memory_used") or 0) for where in ("off_chip_flash", "on_chip_flash"))
    return NpuMapping(config, system_config=summary.get("system_config"), memory_mode=summary.get("memory_mode"),
                      clock_hz=clock, cycles=cycles, estimated_ms=cycles / clock * 1000.0,
                      npu_ops=counts.get("NPU", sum(o.target == "NPU" for o in operators)),
                      cpu_ops=counts.get("CPU", sum(o.target != "NPU" for o in operators)),
                      npu_mac_share=on_npu / macs if macs else None,
                      sram_bytes=int(float(summary.get("sram_memory_used") or 0) * kib),
                      flash_bytes=int(flash * kib), dram_bytes=int(float(summary.get("dram_memory_used") or 0) * kib),
                      vela=vela_version(), operators=operators)


def map_run(run: str | Path, configs: list[str]) -> list[tuple[str, NpuMapping]]:
    """Every int8 .tflite of RUN compiled for each of CONFIGS (its bytes checked against the bundle record first);
    the mappings merged into the run's report as its NpuStage. (artifact name, mapping) pairs."""
    from edgeship.core.layout import NPU_DIR, RunLayout
    from edgeship.core.report_store import update_report
    from edgeship.core.stages import NpuStage
    from edgeship.runtime.spec import Bundle

    layout = RunLayout.find(run)
    bundle = Bundle.load(layout.bundle)
    found: list[tuple[str, NpuMapping]] = []
    with tempfile.TemporaryDirectory(prefix="edgeship-npu-") as tmp:
        for record in (r for r in bundle.artifacts if r.ok and r.format == "tflite" and r.precision == "int8"):
            model = Path(tmp, record.file)
            model.write_bytes(bundle.read_artifact(layout.bundle, record))
            for config in configs:  # RUN/npu/model_int8.ethos-u55-128_vela.tflite
                keep = layout.root / NPU_DIR / f"{Path(record.file).stem}.{config}_vela.tflite"
                mapping = compile_for_npu(model, config, Path(tmp), keep)
                mapping.file = f"{NPU_DIR}/{mapping.file}" if mapping.file else None
                found.append((record.name, mapping))

    def merge(report) -> None:
        for row in report.artifacts:
            mine = [m for name, m in found if name == row.name]
            if mine:
                kept = [m for m in row.npu or [] if m.config not in configs]
                row.merge(NpuStage(npu=kept + mine))

    if layout.report_json.is_file() and found:
        update_report(layout, "bench", merge)
    return found
