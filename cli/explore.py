"""`edgeship explore RUN`: a TFLite artifact in Model Explorer with edgeship's per-op overlays, served through
the guard (explore_guard.py) on loopback by default."""

from __future__ import annotations

NAME = "explore"
HELP = ("open a TFLite artifact in Model Explorer (ai-edge-model-explorer) with edgeship's per-op overlays: "
        "latency, int8 error, layers left in float")


def add_arguments(p) -> None:
    p.add_argument("run", help="run directory (or its bundle)")
    p.add_argument("--artifact", help="artifact name (default tflite_int8, else the first .tflite)")
    p.add_argument("--host", default="localhost", help="address to serve on (default localhost; another needs "
                                                       "--allow-remote)")
    p.add_argument("--allow-remote", action="store_true", help="serve on a non-loopback --host (others on the "
                                                               "network can then reach it; the token still applies)")
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser (CI, SSH)")
    p.add_argument("--write-only", action="store_true", help="write the overlay files and stop (no server)")


def run(args) -> int:
    from .explore_guard import check_host
    from .explore_overlays import build_overlays, free_port, serve

    if not args.write_only:
        check_host(args.host, args.allow_remote)  # before any work
    exploration = build_overlays(args.run, args.artifact)
    for overlay, path in zip(exploration.overlays, exploration.files):
        print(f"{exploration.artifact.name}: overlay '{overlay.title}' on {len(overlay.values)} op(s) -> {path}")
    for note in exploration.notes:
        print(f"{exploration.artifact.name}: {note}")
    if args.write_only:
        return 0
    port = args.port or free_port(args.host)
    serve(exploration, args.host, port, open_browser=not args.no_browser, allow_remote=args.allow_remote,
          on_url=lambda url: print(f"Model Explorer: {url}\n(Ctrl+C stops it)", flush=True))
    return 0
