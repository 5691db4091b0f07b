"""`edgeship qat RUN --out NEW`: a copy of a run whose int8 exports come from quantization-aware training."""

from __future__ import annotations

from .arguments import add_trust_flag, non_negative_int, number

EPOCHS, LEARNING_RATE = 5, 2e-4  # core.qat's defaults, written here so `--help` does not import TensorFlow

NAME = "qat"
HELP = ("fine-tune a run with fake quantization (BatchNorm folded, per-channel int8 weights, learned activation "
        "ranges) into a new run whose int8 exports keep those ranges")
INTERRUPTED = "; nothing was written to --out (run it again)"


def add_arguments(p) -> None:
    p.add_argument("run", help="run directory (or its bundle) to fine-tune from; it is left as it is")
    p.add_argument("--out", required=True, help="new run directory")
    p.add_argument("--epochs", type=non_negative_int, default=EPOCHS,
                   help=f"fine-tuning epochs on the training split; the best on validation is kept (default {EPOCHS})")
    p.add_argument("--learning-rate", type=number(float, 0.0, low_open=True, what="a positive learning rate"),
                   default=LEARNING_RATE, help=f"Adam's learning rate while fine-tuning (default {LEARNING_RATE:g})")
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.train.qat_run import qat_run

    record = qat_run(args.run, args.out, epochs=args.epochs, learning_rate=args.learning_rate,
                     trust_code=args.trust_code)
    scores = record["val_accuracy_by_epoch"]
    print(f"{args.out}: fake-quantized fine-tune of {args.run}, validation accuracy {scores[0]:.2%} after "
          f"calibration, {scores[record['chosen_epoch']]:.2%} kept (epoch {record['chosen_epoch']} of "
          f"{record['epochs']}); export it: `edgeship export {args.out}`")
    return 0
