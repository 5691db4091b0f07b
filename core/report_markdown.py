"""report.md: the parity report for people, section by section, with its plots. Every outside string goes
through `md()` (a class name or a model's metadata cannot inject Markdown or HTML)."""

from __future__ import annotations

from pathlib import Path

from .plots import Point, plot_accuracy_bars, plot_accuracy_latency
from .records import LatencySettings, ParityReport, ParityRow, QuantizationRecord, Readiness
from .report import SUMMARY_HEADERS, size_text, attribute, format_value, markdown_table, md, row_p50, row_threads, summary_rows

def plot_report(report: ParityReport, png_path: Path) -> Path | None:
    """The accuracy plot of report.md: against latency when any artifact was timed, else accuracy alone."""
    ok = [a for a in report.artifacts if a.ok and a.accuracy is not None]
    timed = [a for a in ok if row_p50(a) is not None]
    if not timed:  # after export, before any bench: accuracy alone
        return plot_accuracy_bars([a.name for a in ok], [a.accuracy for a in ok], png_path,
                                  "test accuracy per artifact", report.reference.accuracy)
    points = [Point(f"{a.name} ({a.format}, {a.precision}; threads: {row_threads(a)}, batch 1)", row_p50(a), a.accuracy,
                    a.size_bytes) for a in timed]
    return plot_accuracy_latency(points, png_path, "test accuracy vs latency, batch 1",
                                 reference=report.reference.accuracy)


MAX_FLIPPED_SHOWN = 12


def _top5(row: ParityRow) -> str:
    if row.top5_defined is None:
        return format_value(row.top5_agreement, ".2%")
    return f"{format_value(row.top5_agreement, '.2%')} ({row.top5_defined:.0%} of images)"


def _parity_details(report: ParityReport) -> list[str]:
    """Statistics per artifact, the worst classes, and the flipped images (Keras right, artifact wrong)."""
    measured = [a for a in report.artifacts if a.ok and a.accuracy_delta_ci95_pp is not None]
    if not measured:
        return []
    rows = [[a.name, format_value(a.accuracy_delta_pp, "+.2f"),
             f"[{a.accuracy_delta_ci95_pp[0]:+.2f}, {a.accuracy_delta_ci95_pp[1]:+.2f}]",
             format_value(a.mcnemar_p, ".3g"), _top5(a), format_value(a.kl_divergence, ".2e"),
             ", ".join(f"{c['class']} {format_value(c['delta_pp'], '+.1f')}" for c in (a.per_class or [])[:3]) or "–"]
            for a in measured]
    parts = ["## Parity statistics", "",
             "Δ pp with its 95 % paired-bootstrap interval; McNemar: exact two-sided p-value of the images the two "
             "models get differently right (small p = a real difference); top-5: same set of five classes, counted only "
             "on images where both models' 5th score is above their 6th (quantized outputs tie in 1/256 steps, "
             "and a set chosen among tied classes is arbitrary), with that share of images in brackets; KL: mean "
             "KL(Keras ‖ artifact) in nats; worst classes: per-class Δ pp.", "",
             markdown_table(("artifact", "Δ pp", "95 % CI", "McNemar p", "top-5 agreement", "KL", "worst classes"), rows), ""]
    for a in measured:
        for finding in a.diagnosis or []:
            parts += [f"**{md(a.name)}** — {md(finding)}", ""]
    for a in measured:
        flipped = a.flipped or []
        if flipped:
            parts += [f"**{md(a.name)}**: {len(flipped)} image(s) Keras gets right and this artifact gets wrong"
                      + (f" (first {MAX_FLIPPED_SHOWN})" if len(flipped) > MAX_FLIPPED_SHOWN else "") + ":", ""]
            parts.append(" ".join(f'<img src="{attribute(f["path"])}" width="64" '
                                  f'title="{attribute(f["label"])} → {attribute(f["predicted"])}">'
                                  for f in flipped[:MAX_FLIPPED_SHOWN]))
            parts.append("")
    return parts


def _readiness_section(report: ParityReport) -> list[str]:
    """Will a phone's accelerator take each artifact whole (TFLite GPU delegate; ONNX Runtime NNAPI / CoreML)?"""
    checked = [a for a in report.artifacts if a.readiness]
    if not checked:
        return []
    return ["## Device readiness", "",
            "By the vendors' tools: TFLite's Analyzer (GPU delegate) with the delegate's op list, and ONNX Runtime's "
            "mobile usability checker (NNAPI, CoreML). ✓ = the accelerator takes the whole model in one piece; "
            "otherwise the CPU runs the rest. `gate --require-gpu-delegate` fails an artifact without a ✓.", "",
            markdown_table(("artifact", "accelerators"), [[a.name, describe_readiness(a.readiness)] for a in checked]), ""]


