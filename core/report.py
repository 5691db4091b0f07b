"""report.json (for machines) and report.md + PNG (for people). No TensorFlow needed to read or write."""

from __future__ import annotations

from pathlib import Path

from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_json, atomic_write_text, read_json

from .layout import RunLayout
from .plots import Point, plot_accuracy_bars, plot_accuracy_latency, plot_layer_errors, save_png  # noqa: F401 - save_png re-exported
from .records import REPORT_SCHEMA, REPORT_SCHEMA_VERSION  # noqa: E402 - see schemas/report.schema.json
from .schema import schema_errors

PLOT_FILE = "report_accuracy.png"
LAYERS_PLOT_FILE = "report_layers.png"


def load_report(path: str | Path) -> tuple[dict, Path]:
    """Read report.json from a path to it or to its run directory. Returns (report, report path)."""
    path = Path(path)
    if not path.exists() and path.suffix != ".json":
        raise UsageError(f"{path}: no such run directory")  # what export and bench say for the same typo
    if path.is_dir():
        path = RunLayout.find(path).report_json if not (path / "report.json").is_file() else path / "report.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such report; run `edgeship export RUN` to create it")
    report = read_json(path, UsageError, "not a readable JSON report")
    if not isinstance(report, dict) or "artifacts" not in report:
        raise UsageError(f"{path}: not an edgeship report (no 'artifacts' key)")
    if not isinstance(report["artifacts"], list) or not all(isinstance(a, dict) for a in report["artifacts"]):
        raise UsageError(f"{path}: malformed report ('artifacts' must be a list of objects); "
                         f"re-run `edgeship export` to write it again")
    problems = schema_errors("report", report)  # a report is data from elsewhere: its shape is checked first
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{path}: not a valid edgeship report: {problems[0][:200]}{more}; re-run `edgeship export` "
                         f"to write it again")
    return report, path


def format_value(value, spec: str, scale: float = 1.0, missing: str = "–") -> str:
    """A number for a table cell; a dash when it is missing. A value that rounds to zero has no minus sign
    (`-0.00` in a Δ column reads as a loss)."""
    if value is None:
        return missing
    text = format(float(value) * scale, spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


def _size(num_bytes) -> str:
    if num_bytes is None:
        return "–"
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1 << 20 else f"{num_bytes / (1 << 20):.2f} MiB"


SUMMARY_HEADERS = ("artifact", "format", "precision", "size", "accuracy", "Δ pp", "agreement", "p50 ms")


def summary_rows(report: dict) -> list[list[str]]:
    rows = []
    for a in report["artifacts"]:
        if a.get("status", "ok") != "ok":
            rows.append([a.get("name", "?"), a.get("format", "?"), a.get("precision", "?"), "–", "FAILED",
                         "–", "–", "–"])
            continue
        latency = a.get("latency_ms") or {}
        rows.append([a["name"], a["format"], a["precision"], _size(a.get("size_bytes")),
                     format_value(a.get("accuracy"), ".2%"), format_value(a.get("accuracy_delta_pp"), "+.2f"),
                     format_value(a.get("agreement"), ".2%"), format_value(latency.get("p50"), ".3f")])
    return rows


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers, rows) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line("-" * w for w in widths), *(line(r) for r in rows)])


def _plot(report: dict, png_path: Path) -> Path | None:

    ok = [a for a in report["artifacts"] if a.get("status", "ok") == "ok" and a.get("accuracy") is not None]
    timed = [a for a in ok if (a.get("latency_ms") or {}).get("p50") is not None]
    if not timed:  # after export, before any bench: accuracy alone
        return plot_accuracy_bars([a["name"] for a in ok], [a["accuracy"] for a in ok], png_path,
                                  "test accuracy per artifact", report.get("reference", {}).get("accuracy"))
    points = []
    for a in timed:
        how = a.get("latency_settings") or {}
        points.append(Point(f"{a['name']} ({a.get('format')}, {a.get('precision')}; threads: "
                            f"{how.get('threads') or 'default'}, batch 1)", a["latency_ms"]["p50"], a["accuracy"],
                            a.get("size_bytes")))
    return plot_accuracy_latency(points, png_path, "test accuracy vs latency, batch 1",
                                 reference=report.get("reference", {}).get("accuracy"))


MAX_FLIPPED_SHOWN = 12


def _top5(row: dict) -> str:
    if row.get("top5_defined") is None:
        return format_value(row.get("top5_agreement"), ".2%")
    return f"{format_value(row.get('top5_agreement'), '.2%')} ({row['top5_defined']:.0%} of images)"


