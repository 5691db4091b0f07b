"""Bench results: accuracy beside speed, the Pareto front, the regression comparison, and the files
people and machines read (bench.json, bench.csv, bench.md, bench_pareto.png)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgeship.core.records import BENCH_SCHEMA, BENCH_SCHEMA_VERSION, BenchRow, ParityReport, read_bench_rows
from edgeship.core.integrity import finite
from edgeship.core.plots import plot_op_breakdown
from edgeship.core.report import format_value, markdown_table
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_json, atomic_write_text


def attach_accuracy(rows: list[BenchRow], report: ParityReport | None) -> None:
    """Copy each artifact's parity figures from a parity report onto its rows."""
    if report is None:
        return
    by_name = {a.name: a for a in report.artifacts}
    for row in rows:
        if not row.ok:
            continue
        if row.name == "keras" and report.reference.accuracy is not None:
            row.accuracy, row.accuracy_delta_pp = report.reference.accuracy, 0.0
        elif row.name in by_name and by_name[row.name].accuracy is not None:
            row.accuracy, row.accuracy_delta_pp = by_name[row.name].accuracy, by_name[row.name].accuracy_delta_pp


def mark_pareto(rows: list[BenchRow]) -> None:
    """Pareto-optimal = no other row of the same target and batch is at least as fast and as accurate,
    and strictly better in one of the two."""
    timed = [r for r in rows if r.ok and r.accuracy is not None and not r.emulated]  # emulation is not a timing
    for row in timed:
        peers = [p for p in timed if p is not row and p.target == row.target and p.batch == row.batch]
        p50, acc = row.latency_ms["p50"], row.accuracy
        row.pareto = not any(
            p.latency_ms["p50"] <= p50 and p.accuracy >= acc and (p.latency_ms["p50"] < p50 or p.accuracy > acc)
            for p in peers)


def compare_to_baseline(rows: list[BenchRow], baseline: list[BenchRow], max_slowdown: float) -> list[BenchRow]:
    """A row regresses when its median is slower than the baseline's by more than `max_slowdown` *and*
    the two timing distributions' middle halves do not overlap (its p25 above the baseline's p75), so
    run-to-run noise alone never fails the gate. Returns the regressed rows."""
    base_rows = {(r.target, r.id): r for r in baseline if r.ok}
    regressions = []
    for row in rows:
        base = base_rows.get((row.target, row.id))
        if base is None or not row.ok or row.emulated or base.emulated:
            continue
        ratio = row.latency_ms["p50"] / base.latency_ms["p50"]
        beyond_noise = row.latency_ms["p25"] > base.latency_ms.get("p75", base.latency_ms["p50"])
        row.baseline_ratio = ratio
        row.regression = ratio > 1.0 + max_slowdown and beyond_noise
        if row.regression:
            regressions.append(row)
    return regressions


def load_baseline(path: str | Path) -> list[BenchRow]:
    """The rows of an earlier bench.json (any version that has a 'rows' list). Every timed row must carry a
    finite, positive p50 (and p75 where given): a ratio to 0 or NaN would pass or crash the comparison."""
    rows = read_bench_rows(path)
    for row in rows:
        if not row.ok:
            continue
        latency = row.latency_ms if isinstance(row.latency_ms, dict) else {}
        for key in ("p50", "p75"):
            value = latency.get(key)
            if key == "p50" or value is not None:
                if not finite(value) or value <= 0:
                    raise UsageError(f"{path}: row {row.id!r} has {key} {value!r} ms; a baseline needs positive, "
                                     f"finite timings (use a bench.json that edgeship bench wrote)")
    return rows


def why_nothing_compared(rows: list[BenchRow], baseline: list[BenchRow], path) -> str:
    """One line: --compare matched no row, with an id from each side so the difference shows."""
    mine = sorted({r.id for r in rows if r.ok})[:2]
    theirs = sorted({r.id for r in baseline if r.ok})[:2]
    return (f"--compare {path}: no row of this run matches a row of the baseline (by target and id: this run has "
            f"{', '.join(mine) or 'no timed row'}; the baseline {', '.join(theirs) or 'no timed row'}); bench with "
            f"the baseline's artifacts, --threads, --batch and --backend")


def parse_slowdown(text: str) -> float:
    """'10%' or '0.1' -> 0.1"""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise UsageError(f"--max-slowdown must look like 10% or 0.1, got {text!r}") from exc
    if value < 0:
        raise UsageError(f"--max-slowdown must not be negative, got {text!r}")
    return value


TABLE_HEADERS = ("target", "artifact", "backend", "threads", "batch", "status", "p50 ms", "p90 ms", "p99 ms",
                 "images/s", "peak RSS MB", "accuracy", "Δ pp", "Pareto", "time vs baseline")