def _agreement_clause(quantization: QuantizationRecord) -> str:
    """The agreement the search held its trials to, as it recorded it (older reports did not record it)."""
    share = quantization.min_agreement
    return f" (and ≥ {share:.0%} top-1 agreement with Keras)" if isinstance(share, (int, float)) else ""


def describe_readiness(entry: Readiness | None) -> str:
    """One cell for report tables: each accelerator's verdict."""
    if not entry:
        return "–"
    if entry.error is not None:
        return f"not checked ({entry.error})"
    cells = []
    for name, value in entry.accelerators.items():
        mark = "✓" if value.ready else "✗"
        if value.partitioned:
            cells.append(f"{name} {mark} ({value.partitions} partition(s), {value.coverage:.0%} of nodes"
                         + (", batch fixed" if value.needs_fixed_shapes else "") + ")")
        else:
            cells.append(f"{name} {mark}" + (f" ({', '.join(value.unsupported_ops)} on CPU)" if value.unsupported_ops
                                             else ""))
    return "; ".join(cells)


def _target_sections(report: ParityReport) -> list[str]:
    """One section per device the gate ran the artifacts on (`edgeship gate RUN --target ...`)."""
    parts = []
    for target in report.targets or []:
        env = target.fingerprint or {}
        parts += [f"## On target {md(target.target)}", "",
                  f"{md(env.get('machine', '?'))} · {md(env.get('cpu') or '?')} · {md(env.get('cores', '?'))} cores · "
                  f"{md(env.get('os', '?'))}" + (" · **emulated**" if env.get("emulated") is True else "")
                  + (f" · measured {md(target.measured_at)}" if target.measured_at else ""), ""]
        if not target.ok:
            parts += [f"Failed: {md(target.error or 'unknown error')}", ""]
            continue
        parts += ["Each artifact ran there through the device runtime on the target's own decode and preprocessing. "
                  "Δ pp and agreement are against the Keras model on the host; *host agreement* and *max |Δp| vs "
                  "host* against the same artifact run on the host (cross-platform drift).", ""]
        rows = [[a.name, format_value(a.accuracy, ".2%"), format_value(a.accuracy_delta_pp, "+.2f"),
                 format_value(a.agreement, ".2%"), format_value(a.host_agreement, ".2%"),
                 format_value(a.max_abs_prob_diff_vs_host, ".2e"), a.runtime or "?"] for a in target.artifacts]
        parts += [markdown_table(("artifact", "accuracy", "Δ pp vs host Keras", "agreement with Keras",
                                  "host agreement", "max |Δp| vs host", "runtime there"), rows), ""]
    return parts


LAYERS_SHOWN = 10


def _quantization_section(report: ParityReport, layers_plot: str | None) -> list[str]:
    """Per int8 artifact: the worst layers (diagnosis) and how the shipped artifact was chosen (--max-drop)."""
    rows = [a for a in report.artifacts if a.layers or a.quantization]
    if not rows:
        return []
    parts = ["## Quantization", "",
             "Per-layer error of each int8 artifact on validation images (TFLite: QuantizationDebugger RMSE/scale, "
             "≈0.29 is the rounding floor and above 0.7 is suspect; ONNX: SQNR in dB of the noise the layer adds, "
             "from qdq_loss_debug, lower is worse), worst first.", ""]
    if layers_plot:
        parts += [f"![worst layers per int8 artifact]({layers_plot})", ""]
    for a in rows:
        if a.layers:
            table = [[str(i + 1), f"`{layer['name'].split(';')[0]}`", layer.get("op") or "?",
                      format_value(layer.get("error"), ".3g"), layer.get("hint") or ""]
                     for i, layer in enumerate(a.layers[:LAYERS_SHOWN])]
            parts += [f"**{a.name}** — worst layers by {a.layers[0].get('metric')}"
                      + (f" (first {LAYERS_SHOWN} of {len(a.layers)})" if len(a.layers) > LAYERS_SHOWN else "")
                      + ":", "", markdown_table(("#", "layer", "op", "error", "hint"), table), ""]
        if a.quantization:
            parts += _search_lines(a.name, a.quantization)
    return parts