def _parity_details(report: dict) -> list[str]:
    """Statistics per artifact, the worst classes, and the flipped images (Keras right, artifact wrong)."""
    measured = [a for a in report["artifacts"] if a.get("status", "ok") == "ok" and "accuracy_delta_ci95_pp" in a]
    if not measured:
        return []
    rows = [[a["name"], format_value(a["accuracy_delta_pp"], "+.2f"),
             f"[{a['accuracy_delta_ci95_pp'][0]:+.2f}, {a['accuracy_delta_ci95_pp'][1]:+.2f}]",
             format_value(a.get("mcnemar_p"), ".3g"), _top5(a), format_value(a.get("kl_divergence"), ".2e"),
             ", ".join(f"{c['class']} {format_value(c['delta_pp'], '+.1f')}" for c in (a.get("per_class") or [])[:3]) or "–"]
            for a in measured]
    parts = ["## Parity statistics", "",
             "Δ pp with its 95 % paired-bootstrap interval; McNemar: exact two-sided p-value of the images the two "
             "models get differently right (small p = a real difference); top-5: same set of five classes, counted only "
             "on images where both models' 5th score is above their 6th (quantized outputs tie in 1/256 steps, "
             "and a set chosen among tied classes is arbitrary), with that share of images in brackets; KL: mean "
             "KL(Keras ‖ artifact) in nats; worst classes: per-class Δ pp.", "",
             markdown_table(("artifact", "Δ pp", "95 % CI", "McNemar p", "top-5 agreement", "KL", "worst classes"), rows), ""]
    for a in measured:
        for finding in a.get("diagnosis") or []:
            parts += [f"**{a['name']}** — {finding}", ""]
    for a in measured:
        flipped = a.get("flipped") or []
        if flipped:
            parts += [f"**{a['name']}**: {len(flipped)} image(s) Keras gets right and this artifact gets wrong"
                      + (f" (first {MAX_FLIPPED_SHOWN})" if len(flipped) > MAX_FLIPPED_SHOWN else "") + ":", ""]
            parts.append(" ".join(f'<img src="{f["path"]}" width="64" title="{f["label"]} → {f["predicted"]}">'
                                  for f in flipped[:MAX_FLIPPED_SHOWN]))
            parts.append("")
    return parts


def _readiness_section(report: dict) -> list[str]:
    """Will a phone's accelerator take each artifact whole (TFLite GPU delegate; ONNX Runtime NNAPI / CoreML)?"""
    checked = [a for a in report["artifacts"] if a.get("readiness")]
    if not checked:
        return []
    return ["## Device readiness", "",
            "By the vendors' tools: TFLite's Analyzer (GPU delegate) with the delegate's op list, and ONNX Runtime's "
            "mobile usability checker (NNAPI, CoreML). ✓ = the accelerator takes the whole model in one piece; "
            "otherwise the CPU runs the rest. `gate --require-gpu-delegate` fails an artifact without a ✓.", "",
            markdown_table(("artifact", "accelerators"), [[a["name"], describe_readiness(a["readiness"])] for a in checked]), ""]


def _agreement_clause(quantization: dict) -> str:
    """The agreement the search held its trials to, as it recorded it (older reports did not record it)."""
    share = quantization.get("min_agreement")
    return f" (and ≥ {share:.0%} top-1 agreement with Keras)" if isinstance(share, (int, float)) else ""


def describe_readiness(entry: dict | None) -> str:
    """One cell for report tables: each accelerator's verdict."""
    if not entry:
        return "–"
    if "error" in entry:
        return f"not checked ({entry['error']})"
    cells = []
    for name, value in entry.items():
        if "coverage" in value:
            cells.append(f"{name} {'✓' if value['ready'] else '✗'} ({value['partitions']} partition(s), "
                         f"{value['coverage']:.0%} of nodes" + (", batch fixed" if value.get("needs_fixed_shapes") else "")
                         + ")")
        else:
            cells.append(f"{name} {'✓' if value['ready'] else '✗'}"
                         + (f" ({', '.join(value['unsupported_ops'])} on CPU)" if value.get("unsupported_ops") else ""))
    return "; ".join(cells)


