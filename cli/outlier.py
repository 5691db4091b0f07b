"""`edgeship outlier RUN --out NEW`: a copy of a run that plain int8 really hurts, to try the gate on."""

from __future__ import annotations

from .arguments import add_trust_flag, non_negative_int, number

NAME = "outlier"
HELP = ("copy a run with one activation channel scaled up (float model unchanged): a model that plain int8 "
        "really hurts, to try the gate and --max-drop on")


def add_arguments(p) -> None:
    p.add_argument("run", help="run directory (small_cnn or any model where a BatchNorm feeds a Conv2D/Dense via ReLU)")
    p.add_argument("--out", required=True, help="new run directory")
    p.add_argument("--factor", type=number(float, 0.0, low_open=True, what="a positive factor"), default=100.0,
                   help="how much wider the channel's range gets (default 100: about -7 pp on the demo; 300: chance)")
    p.add_argument("--batchnorm", help="which BatchNormalization layer (default: the first that qualifies)")
    p.add_argument("--channel", type=non_negative_int, default=0, help="which of its channels (default 0)")
    p.add_argument("--residual", action="store_true",
                   help="scale the channel on both branches of the first residual Add instead (MobileNetV2, whose "
                        "ReLU6 leaves no pair to equalize: ×30 costs about 9 pp in int8)")
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.export.outlier import outlier_run

    change = outlier_run(args.run, args.out, args.factor, trust_code=args.trust_code, batchnorm=args.batchnorm,
                         channel=args.channel, residual=args.residual)
    print(f"{args.out}: {change.describe()}; export it to see what int8 does with it")
    return 0