def _search_lines(name: str, q: QuantizationRecord) -> list[str]:
    verdict = "within" if q.met_budget else "**not** within"
    float32 = q.cost.float32_p50_ms if q.cost else None
    lines = [f"**{name}** — chosen: *{q.chosen}* ({q.calibration}; {len(q.float_layers or [])} node(s) left float), "
             f"{verdict} the {q.budget_pp} pp budget{_agreement_clause(q)} on the {q.split} split ({q.n_images} "
             f"images; the test split was not read). Every trial, latency here at 1 thread"
             + (f" (float32: {float32:.3f} ms)" if float32 else "") + ":", ""]
    if q.equalized_pairs is not None:
        lines += [f"Cross-layer equalization (Nagel et al. 2019) tried first: {len(q.equalized_pairs)} pair(s) "
                  f"equalized ({'; '.join(q.equalized_pairs) or 'none'})"
                  + (f"; skipped: {'; '.join(q.equalization_skipped)}" if q.equalization_skipped else "") + ".", ""]
    if q.bias_corrected_layers is not None:
        lines += [f"Bias correction (Nagel et al. 2019, §4.2, on the calibration images): "
                  f"{len(q.bias_corrected_layers)} layer(s) corrected ({'; '.join(q.bias_corrected_layers) or 'none'})"
                  + (f"; skipped: {'; '.join(q.bias_correction_skipped)}" if q.bias_correction_skipped else "") + ".",
                  ""]
    if q.quantization_aware:
        qat = q.quantization_aware
        scores = ", ".join(f"{a:.2%}" for a in qat.get("val_accuracy_by_epoch", []))
        lines += [f"Quantization-aware training (the last rung, run because no full-int8 trial held): "
                  f"{qat.get('epochs')} epoch(s) on {qat.get('train_images')} training images in "
                  f"{format_value(qat.get('seconds'), '.0f')} s, {q.split} accuracy by epoch {scores}; epoch "
                  f"{qat.get('chosen_epoch')} kept; its trial's agreement is with the fake-quantized model it is "
                  f"converted from.", ""]
    trials = [[t.label, t.calibration or "", str(len(t.float_layers or [])), format_value(t.val_accuracy, ".2%"),
               format_value(-(t.val_drop_pp or 0.0), "+.2f"), format_value(t.val_agreement, ".2%"),
               format_value(t.p50_ms, ".3f"), format_value(t.speedup_vs_float32, ".2f") + "×",
               format_value(t.seconds, ".1f"), "✓" if t.meets_budget else ""] for t in q.trials]
    return lines + [markdown_table(("trial", "calibration", "float nodes", f"{q.split} accuracy", "Δ pp", "agreement",
                                    "p50 ms", "vs float32", "seconds", "in budget"), trials), ""]


def _fake_quant_section(report: ParityReport) -> list[str]:
    """A QAT run: its int8 files against the fake-quantized model they were converted from, beside the first Δ."""
    fake = report.fake_quant_reference
    if not fake:
        return []
    rows = [[md(a.name), format_value(a.accuracy_delta_pp, "+.2f"), format_value(a.vs_fake_quant.get("accuracy_delta_pp"), "+.2f"),
             format_value(a.vs_fake_quant.get("agreement"), ".2%")] for a in report.artifacts if a.vs_fake_quant]
    return ["## Quantization-aware training", "",
            f"This run was fine-tuned with fake quantization (`edgeship qat`); its int8 files are converted from "
            f"`{md(fake.get('path'))}` (sha256 `{md(str(fake.get('sha256', ''))[:12])}`), which has "
            f"{format_value(fake.get('accuracy'), '.2%')} test accuracy and agrees {format_value(fake.get('agreement_with_float'), '.2%')} "
            f"with the float model. Δ pp above is against the float model you trained; here each file is also set "
            f"against the fake-quantized one:", "",
            markdown_table(("artifact", "Δ pp vs float", "Δ pp vs fake-quantized", "agreement with it"), rows), ""]


def describe_cost(cost) -> list[str]:
    """Table cells: parameters, multiply-adds, weight bytes, peak activations (dashes and the reason if unread)."""
    if cost is None or cost.error:
        return ["–", "–", "–", "–"]
    return [f"{cost.params / 1e6:.3f} M", f"{cost.macs / 1e6:.2f} M", size_text(cost.weight_bytes),
            size_text(cost.peak_activation_bytes)]


STATIC_COST_HEADERS = ("params", "multiply-adds", "weights", "peak activations")


