"""`edgeship explore`: edgeship's per-node figures as overlays for Google's graph viewer, ai-edge-model-explorer.

Three overlays, each a node-data file in Model Explorer's format (`{graph id: {"results": {node key: {"value":
v}}, "gradient"|"thresholds": ...}}`, model_explorer/node_data_builder.py), keyed by the node ids its TFLite
adapter gives ops (the op's index in subgraph 0), so they colour the graph the viewer draws:
- latency per op, from `bench --profile` (RUN/bench.json), only when it profiled these very bytes (sha256);
- quantization error per layer, from export's diagnosis (`--diagnose`, or any int8 artifact that broke the budget);
- the layers `export --max-drop` left in float.
Writing them needs nothing but the run; serving them needs the `explore` extra (ai-edge-model-explorer).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeship.core.layout import RunLayout
from edgeship.core.records import BenchRow, read_bench_rows
from edgeship.core.tfenv import captured_output
from edgeship.core.tflite_graph import read_graph
from edgeship.runtime.errors import IntegrityError, UsageError
from edgeship.runtime.fileio import atomic_write_bytes, sha256_bytes
from edgeship.runtime.spec import ArtifactRecord, Bundle

from .explore_guard import allowed_hosts, check_host, new_token, serve_guarded

logger = logging.getLogger("edgeship")
GRAPH_ID = "main"  # the id Model Explorer's TFLite adapter gives subgraph 0
GREEN_TO_RED = [{"stop": 0, "bgColor": "#2e7d32"}, {"stop": 0.5, "bgColor": "#fdd835"}, {"stop": 1, "bgColor": "#c62828"}]
FLOAT_COLOUR = "#1565c0"  # a layer left in float: one colour, it is a yes/no


@dataclass
class Overlay:
    """One node-data file: what it shows, its values by node id, and how many figures found no node."""

    key: str  # file stem: latency, quant_error, float_layers
    title: str  # shown in the viewer's node-data list
    values: dict[str, float]
    colours: dict = field(default_factory=lambda: {"gradient": GREEN_TO_RED})
    unmatched: int = 0

    def node_data(self) -> dict:
        results = {node: {"value": round(float(value), 6)} for node, value in self.values.items()}
        return {GRAPH_ID: {"name": self.title, "results": results, **self.colours}}


@dataclass
class Exploration:
    artifact: ArtifactRecord
    model_path: Path
    overlays: list[Overlay]
    files: list[Path]
    notes: list[str]  # why an overlay is missing


def _op_ids(model: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """({output tensor name: node id}, {the name's first part before ';': node id}): the diagnosis names a
    layer by its tensor's first name, the float list and the profile by the whole one."""
    ops, tensors = read_graph(model)
    full, short = {}, {}
    for op in ops:
        for index in op.outputs:
            name = tensors[index].name
            full.setdefault(name, str(op.index))
            short.setdefault(name.split(";")[0], str(op.index))
    return full, short


def _node_id(name: str, full: dict[str, str], short: dict[str, str]) -> str | None:
    return full.get(name) or short.get(name) or short.get(name.split(";")[0])


def _matched(key: str, title: str, figures: list[tuple[str, float]], full, short, **colours) -> Overlay:
    values, unmatched = {}, 0
    for name, value in figures:
        node = _node_id(name, full, short)
        if node is None or value is None:
            unmatched += 1
            continue
        values[node] = max(value, values.get(node, value))  # two names on one op: its worst
    return Overlay(key, title, values, **({"colours": colours} if colours else {}), unmatched=unmatched)


CPU_COLOUR = "#c62828"  # an operator Vela leaves on the CPU: one colour, it is a yes/no


def _npu_overlays(layout: RunLayout, record: ArtifactRecord, sha256: str, full, short) -> tuple[list, list[str]]:
    """Per Ethos-U configuration in the report (`bench --npu`): Vela's cycles per operator, and the operators it left
    on the CPU. Only figures of these very bytes (the report row's sha256)."""
    from edgeship.core.report import load_report

    if not layout.report_json.is_file():
        return [], []
    report, _ = load_report(layout.report_json)
    row = next((a for a in report.artifacts if a.name == record.name and a.sha256 == sha256), None)
    overlays = []
    for m in (row.npu or []) if row is not None else []:
        if m.error:
            continue
        overlays.append(_matched(f"npu_cycles_{m.config}", f"{m.config}: Vela's estimated cycles per op",
                                 [(o.name, o.cycles) for o in m.operators if o.target == "NPU" and o.name], full, short))
        if m.cpu_operators:
            overlays.append(_matched(f"npu_cpu_{m.config}", f"{m.config}: left on the CPU",
                                     [(o.name, 1.0) for o in m.cpu_operators if o.name], full, short,
                                     thresholds=[{"value": 1, "bgColor": CPU_COLOUR}]))
    notes = [] if overlays else [f"no NPU overlay: run `edgeship bench {layout.root} --npu ethos-u55-128` for Vela's "
                                 f"placement of {record.name}"] if record.precision == "int8" else []
    return overlays, notes


def _profile_row(layout: RunLayout, record: ArtifactRecord, sha256: str) -> tuple[BenchRow | None, str | None]:
    """The bench row whose profile measured these bytes, or why there is none."""
    path = layout.root / "bench.json"
    if not path.is_file():
        return None, f"no latency overlay: {path} is missing; run `edgeship bench {layout.root} --profile`"
    rows = read_bench_rows(path)
    profiled = [r for r in rows if r.name == record.name and r.profile is not None and r.profile.nodes]
    fresh = [r for r in profiled if r.profile.sha256 == sha256]
    if fresh:
        local = [r for r in fresh if r.target == "local"]
        return (local or fresh)[0], None
    if profiled:
        return None, (f"no latency overlay: the profile in {path} is of other bytes than {record.file} (re-exported "
                      f"since); run `edgeship bench {layout.root} --profile` again")
    return None, f"no latency overlay: {path} has no profile of {record.name}; run `edgeship bench {layout.root} --profile`"


def _chosen_record(layout: RunLayout, bundle: Bundle, artifact: str | None):
    """ARTIFACT's record, or by default the int8 TFLite artifact, else the first .tflite."""
    tflite = [r for r in bundle.artifacts if r.ok and r.format == "tflite"]
    if artifact is None:
        if not tflite:
            raise UsageError(f"{layout.bundle}: no TFLite artifact to explore; run `edgeship export {layout.root}`")
        return next((r for r in tflite if r.precision == "int8"), tflite[0])
    record = next((r for r in bundle.artifacts if r.name == artifact), None)
    if record is None or not record.ok:
        names = ", ".join(r.name for r in tflite) or "none"
        raise UsageError(f"{layout.bundle}: no exported artifact {artifact!r} (TFLite artifacts: {names})")
    if record.format != "tflite":
        raise UsageError(f"--artifact {artifact}: explore overlays TFLite graphs; choose one of "
                         f"{', '.join(r.name for r in tflite) or 'none (export a .tflite)'}")
    return record


def build_overlays(run: str | Path, artifact: str | None = None) -> Exploration:
    """The overlays of one TFLite artifact of RUN (default: the int8 one, else the first .tflite), checked against
    its bundle record first; written to RUN/explore/NAME/*.json."""
    layout = RunLayout.find(run)
    bundle = Bundle.load(layout.bundle)
    record = _chosen_record(layout, bundle, artifact)
    model_path = layout.bundle / record.file
    try:
        model = bundle.read_artifact(layout.bundle, record)
    except IntegrityError as exc:
        raise UsageError(f"{model_path}: not the file the bundle records (missing or changed: "
                         f"{str(exc).split(': ', 1)[-1][:160]})") from None
    sha256 = sha256_bytes(model)
    with captured_output():  # the FlatBuffer schema comes with TensorFlow, whose import logs to stderr
        full, short = _op_ids(model)
    overlays, notes = [], []

    if record.layers:
        metric = record.layers[0].get("metric", "error")
        low_is_bad = {"gradient": GREEN_TO_RED[::-1]} if metric == "sqnr_db" else {}  # red marks the worst either way
        overlays.append(_matched("quant_error", f"int8 quantization error ({metric}, export's diagnosis)",
                                 [(layer["name"], layer.get("error")) for layer in record.layers], full, short,
                                 **low_is_bad))
    else:
        notes.append(f"no quantization-error overlay: {record.name} was not diagnosed; run `edgeship export "
                     f"{layout.root} --diagnose`")
    floats = (record.quantization or {}).get("float_layers") or []
    if floats:
        overlays.append(_matched("float_layers", "left in float by --max-drop", [(n, 1.0) for n in floats], full,
                                 short, thresholds=[{"value": 1, "bgColor": FLOAT_COLOUR}]))
    elif record.quantization:
        notes.append(f"no float-layer overlay: --max-drop kept every layer of {record.name} in int8")
    npu, why_not = _npu_overlays(layout, record, sha256, full, short)
    overlays += npu
    notes += why_not
    # latency last: the viewer colours the graph by the last overlay it is given
    row, why = _profile_row(layout, record, sha256)
    if row is not None:
        threads = row.profile.threads or "default"
        overlays.append(_matched("latency", f"latency ms per op ({row.target}, {threads} thread(s))",
                                 [(n.name, n.ms) for n in row.profile.nodes], full, short))
    else:
        notes.append(why)
    folder = layout.root / "explore" / record.name
    files = []
    for overlay in overlays:
        target = folder / f"{overlay.key}.json"
        atomic_write_bytes(target, json.dumps(overlay.node_data(), indent=1).encode())
        files.append(target)
        if overlay.unmatched:
            notes.append(f"{overlay.key}: {overlay.unmatched} figure(s) name no op of {record.file} (not shown)")
    return Exploration(record, model_path, overlays, files, notes)


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve(exploration: Exploration, host: str, port: int, open_browser: bool, on_url=None,
          allow_remote: bool = False) -> None:
    """Serve Model Explorer on HOST:PORT with the artifact and its overlays, behind edgeship's guard (see
    explore_guard: loopback Host only, a per-session token, no file reads but this artifact); blocks until
    Ctrl+C. ON_URL gets the page's address, token included, before the server starts (the CLI prints it)."""
    import contextlib
    import webbrowser

    check_host(host, allow_remote)
    try:
        import flask
        import model_explorer
        from model_explorer import server as explorer_server
    except ImportError as exc:
        raise UsageError("edgeship explore needs Model Explorer: pip install 'edgeship[explore]' "
                         f"(ai-edge-model-explorer); the overlays are written: {exploration.files[0].parent if exploration.files else '-'}") from exc
    config = model_explorer.config().add_model_from_path(str(exploration.model_path))
    for overlay in exploration.overlays:  # inline: the viewer never reads a file by name
        config.add_node_data(overlay.key, json.dumps(overlay.node_data()))
    token = new_token()
    guard = {"model_path": exploration.model_path, "hosts": allowed_hosts(host, port), "token": token}
    shown = host if ":" not in host else f"[{host}]"
    url = f"http://{shown}:{port}/?token={token}&data={config.to_url_param_value()}"
    if on_url is not None:
        on_url(url)
    # Model Explorer starts Flask's own server in a thread; it gets the guarded one instead
    flask.Flask.run = lambda app, *args, **kwargs: serve_guarded(app, host, port, guard)
    if open_browser:
        webbrowser.open_new_tab(url)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # its own URL lacks the token
        explorer_server.start(host=host, port=port, config=config, no_open_in_browser=True, skip_health_check=True)