def _target_sections(report: dict) -> list[str]:
    """One section per device the gate ran the artifacts on (`edgeship gate RUN --target ...`)."""
    parts = []
    for target in report.get("targets") or []:
        env = target.get("fingerprint") or {}
        parts += [f"## On target {target['target']}", "",
                  f"{env.get('machine', '?')} · {env.get('cpu') or '?'} · {env.get('cores', '?')} cores · "
                  f"{env.get('os', '?')}" + (" · **emulated**" if env.get("emulated") else "")
                  + (f" · measured {target['measured_at']}" if target.get("measured_at") else ""), ""]
        if target.get("status") != "ok":
            parts += [f"Failed: {target.get('error') or 'unknown error'}", ""]
            continue
        parts += ["Each artifact ran there through the device runtime on the target's own decode and preprocessing. "
                  "Δ pp and agreement are against the Keras model on the host; *host agreement* and *max |Δp| vs "
                  "host* against the same artifact run on the host (cross-platform drift).", ""]
        rows = [[a["name"], format_value(a["accuracy"], ".2%"), format_value(a["accuracy_delta_pp"], "+.2f"),
                 format_value(a["agreement"], ".2%"), format_value(a["host_agreement"], ".2%"),
                 format_value(a["max_abs_prob_diff_vs_host"], ".2e"), a.get("runtime") or "?"]
                for a in target.get("artifacts") or []]
        parts += [markdown_table(("artifact", "accuracy", "Δ pp vs host Keras", "agreement with Keras",
                                  "host agreement", "max |Δp| vs host", "runtime there"), rows), ""]
    return parts


LAYERS_SHOWN = 10


def _quantization_section(report: dict, layers_plot: str | None) -> list[str]:
    """Per int8 artifact: the worst layers (diagnosis) and how the shipped artifact was chosen (--max-drop)."""
    rows = [a for a in report["artifacts"] if a.get("layers") or a.get("quantization")]
    if not rows:
        return []
    parts = ["## Quantization", "",
             "Per-layer error of each int8 artifact on validation images (TFLite: QuantizationDebugger RMSE/scale, "
             "≈0.29 is the rounding floor and above 0.7 is suspect; ONNX: SQNR in dB of the noise the layer adds, "
             "from qdq_loss_debug, lower is worse), worst first.", ""]
    if layers_plot:
        parts += [f"![worst layers per int8 artifact]({layers_plot})", ""]
    for a in rows:
        if a.get("layers"):
            table = [[str(i + 1), f"`{layer['name'].split(';')[0]}`", layer.get("op") or "?",
                      format_value(layer.get("error"), ".3g"), layer.get("hint") or ""]
                     for i, layer in enumerate(a["layers"][:LAYERS_SHOWN])]
            parts += [f"**{a['name']}** — worst layers by {a['layers'][0].get('metric')}"
                      + (f" (first {LAYERS_SHOWN} of {len(a['layers'])})" if len(a["layers"]) > LAYERS_SHOWN else "")
                      + ":", "", markdown_table(("#", "layer", "op", "error", "hint"), table), ""]
        q = a.get("quantization")
        if q:
            verdict = "within" if q.get("met_budget") else "**not** within"
            parts += [f"**{a['name']}** — chosen: *{q.get('chosen')}* ({q.get('calibration')}; "
                      f"{len(q.get('float_layers') or [])} node(s) left float), {verdict} the {q.get('budget_pp')} pp "
                      f"budget{_agreement_clause(q)} on the {q.get('split')} split ({q.get('n_images')} "
                      f"images; the test split was not read). Every trial, latency here at 1 thread"
                      + (f" (float32: {q['cost']['float32_p50_ms']:.3f} ms)" if (q.get("cost") or {}).get("float32_p50_ms")
                         else "") + ":", ""]
            trials = [[t["label"], t.get("calibration") or "", str(len(t.get("float_layers") or [])),
                       format_value(t.get("val_accuracy"), ".2%"), format_value(-t.get("val_drop_pp", 0.0), "+.2f"),
                       format_value(t.get("val_agreement"), ".2%"),
                       format_value(t.get("p50_ms"), ".3f"), "✓" if t.get("meets_budget") else ""]
                      for t in q.get("trials") or []]
            parts += [markdown_table(("trial", "calibration", "float nodes", f"{q.get('split')} accuracy", "Δ pp",
                                      "agreement", "p50 ms", "in budget"), trials), ""]
    return parts


def _speedup_section(report: dict) -> list[str]:
    rows = [a for a in report["artifacts"] if a.get("speedup")]
    if not rows:
        return []
    table = [[a["name"], a["speedup"]["over"], f"{a['speedup']['value']:.2f}×",
              format_value(a["speedup"].get("p50_ms"), ".3f"), format_value(a["speedup"].get("float32_p50_ms"), ".3f"),
              str(a["speedup"].get("threads") or "default"), a["speedup"].get("source", "?")] for a in rows]
    return ["## Speed-up over float32", "",
            "Is quantization worth it on this machine? p50 at batch 1 against the float32 artifact of the same format, "
            "same threads (`source`: export's quick timing or `edgeship bench`). `gate --min-speedup X` fails one "
            "below X.", "",
            markdown_table(("artifact", "over", "speed-up", "p50 ms", "float32 p50 ms", "threads", "source"), table), ""]