def _static_cost_section(report: ParityReport) -> list[str]:
    rows = [a for a in report.artifacts if a.static_cost]
    if not rows:
        return []
    table = [[a.name, a.format, a.precision, *describe_cost(a.static_cost), format_value(row_p50(a), ".3f"),
              a.static_cost.error or a.static_cost.method or ""] for a in rows]
    return ["## Static cost", "",
            "Read from each file's graph, per image: parameters (BatchNorm folded), multiply-adds of the convolutions "
            "and matrix products, the constant data stored, and the peak activation memory (the least a tensor "
            "arena must hold; for ONNX, of the graph as stored). These set a microcontroller's or a phone's memory "
            "budget; p50 is what this machine measured.", "",
            markdown_table(("artifact", "format", "precision", *STATIC_COST_HEADERS, "p50 ms", "read by"), table), ""]


def _delta_pp(there, own) -> str:
    from edgeship.core.integrity import finite

    return f"{(there - own) * 100:+.2f}" if finite(there) and finite(own) else "–"


def _other_runtimes_section(report: ParityReport) -> list[str]:
    rows = [(a, other) for a in report.artifacts for other in a.other_runtimes or []]
    if not rows:
        return []
    table = [[a.name, a.runtime or "?", other.runtime, format_value(other.agreement, ".2%"),
              format_value(other.max_abs_prob_diff, ".2e"), format_value(other.accuracy, ".2%"),
              format_value(a.accuracy, ".2%"), _delta_pp(other.accuracy, a.accuracy),
              size_text(other.arena_bytes) if other.arena_bytes else "–",
              size_text(other.flash_bytes) if other.flash_bytes else "–"] for a, other in rows]
    refused = [f"- {md(a.name)} under {md(other.runtime)}: {md(other.error)}" for a, other in rows if other.error]
    return ["## Other runtimes", "",
            "The same file run by another runtime on the same test images, against its own runtime: OpenVINO reads "
            "the .tflite and .onnx artifacts directly (float32 arithmetic for float32 files); TensorFlow Lite Micro "
            "runs the .tflite files with a microcontroller's kernels, and its tensor arena is measured by allocating "
            "it; its flash is the file plus a 64 KiB allowance for the runtime's code (an estimate).", "",
            markdown_table(("artifact", "own runtime", "other runtime", "top-1 agreement", "max |Δp|",
                            "accuracy there", "accuracy (own)", "Δ pp", "arena", "flash"), table), "",
            *([*refused, ""] if refused else [])]


def _npu_section(report: ParityReport) -> list[str]:
    rows = [(a, m) for a in report.artifacts for m in a.npu or []]
    if not rows:
        return []
    table = [[a.name, m.config, m.error or f"{m.npu_ops}/{(m.npu_ops or 0) + (m.cpu_ops or 0)}",
              format_value(m.npu_mac_share, ".0%"), f"{m.cycles:,}" if m.cycles else "–",
              format_value(m.estimated_ms, ".3f"), size_text(m.sram_bytes) if m.sram_bytes else "–",
              size_text(m.flash_bytes or m.dram_bytes) if (m.flash_bytes or m.dram_bytes) else "–",
              md(m.file) if m.file else "–"] for a, m in rows]
    cpu = [f"- {md(a.name)} on {md(m.config)}: {md(o.op)} {md(o.name or '')} stays on the CPU: {md(o.reason or '?')}"
           for a, m in rows for o in m.cpu_operators]
    return ["## Ethos-U NPUs (Vela's estimates)", "",
            "Each int8 .tflite compiled by Arm's Vela for an Ethos-U configuration with its default system "
            "configuration and memory mode: operators placed on the NPU, cycles and the time at its clock. These "
            "are the compiler's estimates, not measurements; the optimized file runs on the board's TensorFlow "
            "Lite Micro with the Ethos-U operator, and its parity is the artifact's.", "",
            markdown_table(("artifact", "configuration", "operators on NPU", "MACs on NPU", "cycles", "est. ms",
                            "SRAM", "weights", "optimized file"), table), "", *([*cpu, ""] if cpu else [])]


def _speedup_section(report: ParityReport) -> list[str]:
    rows = [a for a in report.artifacts if a.speedup]
    if not rows:
        return []
    table = [[a.name, a.speedup.over, f"{a.speedup.value:.2f}×", format_value(a.speedup.p50_ms, ".3f"),
              format_value(a.speedup.float32_p50_ms, ".3f"), str(a.speedup.threads or "default"),
              a.speedup.source or "?"] for a in rows]
    return ["## Speed-up over float32", "",
            "Is quantization worth it on this machine? p50 at batch 1 against the float32 artifact of the same format, "
            "same threads (`source`: export's quick timing or `edgeship bench`). `gate --min-speedup X` fails one "
            "below X.", "",
            markdown_table(("artifact", "over", "speed-up", "p50 ms", "float32 p50 ms", "threads", "source"), table), ""]