def attach_static_costs(rows: list[BenchRow], artifacts) -> None:
    """The static cost of each artifact file (read once, on the host) on every row that timed it."""
    from edgeship.core.static_cost import static_cost

    costs = {artifact.name: static_cost(artifact.path) for artifact in artifacts}
    for row in rows:
        row.static_cost = costs.get(row.name)


def static_cost_rows(rows: list[BenchRow]) -> list[list[str]]:
    """One line per artifact: its static cost beside the best p50 any local row of it measured."""
    from edgeship.core.report_markdown import describe_cost

    seen: dict[tuple, list[str]] = {}
    for row in sorted((r for r in rows if r.static_cost and r.ok), key=lambda r: (r.latency_ms or {}).get("p50", 1e18)):
        key = (row.model, row.name)
        if key not in seen:
            seen[key] = [row.name, row.precision or "?", *describe_cost(row.static_cost),
                         format_value((row.latency_ms or {}).get("p50"), ".3f"), f"{row.target}, {row.backend}"]
    return list(seen.values())


def table_rows(rows: list[BenchRow]) -> list[list[str]]:
    out = []
    for r in rows:
        lat = r.latency_ms or {}
        backend = r.backend + (f"-{r.provider}" if r.provider else "")
        ratio = r.baseline_ratio
        out.append([r.target + (" (emulated)" if r.emulated else ""), r.name, backend, r.threads or "default", r.batch,
                    r.status if r.status != "failed" else f"failed: {(r.error or '')[:40]}",
                    format_value(lat.get("p50"), ".3f"), format_value(lat.get("p90"), ".3f"), format_value(lat.get("p99"), ".3f"),
                    format_value(r.throughput_ips, ".1f"), format_value(r.peak_rss_mb, ".0f"),
                    format_value(r.accuracy, ".2%"), format_value(r.accuracy_delta_pp, "+.2f"),
                    "★" if r.pareto else "",
                    "" if ratio is None else _versus_baseline(ratio) + (" REGRESSION" if r.regression else "")])
    return out


def _versus_baseline(ratio: float) -> str:
    """p50 against the baseline's, with the direction in words: `1.25× slower`, `0.80× (1.25× faster)`."""
    if ratio >= 1.0:
        return f"{ratio:.2f}× ({ratio:.2f}× slower)" if ratio > 1.005 else f"{ratio:.2f}× (same)"
    return f"{ratio:.2f}× ({1 / ratio:.2f}× faster)"


def split_unavailable(rows: list[BenchRow]) -> tuple[list[BenchRow], str | None]:
    """The rows to show, and one line for the GPU rows this machine cannot run (they stay in bench.json)."""
    missing = [r for r in rows if r.status == "unavailable"]
    if not missing:
        return rows, None
    kinds = sorted({f"{r.backend}-{r.provider}" if r.provider else r.backend for r in missing})
    where = sorted({r.target for r in missing})
    return ([r for r in rows if r.status != "unavailable"],
            f"not available on {', '.join(where)}: {', '.join(kinds)} ({len(missing)} rows, kept in bench.json "
            f"with the reason; no GPU there, or not this provider)")


def _plot(rows: list[BenchRow], png: Path) -> Path | None:
    from edgeship.core.plots import Point, plot_accuracy_latency

    points = [Point(f"{r.name} on {r.target} ({r.backend}{'-' + r.provider if r.provider else ''}; threads: "
                    f"{r.threads or 'default'}, batch {r.batch})" + (" ★ Pareto" if r.pareto else ""),
                    r.latency_ms["p50"], r.accuracy, r.size_bytes, bool(r.pareto))
              for r in rows if r.ok and r.accuracy is not None and not r.emulated]
    return plot_accuracy_latency(points, png, "accuracy vs latency (outlined = Pareto-optimal)", log_latency=True)


CSV_FIELDS = ("target", "id", "name", "format", "precision", "backend", "provider", "threads", "batch", "status",
              "error", "p50", "p90", "p95", "p99", "mean", "std", "cv", "throughput_ips", "load_ms",
              "first_inference_ms", "peak_rss_mb", "size_bytes", "accuracy", "accuracy_delta_pp", "pareto",
              "baseline_ratio", "regression", "emulated")


