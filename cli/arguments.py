"""What every command's arguments share: argparse types that check values at parse time, the one-line error
parser, and the flag groups several commands take (SSH targets, --trust-code, hints for foreign models).

Budget flags all parse through `points` (pp) and `share` (fraction or percent), so `--max-drop 0.5`, `0.5pp`
and `0.5%` mean the same to export, gate and sweep."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def class_list(text: str) -> list[str]:
    names = csv_list(text)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"lists {', '.join(twice)} more than once; name each class once")
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"a classifier needs at least two classes, got {text!r}")
    return names


def number(kind, low=None, high=None, low_open=False, high_open=False, what="a number"):
    """An argparse type: KIND (int/float) within [low, high] (open ends where asked), checked at parse time."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or (
                low is not None and (value < low or (low_open and value == low))) or (
                high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


positive_int = number(int, 1, what="a positive integer")
non_negative_int = number(int, 0, what="an integer >= 0")
non_negative_float = number(float, 0.0, what="a number >= 0")
fraction = number(float, 0.0, 1.0, what="a fraction in [0, 1]")


def limited(limit):
    """An argparse type that holds a training option to the library's own range (train.limits.LIMITS)."""
    return number(limit.kind, limit.low, limit.high, limit.low_open, limit.high_open, what=limit.expected)


def points(text: str) -> float:
    """Percentage points, as `0.5`, `0.5pp` or `0.5%` (the README writes --max-slowdown 10%): all mean 0.5 pp."""
    value = text.strip().removesuffix("pp").removesuffix("%").strip()
    return number(float, what="a number of percentage points such as 0.5 or 0.5%")(value)


def share(text: str) -> float:
    """A share as a fraction or a percentage: `0.9`, `90%` and `90` all mean 90 % (a number above 1 cannot
    be a fraction, so it is read as percent); the gate prints the threshold it understood."""
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.9 or a percentage such as 90%, got {text!r}") from None
    if percent or value > 1:
        value /= 100.0
    if value != value or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1] or a percentage in [0, 100], got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def size(text: str) -> int:
    """Bytes, as `256KB` (10^3), `256KiB` (2^10), `1MB` or a plain number: what --max-arena and --max-size take."""
    from edgeship.sweep.budget import parse_size
    from edgeship.runtime.errors import UsageError

    try:
        return parse_size(text)
    except UsageError:
        raise argparse.ArgumentTypeError(f"expected a size such as 256KB, 256KiB or 262144 (bytes), got {text!r}") from None


BUDGET_TYPES = {"pp": points, "share": share, "fraction": fraction, "bytes": size}  # a gate check's unit -> its type


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming the command, with "did you mean" for a mistyped option or
    command, instead of twenty lines of usage (`--help` still prints the whole usage)."""

    def error(self, message: str):
        hint = self._did_you_mean(message)
        self.exit(2, f"{self.prog}: error: {message}{hint} (see `{self.prog} --help`)\n")

    def _did_you_mean(self, message: str) -> str:
        import difflib

        if message.startswith("unrecognized arguments:"):
            options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            guesses = []
            for word in message.split(":", 1)[1].split():
                if word.startswith("--"):
                    guesses += difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
            return f"; did you mean {', '.join(guesses)}?" if guesses else ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            known = [c.strip(" '") for c in choice.group(2).split(",")]
            close = difflib.get_close_matches(choice.group(1), known, n=1, cutoff=0.6)
            return f"; did you mean {close[0]}?" if close else ""
        return ""


def add_trust_flag(p) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="load a .keras model that Keras' safe mode refuses (a Lambda layer, a TF-Hub bundle): this "
                        "runs code that came with the model, so only for models whose author you trust")


def add_ssh_flags(p) -> None:
    p.add_argument("--accept-new-host-key", action="store_true", help="trust a target's host key on first contact")
    p.add_argument("--known-hosts", help="known_hosts file for targets (default: ssh's own)")
    p.add_argument("--identity", help="private key for targets (default: ssh's own)")
    p.add_argument("--remote-python", help="Python on the targets that has edgeship[runtime]'s packages")


def ssh_options(args):
    from edgeship.targets.ssh import SSHOptions

    return SSHOptions(accept_new_host_key=args.accept_new_host_key, known_hosts=args.known_hosts,
                      identity=args.identity, remote_python=args.remote_python)


def add_model_hint_flags(p) -> None:
    """What a model made elsewhere may not say about itself (its own metadata wins when it does)."""
    p.add_argument("--labels", metavar="FILE", help="class names, one per line in output order, for a model "
                                                    "without edgeship or standard metadata")
    p.add_argument("--input-range", metavar="0,255|0,1|-1,1",
                   help="pixel values such a model was trained on (or --mean/--std)")
    p.add_argument("--mean", metavar="M[,M,M]", help="with --std: the model takes (pixel - mean) / std")
    p.add_argument("--std", metavar="S[,S,S]", help="with --mean")
    p.add_argument("--output-scale", metavar="S[,ZERO_POINT]",
                   help="an integer (uint8/int8) output's scale when the model records none: p = (q - zero) * S")


def model_hints(args):
    from edgeship.runtime.foreign import ModelHints

    return ModelHints.from_flags(args.labels, args.input_range, args.mean, args.std, args.output_scale)


def print_skipped(dataset: dict, listed_in: Path | None) -> None:
    """One console line for the images the scan could not read (the report lists them; without a report,
    the first few are named)."""
    count = dataset.get("n_skipped") or 0
    if count:
        where = (f"the list is in {listed_in}" if listed_in is not None else
                 "; ".join(f"{s['path']}: {s['reason']}" for s in (dataset.get("skipped") or [])[:3])
                 + (" …" if count > 3 else ""))
        print(f"skipped {count} unreadable image(s) of {count + (dataset.get('n_images') or 0)}; {where}",
              file=sys.stderr)
