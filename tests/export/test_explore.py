"""`edgeship explore`: edgeship's per-op figures as overlays for ai-edge-model-explorer, keyed by the node ids its
own TFLite adapter gives the graph, and shown in a real browser (headless Chromium)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

GRADIENT = ("#2e7d32", "#fdd835", "#c62828")  # core/explorer.py's green → yellow → red


def _edgeship(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "edgeship", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"edgeship {' '.join(map(str, args))}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def explored(exported_run, tmp_path_factory):
    """A copy of the shared run with tflite_int8 diagnosed and the TFLite artifacts profiled, as a user would."""
    run = tmp_path_factory.mktemp("explore") / "run"
    shutil.copytree(exported_run, run)
    _edgeship("export", run, "--formats", "tflite,tflite_int8", "--diagnose")
    _edgeship("bench", run, "--backend", "tflite", "--runs", "3", "--threads", "1", "--profile")
    return run


def test_overlays_are_keyed_by_the_node_ids_model_explorer_gives_the_ops(explored):
    pytest.importorskip("ai_edge_model_explorer_adapter")
    import ai_edge_model_explorer_adapter as adapter

    done = _edgeship("explore", explored, "--write-only")
    folder = explored / "explore" / "tflite_int8"
    assert f"-> {folder / 'latency.json'}" in done.stdout and f"-> {folder / 'quant_error.json'}" in done.stdout
    # Model Explorer's own adapter, on the same file: its op nodes, by id
    graph = json.loads(adapter.ConvertFlatbufferDirectlyToJson(adapter.VisualizeConfig(),
                                                               str(explored / "bundle" / "model_int8.tflite")))
    nodes = {n["id"]: n for n in graph[0]["subgraphs"][0]["nodes"]}
    bench = json.loads((explored / "bench.json").read_text())
    profile = next(r["profile"] for r in bench["rows"] if r["name"] == "tflite_int8" and r.get("profile"))
    latency = json.loads((folder / "latency.json").read_text())["main"]
    assert latency["gradient"][0]["bgColor"] == GRADIENT[0]
    assert len(latency["results"]) == len(profile["nodes"])  # every op profiled has its node
    for key, result in latency["results"].items():  # the op the viewer draws under that id is the op timed there
        node = profile["nodes"][int(key)]
        assert nodes[key]["label"] == node["op"].lower(), (key, nodes[key]["label"], node)
        assert result["value"] == pytest.approx(node["ms"], abs=1e-6)
    errors = json.loads((folder / "quant_error.json").read_text())["main"]["results"]
    layers = json.loads((explored / "bundle" / "edgeship.json").read_text())
    diagnosed = next(a for a in layers["artifacts"] if a["name"] == "tflite_int8")["layers"]
    worst = max(diagnosed, key=lambda layer: layer["error"] or 0)
    tensor_names = {a["value"] for key in errors for out in nodes[key]["outputsMetadata"] for a in out["attrs"]
                    if a["key"] == "tensor_name"}
    assert any(name.split(";")[0] == worst["name"] for name in tensor_names)
    assert max(r["value"] for r in errors.values()) == pytest.approx(worst["error"], abs=1e-6)


def test_explore_names_what_is_missing_and_refuses_what_it_cannot_show(explored, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(explored, run)
    bench = json.loads((run / "bench.json").read_text())
    for row in bench["rows"]:
        if row.get("profile"):
            row["profile"]["sha256"] = "0" * 64  # a profile of other bytes (the artifact was re-exported since)
    (run / "bench.json").write_text(json.dumps(bench))
    done = _edgeship("explore", run, "--write-only")
    assert "no latency overlay: the profile in" in done.stdout and "re-exported" in done.stdout
    assert not (run / "explore" / "tflite_int8" / "latency.json").exists() or \
        json.loads((run / "explore" / "tflite_int8" / "latency.json").read_text()) == \
        json.loads((explored / "explore" / "tflite_int8" / "latency.json").read_text())  # an old one is left as it was
    for args, expected in ((["--artifact", "onnx"], "explore overlays TFLite graphs"),
                           (["--artifact", "tflite_int9"], "no exported artifact 'tflite_int9'")):
        refused = subprocess.run([sys.executable, "-m", "edgeship", "explore", str(run), "--write-only", *args],
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0 and expected in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    (run / "bundle" / "model_int8.tflite").write_bytes(b"swapped")
    refused = subprocess.run([sys.executable, "-m", "edgeship", "explore", str(run), "--write-only"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "not the file the bundle records" in refused.stderr


def _browser():
    """Chromium (Debian's, installed when missing and we are root) and Playwright to drive it."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from sshd import find_or_install

    playwright = pytest.importorskip("playwright.sync_api")
    binary, reason = find_or_install(("/usr/bin/chromium", "/usr/bin/chromium-browser"), "chromium")
    if binary is None:
        pytest.skip(reason)
    return playwright, binary


@pytest.mark.slow
def test_the_overlay_colours_the_graph_in_a_real_browser(explored, tmp_path):
    pytest.importorskip("model_explorer")
    playwright, chromium = _browser()
    from PIL import Image

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "edgeship", "explore", str(explored), "--no-browser", "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = _url(server)
        shots = {}
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # the page's own token travels along (edgeship's guard refuses a request without it)
            for name, address in (("bare", url.split("&data=")[0] + "&data=" + _models_only(url)), ("overlays", url)):
                page.goto(address)
                # the file name is also in a hidden list of the loading page: wait for a shown one, then the canvas
                page.locator("text=model_int8.tflite >> visible=true").first.wait_for(timeout=120_000)
                page.locator("canvas >> visible=true").first.wait_for(timeout=120_000)
                if name == "overlays":
                    page.locator("text=latency ms per op >> visible=true").first.wait_for(timeout=120_000)
                shots[name] = tmp_path / f"{name}.png"
                _settled_screenshot(page, shots[name], until=(lambda n: n > 2000) if name == "overlays" else None)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    coloured = {name: _gradient_pixels(Image.open(path)) for name, path in shots.items()}
    shutil.copy(shots["overlays"], explored / "explore" / "screenshot.png")  # to look at
    # the overlay colours the graph (nodes and the layer's summary bar) in edgeship's gradient; without it, none
    assert coloured["bare"] < 50 and coloured["overlays"] > 2000, coloured


def _settled_screenshot(page, path: Path, until=None, seconds: float = 90.0) -> None:
    """A screenshot once the WebGL graph is drawn: 3 s after the page shows it, and on a busy machine (where
    drawing takes longer) again every second until UNTIL holds for the coloured-pixel count or SECONDS pass."""
    from PIL import Image

    page.wait_for_timeout(3000)
    deadline = time.time() + seconds
    page.screenshot(path=str(path))
    while until is not None and not until(_gradient_pixels(Image.open(path))) and time.time() < deadline:
        page.wait_for_timeout(1000)
        page.screenshot(path=str(path))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _url(server) -> str:
    deadline = time.time() + 120
    while time.time() < deadline:
        line = server.stdout.readline()
        if line.startswith("Model Explorer: "):
            return line.split(": ", 1)[1].strip()
        if not line and server.poll() is not None:
            break
    raise AssertionError("edgeship explore printed no URL")


def _models_only(url: str) -> str:
    """The same page's data parameter without the node data: the graph as Model Explorer draws it bare."""
    from urllib.parse import quote, unquote

    data = json.loads(unquote(url.split("&data=", 1)[1]))
    return quote(json.dumps({"models": data["models"]}))


def _gradient_pixels(image, region=(0, 100, 1000, 900)) -> int:
    """Pixels of the graph area within a few levels of the gradient's colours."""
    pixels = np.asarray(image.convert("RGB").crop(region), dtype=np.int16)
    count = 0
    for colour in GRADIENT:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        count += int(np.sum(np.abs(pixels - rgb).max(axis=-1) <= 12))
    return count