def render_markdown(report: dict, plot_name: str | None, layers_plot: str | None = None) -> str:
    ref = report.get("reference", {})
    data = report.get("dataset", {})
    parts = [
        "# edgeship report",
        "",
        f"Keras reference accuracy **{format_value(ref.get('accuracy'), '.2%')}** on **{ref.get('n_test', '?')}** test images "
        f"(split manifest `{report.get('split_manifest', '?')}`, sha256 `{str(report.get('split_sha256', ''))[:12]}`).",
        f"Dataset: {data.get('n_images', '?')} images in {data.get('n_classes', '?')} classes; "
        f"**{data.get('n_skipped', 0)} skipped** as unreadable.",
        "",
        *[f"> **Warning:** {w}" for w in report.get("warnings") or []],
        "",
        "## Artifacts",
        "",
        markdown_table(SUMMARY_HEADERS, summary_rows(report)),
        "",
    ]
    threshold = ref.get("unknown_threshold")
    if threshold is not None:
        shares = ", ".join(f"{a['name']} {a['unknown_rejection_rate']:.1%}" for a in report["artifacts"]
                           if a.get("unknown_rejection_rate") is not None)
        parts += ["## Unknown images", "",
                  f"Top score below **{threshold:.3f}** is answered `unknown` (on the device, and by MediaPipe's "
                  f"ImageClassifier from the model's metadata). Share of test images rejected: Keras "
                  f"{format_value(ref.get('unknown_rejection_rate'), '.1%')}" + (f"; {shares}." if shares else "."), ""]
    parts += _parity_details(report)
    timed = [a for a in report["artifacts"] if a.get("latency_ms")]
    if timed:
        rows = [[a["name"], format_value(a["latency_ms"].get("p50"), ".3f"), format_value(a["latency_ms"].get("p90"), ".3f"),
                 format_value(a["latency_ms"].get("p99"), ".3f"), format_value(a.get("throughput_ips"), ".1f"),
                 format_value(a.get("load_ms"), ".1f"), format_value(a.get("max_abs_prob_diff"), ".4f")] for a in timed]
        for a, row in zip(timed, rows):
            how = a.get("latency_settings") or {}
            row += [f"{how.get('runs', '?')} after {how.get('warmup', '?')} warm-up, threads "
                    f"{how.get('threads') or 'default'}, {how.get('target', '?')}, {how.get('measured_at', '?')}"]
        parts += ["## Latency (batch 1)", "",
                  "Each row says how it was measured: timed runs, warm-up runs, threads, target and time.", "",
                  markdown_table(("artifact", "p50 ms", "p90 ms", "p99 ms", "images/s", "load ms", "max |Δp|",
                                  "measured"), rows), ""]
    parts += _quantization_section(report, layers_plot)
    parts += _speedup_section(report)
    parts += _readiness_section(report)
    parts += _target_sections(report)
    failed = [a for a in report["artifacts"] if a.get("status", "ok") != "ok"]
    if failed:
        parts += ["## Failed exports", ""] + [f"- `{a['name']}`: {a.get('error', '?')}" for a in failed] + [""]
    if plot_name:
        parts += [f"![accuracy per artifact]({plot_name})", ""]
    if report.get("training_curves"):
        parts += ["## Training", "", f"![training curves]({report['training_curves']})", ""]
    skipped = data.get("skipped") or []
    if skipped:
        parts += ["## Skipped images", ""] + [f"- `{s['path']}`: {s['reason']}" for s in skipped] + [""]
    env = report.get("environment", {})
    if env:
        libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
        parts += ["## Environment", "", f"{env.get('cpu', '?')} · {env.get('cores', '?')} cores · "
                  f"{' '.join(env.get('cpu_flags', []))} · {env.get('os', '?')}", "", libs, ""]
    return "\n".join(parts)


def write_report(report: dict, report_json: str | Path) -> Path:
    """Write report.json, the plot and report.md beside it, each atomically."""
    report_json = Path(report_json)
    report.setdefault("schema", REPORT_SCHEMA)
    report.setdefault("schema_version", REPORT_SCHEMA_VERSION)
    atomic_write_json(report_json, report)
    plot = _plot(report, report_json.parent / PLOT_FILE)
    layers_plot = plot_layer_errors([(a["name"], a.get("layers") or []) for a in report.get("artifacts") or []],
                                    report_json.parent / LAYERS_PLOT_FILE)
    md_path = report_json.with_suffix(".md")
    atomic_write_text(md_path, render_markdown(report, plot.name if plot else None,
                                               layers_plot.name if layers_plot else None))
    return md_path