def to_csv(rows: list[BenchRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        data = r.to_json()
        writer.writerow({**data, **(data.get("latency_ms") or {})})
    return buffer.getvalue()


PROFILE_TOP = 10
PROFILE_PLOT = "bench_profile.png"


def _profile_section(rows: list[BenchRow], plot_name: str | None) -> list[str]:
    """`--profile`: per artifact, the share of its p50 the node times account for, its top nodes, the time of the
    layers `--max-drop` left in float, and a stacked bar per op type."""
    profiled = [r for r in rows if r.profile]
    if not profiled:
        return []
    parts = ["## Where the time goes", ""]
    if plot_name:
        parts += [f"![time per op type]({plot_name})", ""]
    for row in profiled:
        p = row.profile
        parts += [f"**{row.name}** ({row.precision or '?'}, {p.threads or 'default'} thread(s)): nodes sum to "
                  f"{p.total_ms:.3f} ms of the whole model's {format_value(p.p50_ms, '.3f')} ms p50 measured beside "
                  f"them; {p.method}."
                  + (f" The {len(p.float_layers or [])} node(s) `--max-drop` left in float take {p.float_layers_ms:.3f} "
                     f"ms ({p.float_layers_ms / p.total_ms:.0%})." if p.float_layers_ms is not None and p.total_ms else ""),
                  "", markdown_table(("op type", "ms", "share"),
                                     [[op, f"{ms:.3f}", f"{ms / p.total_ms:.0%}" if p.total_ms else "–"]
                                      for op, ms in list(p.by_op().items())[:PROFILE_TOP]]), "",
                  markdown_table(("#", "node", "op", "ms", "share"),
                                 [[str(i + 1), f"`{n.name.split(';')[0][:70]}`", n.op, f"{n.ms:.3f}",
                                   f"{n.ms / p.total_ms:.0%}" if p.total_ms else "–"]
                                  for i, n in enumerate(p.top(PROFILE_TOP))]), ""]
    return parts


def render_markdown(result: dict, rows: list[BenchRow], plot_name: str | None, profile_plot: str | None = None) -> str:
    parts = ["# edgeship bench", ""]
    settings = result["settings"]
    at_least = f" (and at least {settings['min_seconds']:g} s)" if settings.get("min_seconds") else ""
    parts.append(f"{settings['runs']} timed runs{at_least} after {settings['warmup']} warm-up runs per row; each row "
                 f"in its own process. ★ = Pareto-optimal (accuracy vs p50).")
    if settings.get("baseline"):
        parts.append(f"Time vs baseline: this p50 over the p50 of `{settings['baseline']}` for the same target and "
                     f"row (above 1 is slower); a REGRESSION is over {settings.get('max_slowdown', 0):.0%} slower and "
                     f"outside the baseline's p25-p75 spread.")
    shown, _ = split_unavailable(rows)
    parts += ["", markdown_table(TABLE_HEADERS, table_rows(shown)), ""]
    reasons = sorted({f"{r.backend}{'-' + r.provider if r.provider else ''} on {r.target}: {r.error}"
                      for r in rows if r.status == "unavailable"})
    if reasons:
        parts += ["Not available, so not in the table (the rows stay in bench.json):", ""]
        parts += [f"- {reason}" for reason in reasons] + [""]
    if plot_name:
        parts += [f"![accuracy vs latency]({plot_name})", ""]
    parts += _profile_section(rows, profile_plot)
    costs = static_cost_rows(shown)
    if costs:
        from edgeship.core.report_markdown import STATIC_COST_HEADERS

        parts += ["Static cost per artifact, read from its graph (see the report's *Static cost*), beside the fastest "
                  "p50 measured for it:", "",
                  markdown_table(("artifact", "precision", *STATIC_COST_HEADERS, "best p50 ms", "where"), costs), ""]
    for target in result["targets"]:
        env = target.get("environment") or {}
        line = f"- **{target['target']}**: " + (
            f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, {' '.join(env.get('cpu_flags', []))}, "
            f"{env.get('os', '?')}" + (f", GPU {env['gpu']}" if env.get("gpu") else "")
            if target["status"] == "ok" else f"{target['status']}: {target.get('error')}")
        parts.append(line)
    return "\n".join(parts) + "\n"


def write_outputs(result: dict, out_dir: str | Path, rows: list[BenchRow] | None = None) -> Path:
    """bench.json, bench.csv, bench.md (+ bench_pareto.png, and bench_profile.png under --profile) in OUT_DIR;
    returns the Markdown path."""
    out_dir = Path(out_dir)
    result.setdefault("schema", BENCH_SCHEMA)
    result.setdefault("schema_version", BENCH_SCHEMA_VERSION)
    rows = rows if rows is not None else [BenchRow.from_json(r) for r in result["rows"]]  # the records, when held
    atomic_write_json(out_dir / "bench.json", result)
    atomic_write_text(out_dir / "bench.csv", to_csv(rows))
    plot = _plot(rows, out_dir / "bench_pareto.png")
    profile_plot = plot_op_breakdown([(f"{r.name} ({r.precision or '?'})", r.profile.by_op(), r.profile.p50_ms)
                                      for r in rows if r.profile], out_dir / PROFILE_PLOT)
    md = out_dir / "bench.md"
    atomic_write_text(md, render_markdown(result, rows, plot.name if plot else None,
                                          profile_plot.name if profile_plot else None))
    return md