def _latency_section(report: ParityReport) -> list[str]:
    timed = [a for a in report.artifacts if a.latency_ms]
    if not timed:
        return []
    rows = []
    for a in timed:
        how = a.latency_settings or LatencySettings()
        rows.append([a.name, format_value(a.latency_ms.get("p50"), ".3f"), format_value(a.latency_ms.get("p90"), ".3f"),
                     format_value(a.latency_ms.get("p99"), ".3f"), format_value(a.throughput_ips, ".1f"),
                     format_value(a.load_ms, ".1f"), format_value(a.max_abs_prob_diff, ".4f"),
                     f"{how.runs or '?'} after {'?' if how.warmup is None else how.warmup} warm-up, threads "
                     f"{how.threads or 'default'}, {how.target}, {how.measured_at or '?'}"])
    return ["## Latency (batch 1)", "",
            "Each row says how it was measured: timed runs, warm-up runs, threads, target and time.", "",
            markdown_table(("artifact", "p50 ms", "p90 ms", "p99 ms", "images/s", "load ms", "max |Δp|", "measured"),
                           rows), ""]


def render_markdown(report: ParityReport, plot_name: str | None, layers_plot: str | None = None) -> str:
    report = ParityReport.of(report)
    ref, data = report.reference, report.dataset or {}
    parts = [
        "# edgeship report",
        "",
        f"Keras reference accuracy **{format_value(ref.accuracy, '.2%')}** on **{ref.n_test or '?'}** test images "
        f"(split manifest `{md(report.split_manifest or '?')}`, sha256 `{md(str(report.split_sha256 or '')[:12])}`).",
        f"Dataset: {md(data.get('n_images', '?'))} images in {md(data.get('n_classes', '?'))} classes; "
        f"**{md(data.get('n_skipped', 0))} skipped** as unreadable.",
        "",
        *[f"> **Warning:** {md(w)}" for w in report.warnings or []],
        "",
        "## Artifacts",
        "",
        markdown_table(SUMMARY_HEADERS, summary_rows(report)),
        "",
    ]
    if ref.unknown_threshold is not None:
        shares = ", ".join(f"{md(a.name)} {a.unknown_rejection_rate:.1%}" for a in report.artifacts
                           if a.unknown_rejection_rate is not None)
        parts += ["## Unknown images", "",
                  f"Top score below **{ref.unknown_threshold:.3f}** is answered `unknown` (on the device, and by "
                  f"MediaPipe's ImageClassifier from the model's metadata). Share of test images rejected: Keras "
                  f"{format_value(ref.unknown_rejection_rate, '.1%')}" + (f"; {shares}." if shares else "."), ""]
    parts += _parity_details(report)
    parts += _latency_section(report)
    parts += _static_cost_section(report)
    parts += _other_runtimes_section(report)
    parts += _npu_section(report)
    parts += _quantization_section(report, layers_plot)
    parts += _fake_quant_section(report)
    parts += _speedup_section(report)
    parts += _readiness_section(report)
    parts += _target_sections(report)
    failed = [a for a in report.artifacts if not a.ok]
    if failed:
        parts += ["## Failed exports", ""] + [f"- `{md(a.name)}`: {md(a.error or '?')}" for a in failed] + [""]
    if plot_name:
        parts += [f"![accuracy per artifact]({plot_name})", ""]
    if report.training_curves:
        parts += ["## Training", "", f"![training curves]({report.training_curves})", ""]
    skipped = data.get("skipped") or []
    if skipped:
        parts += ["## Skipped images", ""] + [f"- `{md(s.get('path'))}`: {md(s.get('reason'))}" for s in skipped] + [""]
    env = report.environment or {}
    if env:
        libs = ", ".join(f"{md(k)} {md(v)}" for k, v in (env.get("libraries") or {}).items())
        parts += ["## Environment", "", f"{md(env.get('cpu', '?'))} · {md(env.get('cores', '?'))} cores · "
                  f"{md(' '.join(map(str, env.get('cpu_flags') or [])))} · {md(env.get('os', '?'))}", "", libs, ""]
    return "\n".join(parts)
