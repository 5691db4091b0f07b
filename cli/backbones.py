"""`edgeship backbones`: the backbone registry as a table."""

from __future__ import annotations

NAME = "backbones"
HELP = "list backbones"


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    from edgeship.core.report import text_table
    from edgeship.train.backbones import BACKBONES

    rows = [[b.name, b.default_size, b.weights_source, b.description] for b in BACKBONES.values()]
    rows.append(["hub:HANDLE_OR_DIR", 224, "the TF-Hub model's own",
                 "TF-Hub feature vector (URL handle with edgeship[hub], or a local SavedModel directory)"])
    print(text_table(("backbone", "default size", "pretrained weights", "description"), rows))
    return 0
