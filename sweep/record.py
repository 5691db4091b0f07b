"""SWEEP/sweep.json (typed here, schema in core/schemas/sweep.schema.json), sweep.md and the Pareto plot.

A row per (architecture, format): its cost before training, its verdict (over budget and never trained, pruned
at an epoch, trained, finalist, the pick), its validation figures when trained and, for finalists, the real
weights' bench on every target and the gate on the test split. Test figures are final figures: no choice
reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeship.runtime.fileio import atomic_write_json, atomic_write_text

from .measure import TFLM

SCHEMA_VERSION = 1


@dataclass
class CandidateRow:
    key: str  # the architecture's key
    format: str
    architecture: dict
    verdict: str  # over-budget | failed | pruned | trained | finalist | pick
    reasons: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    macs: int | None = None
    params: int | None = None
    latency_ms: dict = field(default_factory=dict)  # target -> p50 of the untrained model (batch 1)
    emulated: dict = field(default_factory=dict)  # target -> whether that p50 was measured under emulation
    measure_trial: int | None = None
    train_trial: int | None = None
    epochs: int | None = None
    pruned_at: int | None = None
    last_val_accuracy: float | None = None  # the Keras model's val accuracy at its last epoch (pruned ones too)
    run: str | None = None
    val: dict | None = None  # split, n_images, accuracy, reference_accuracy, agreement, drop_pp
    bench_ms: dict | None = None  # finalists: target -> p50 of the exported artifact with its real weights
    gate: dict | None = None  # finalists: passed, reasons (test split)
    test: dict | None = None  # finalists: accuracy, accuracy_delta_pp, agreement (test split, final figures)
    arena_bytes: int | None = None  # target tflm: TFLM's tensor arena (untrained; finalists: the exported file's)
    flash_bytes: int | None = None  # target tflm: the file plus TFLM's code allowance
    npu_ms: float | None = None  # --npu: Vela's estimated time on that Ethos-U configuration

    @property
    def val_accuracy(self) -> float | None:
        return None if self.val is None else self.val.get("accuracy")


@dataclass
class SweepRecord:
    settings: dict
    budget: dict
    targets: list[dict]  # {"target": ..., "emulated": bool}
    rows: list[CandidateRow]
    pick: dict | None  # key, format, run, why
    trainings: int  # candidates trained (each at least one epoch)
    seconds: float
    workers: list[str]
    impossible: str | None = None  # why nothing met the budget
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        data = asdict(self)
        data["rows"] = [asdict(r) for r in self.rows]
        return data

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder = Path(folder)
        atomic_write_json(folder / "sweep.json", self.to_json())
        plot = pareto_plot(self, folder / "pareto.png")
        md = atomic_write_text(folder / "sweep.md", markdown(self, plot))
        return folder / "sweep.json", md


def _ms(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def _pct(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def markdown(record: SweepRecord, plot: Path | None) -> str:
    budget = record.budget
    micro_budget = "".join(f"{what} ≤ {budget[key]} {unit}, " for key, what, unit in (
        ("max_arena_bytes", "TFLM arena", "bytes"), ("max_flash_bytes", "flash", "bytes"),
        ("max_npu_ms", f"{budget.get('npu')} estimate", "ms")) if budget.get(key) is not None)
    lines = ["# edgeship sweep", "",
             f"Budget: p50 ≤ {budget['max_latency_ms'] if budget['max_latency_ms'] is not None else '—'} ms, "
             f"size ≤ {budget['max_size_bytes'] if budget['max_size_bytes'] is not None else '—'} bytes, "
             f"{micro_budget}drop ≤ {budget['max_drop_pp']} pp (validation split). Targets: "
             + ", ".join(t["target"] + (" (emulated: timings shown, never judged)" if t["emulated"] else "")
                         for t in record.targets) + ".",
             f"{len({r.key for r in record.rows})} architectures × formats = {len(record.rows)} candidates; "
             f"{record.trainings} trained; {record.seconds:.0f} s; workers: {', '.join(record.workers) or '—'}.", ""]
    if record.pick:
        pick = next(r for r in record.rows if r.verdict == "pick")
        lines += [f"**Pick: {pick.key} {pick.format}** ({record.pick['why']}). Validation accuracy "
                  f"{_pct(pick.val_accuracy)}; test accuracy {_pct((pick.test or {}).get('accuracy'))} (final "
                  f"figure, chosen without it); p50 " + ", ".join(f"{t} {_ms(ms)} ms" for t, ms in
                                                                     (pick.bench_ms or {}).items())
                  + f"; {pick.size_bytes} bytes. Run: `{pick.run}`.", ""]
    if record.impossible:
        lines += [f"**No candidate meets the budget**: {record.impossible}", ""]
    if plot is not None:
        lines += [f"![Pareto: validation accuracy against latency]({plot.name})", ""]
    micro = [t["target"] for t in record.targets if t["target"] == TFLM]
    targets = [t["target"] for t in record.targets if t["target"] != TFLM]
    npu = record.budget.get("npu")
    header = ["candidate", "format", "verdict", "size", "MACs", *[f"p50 {t} (untrained)" for t in targets],
              *(["TFLM arena", "flash"] if micro else []), *([f"{npu} est. ms"] if npu else []),
              "epochs", "val acc", "val drop pp", *[f"p50 {t} (real)" for t in targets], "test acc", "gate"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {"pick": 0, "finalist": 1, "trained": 2, "pruned": 3, "failed": 4, "over-budget": 5}
    for row in sorted(record.rows, key=lambda r: (order.get(r.verdict, 9), -(r.val_accuracy or 0), r.key)):
        cells = [row.key, row.format, row.verdict + (f" ({'; '.join(row.reasons)})" if row.reasons else ""),
                 str(row.size_bytes or "—"), str(row.macs or "—"),
                 *[_ms(row.latency_ms.get(t)) + (" (emulated)" if row.emulated.get(t) else "") for t in targets],
                 *([str(row.arena_bytes or "—"), str(row.flash_bytes or "—")] if micro else []),
                 *([_ms(row.npu_ms)] if npu else []),
                 str(row.epochs or "—"), _pct(row.val_accuracy),
                 "—" if row.val is None else f"{row.val['drop_pp']:+.2f}",
                 *[_ms((row.bench_ms or {}).get(t)) for t in targets],
                 _pct((row.test or {}).get("accuracy")),
                 "—" if row.gate is None else ("PASS" if row.gate["passed"] else "FAIL")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_plot(record: SweepRecord, path: Path) -> Path | None:
    """Validation accuracy against untrained p50, one panel per target: trained candidates as points (the
    Pareto front joined), those over budget as ticks along the bottom, the budget drawn, the pick starred."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    targets = [t for t in record.targets if t["target"] != TFLM]  # a microcontroller has no p50 to plot
    if not targets:
        return None
    fig, axes = plt.subplots(1, len(targets), figsize=(6.4 * len(targets), 4.8), squeeze=False)
    budget = record.budget.get("max_latency_ms")
    for ax, target in zip(axes[0], targets):
        name = target["target"]
        trained = [r for r in record.rows if r.val_accuracy is not None and r.latency_ms.get(name) is not None]
        pruned = [r for r in record.rows if r.verdict == "pruned" and r.last_val_accuracy is not None
                  and r.latency_ms.get(name) is not None]
        untrained = [r for r in record.rows if r.verdict == "over-budget" and r.val is None
                     and r.latency_ms.get(name) is not None]
        for fmt in sorted({r.format for r in trained}):
            mine = [r for r in trained if r.format == fmt]
            ax.scatter([r.latency_ms[name] for r in mine], [100 * r.val_accuracy for r in mine], label=fmt, s=36)
        front = _front([(r.latency_ms[name], 100 * r.val_accuracy) for r in trained])
        if front:
            ax.plot(*zip(*front), color="0.5", lw=1, ls="--", label="Pareto front")
        if pruned:
            ax.scatter([r.latency_ms[name] for r in pruned], [100 * r.last_val_accuracy for r in pruned],
                       facecolors="none", edgecolors="0.5", s=36, label="pruned (Keras val at its last epoch)")
        if untrained:
            low = min([100 * r.val_accuracy for r in trained] + [100 * r.last_val_accuracy for r in pruned]
                      or [0]) - 2
            ax.scatter([r.latency_ms[name] for r in untrained], [low] * len(untrained), marker="x", color="0.6",
                       s=30, label="over budget: never trained")
        if budget is not None and not target["emulated"]:
            ax.axvline(budget, color="#c62828", lw=1.5, label=f"budget {budget:g} ms")
        pick = next((r for r in trained if r.verdict == "pick"), None)
        if pick is not None:
            ax.scatter([pick.latency_ms[name]], [100 * pick.val_accuracy], marker="*", s=320, color="#fdd835",
                       edgecolor="black", zorder=5, label=f"pick: {pick.key} {pick.format}")
        ax.set_xscale("log")
        ax.set_xlabel(f"p50 ms on {name} (batch 1)" + (" — emulated, not judged" if target["emulated"] else ""))
        ax.set_ylabel("validation accuracy % (the artifact)")
        ax.set_title(f"{name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and accuracy (higher), by latency."""
    front, best = [], float("-inf")
    for ms, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((ms, acc))
            best = acc
    return front
