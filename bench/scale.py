"""The scale benchmark: the whole pipeline on Food-101-shaped trees of growing size, time and peak RSS per step.

    python -m edgeship.bench.scale --sizes 1010,10100,101000 --data-root /data/edgeship-scale --out scale/

Each step runs `edgeship` in its own process, as a user would, and its peak RSS comes from the kernel's
accounting of that process (wait4). `train` records seconds and peak RSS per phase in its provenance and
`export` the seconds of each step of the parity loop in report.json; this module only reads them.
The tree is drawn once per size under --data-root (outside the repository) and reused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from edgeship.runtime.fileio import atomic_write_json, atomic_write_text

from .food101_shaped import RECIPE, write_food101_shaped

FORMATS = "tflite,tflite_int8,onnx_int8"
# A frozen random small CNN: random Keras applications give constant features (see trainer's warning), and
# no pretrained weights download here; its features separate the drawn classes, so the gate has real figures.
TRAIN_ARGS = ["--backbone", "small_cnn", "--freeze-backbone", "--image-size", "224", "--epochs", "3",
              "--batch-size", "64"]


def run_step(args: list[str], log: Path) -> dict:
    """Run `edgeship ARGS` in a child process: wall seconds, its peak RSS (MiB) and exit code."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "edgeship", *args], stdout=handle, stderr=subprocess.STDOUT,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit": proc.returncode}


def measure(n_images: int, data_root: Path, work: Path, train_args: list[str] = TRAIN_ARGS) -> dict:
    data = data_root / f"food101_{n_images}"
    recipe = data / "meta" / "recipe.json"
    if not recipe.is_file() or json.loads(recipe.read_text()).get("version") != RECIPE["version"]:
        start = time.perf_counter()
        write_food101_shaped(data, n_images)
        generated = round(time.perf_counter() - start, 1)
    else:
        generated = None
    run = work / f"run_{n_images}"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    train = run_step(["train", str(data), "--out", str(run), "--overwrite", *train_args], logs / f"train_{n_images}.log")
    _check(train, "train", logs / f"train_{n_images}.log")
    export = run_step(["export", str(run), "--formats", FORMATS], logs / f"export_{n_images}.log")
    _check(export, "export", logs / f"export_{n_images}.log")
    gate = run_step(["gate", str(run)], logs / f"gate_{n_images}.log")
    provenance = json.loads((run / "bundle" / "edgeship.json").read_text())["provenance"]
    profile = provenance["training"]["profile"]
    report = json.loads((run / "report.json").read_text())
    timing = report["timing"]
    counts = provenance["split"]["counts"]
    return {
        "n_images": n_images, "n_train": counts.get("train"), "n_test": counts.get("test"),
        "generate_seconds": generated,
        "scan_split_seconds": profile["scan_split"]["seconds"],
        "feature_cache_seconds": profile["feature_cache"]["seconds"],
        "head_epoch_seconds": round((profile["train_phase1"]["seconds"] - profile["feature_cache"]["seconds"])
                                    / max(1, provenance["training"]["epochs_per_phase"].get("phase1", 1)), 2),
        "train": train,
        "export": export,
        "parity_seconds": timing["total_seconds"],
        "parity_steps_seconds": timing["seconds"],
        "parity_overhead": round(timing["total_seconds"] / max(1e-9, sum(timing["seconds"].values())), 3),
        "gate": gate,
        "keras_accuracy": report["reference"]["accuracy"],
        "gate_passed": gate["exit"] == 0,
        "artifacts": {row["name"]: row.get("accuracy_delta_pp") for row in report["artifacts"]},
    }


def _check(step: dict, name: str, log: Path) -> None:
    if step["exit"] != 0:
        raise SystemExit(f"edgeship {name} exited {step['exit']}; see {log}")


def growth(rows: list[dict], key) -> float | None:
    """The exponent b of key ~ N^b, least squares on log-log (1.0 = linear, 0.0 = flat)."""
    points = [(math.log(r["n_images"]), math.log(key(r))) for r in rows if key(r)]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return round(sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points), 2)


COLUMNS = [
    ("N", lambda r: f"{r['n_images']:,}"),
    ("scan+split s", lambda r: r["scan_split_seconds"]),
    ("feature cache s", lambda r: r["feature_cache_seconds"]),
    ("1 head epoch s", lambda r: r["head_epoch_seconds"]),
    ("train s / peak MiB", lambda r: f"{r['train']['seconds']} / {r['train']['peak_rss_mib']:,.0f}"),
    ("parity s (loop/steps)", lambda r: f"{r['parity_seconds']} ({r['parity_overhead']:.2f}×)"),
    ("export s / peak MiB", lambda r: f"{r['export']['seconds']} / {r['export']['peak_rss_mib']:,.0f}"),
    ("gate s / peak MiB", lambda r: f"{r['gate']['seconds']} / {r['gate']['peak_rss_mib']:,.0f}"),
]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(cell(r)) for _, cell in COLUMNS) + " |" for r in rows]
    fits = {
        "feature cache time": growth(rows, lambda r: r["feature_cache_seconds"]),
        "parity time": growth(rows, lambda r: r["parity_seconds"]),
        "train time": growth(rows, lambda r: r["train"]["seconds"]),
        "export peak RSS": growth(rows, lambda r: r["export"]["peak_rss_mib"]),
        "train peak RSS": growth(rows, lambda r: r["train"]["peak_rss_mib"]),
    }
    lines += ["", "Fitted growth, time or memory ∝ N^b: " + ", ".join(f"{k} b = {v}" for k, v in fits.items())]
    if len(rows) > 1:
        lines.append(f"Export peak RSS at the largest N is {rows[-1]['export']['peak_rss_mib'] / rows[0]['export']['peak_rss_mib']:.2f}× "
                     f"that at the smallest.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeship.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1010,10100", help="image counts, comma-separated (101,000 is ~4 GB)")
    parser.add_argument("--data-root", default=os.environ.get("EDGESHIP_SCALE_DATA", "/tmp/edgeship-scale"))
    parser.add_argument("--out", default="scale-results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sorted(int(size) for size in args.sizes.split(",") if size.strip()):
        print(f"scale benchmark: N = {n:,}", flush=True)
        rows.append(measure(n, Path(args.data_root), out))
        atomic_write_json(out / "scale.json", rows)
        atomic_write_text(out / "scale.md", markdown(rows))
        print(markdown(rows), flush=True)
    print(f"results: {out / 'scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
