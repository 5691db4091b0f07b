"""`edgeship export RUN`: convert a trained run to every format in the registry and measure parity."""

from __future__ import annotations

import sys

from .arguments import add_trust_flag, csv_list, points, positive_int, print_skipped

NAME = "export"
HELP = "convert a trained run to edge formats and check parity"
INTERRUPTED = ("; the export did not finish, so its new files are not recorded in the bundle (predict and gate "
               "refuse them): run the same command again")


def add_arguments(p) -> None:
    from edgeship.export.formats import FORMATS
    from edgeship.runtime.backends import BACKENDS

    p.add_argument("run", help="run directory (or its bundle/)")
    p.add_argument("--formats", type=csv_list, default=None,
                   help=f"comma-separated, or all (the default: {', '.join(n for n, f in FORMATS.items() if f.default)}; "
                        f"see `edgeship formats`)")
    p.add_argument("--calib-size", type=positive_int, default=300, help="calibration images for int8 (default 300)")
    p.add_argument("--io", choices=("uint8", "int8", "float"), default="uint8",
                   help="input/output type of tflite_int8 (default uint8: camera pixels as they are)")
    p.add_argument("--max-drop", type=points, metavar="PP",
                   help="accuracy budget for int8 on the validation split: when plain int8 loses more, try other "
                        "calibration, 16-bit activations and float layers, and keep the fastest that fits")
    p.add_argument("--diagnose", action="store_true",
                   help="per-layer quantization error of every int8 artifact in the report (always done for one "
                        "that loses more than the budget)")
    others = [name for name, backend in BACKENDS.items() if backend.reads]
    p.add_argument("--also-backend", action="append", choices=others, default=[], metavar="NAME",
                   help="parity of each artifact this backend reads under it too, against the artifact's own "
                        f"runtime (repeatable; {', '.join(others)})")
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.core.report import SUMMARY_HEADERS, summary_rows, text_table
    from edgeship.export import export_run

    result = export_run(args.run, args.formats, calib_size=args.calib_size, int8_io=args.io, max_drop=args.max_drop,
                        diagnose=args.diagnose, trust_code=args.trust_code, also_backends=args.also_backend)
    print(text_table(SUMMARY_HEADERS, summary_rows(result.parity)))
    print(f"report: {result.report_md}")
    print_skipped(result.parity.dataset, result.report_md)
    if result.failed:
        print(f"edgeship: {len(result.failed)} format(s) failed: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0
