"""`edgeship explain MODEL IMAGES`: Grad-CAM heat maps of what decided each image's class."""

from __future__ import annotations

from .arguments import add_trust_flag

NAME = "explain"
HELP = "Grad-CAM heat maps: which part of each image decided the class"


def add_arguments(p) -> None:
    p.add_argument("model", help="run directory, bundle directory or .keras file (with edgeship.json beside it)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--class", dest="class_name", help="explain this class instead of the predicted one")
    p.add_argument("--out", help="folder for the PNGs (default RUN/explain)")
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.train.gradcam import explain_run

    for explanation, path in explain_run(args.model, args.images, args.out, args.class_name, args.trust_code):
        print(f"{explanation.image}: {explanation.class_name} ({explanation.probability:.2%}) -> {path}")
    return 0
