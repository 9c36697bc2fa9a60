"""``microseg two-stage``: register a detector + promptable refiner as one instance model."""

from __future__ import annotations

from ._flags import bounded_float


def register(sub) -> None:
    """Add the ``two-stage`` subcommand."""
    p = sub.add_parser(
        "two-stage",
        help="register a two-stage model: a detector's boxes, masks drawn by a promptable model",
        description="Register a model made of a registered instance model (the detector: Mask "
        "R-CNN, yolo-seg, ...) whose boxes a promptable backend turns into masks. It is then "
        "run by name like any model (microseg predict, batch recipes, the Predict dock).",
    )
    p.add_argument("--detector", required=True, metavar="MODEL",
                   help="registered instance model that proposes the boxes")
    p.add_argument("--refiner", default="auto", metavar="BACKEND",
                   help="prompt backend drawing the masks: 'auto' (SAM2 when installed with "
                   "weights, else microseg-promptable), a SAM2 id, microseg-promptable, "
                   "otsu-flood or a fine-tuned prompt model's name (default auto)")
    p.add_argument("--name", required=True, help="registry name of the new model")
    p.add_argument("--min-score", type=bounded_float(0.0, 1.0), default=0.05, metavar="S",
                   help="detections scoring less are dropped before refinement (default 0.05)")
    p.add_argument("--box-margin", type=bounded_float(0.0, 256.0, "px"), default=0.0,
                   metavar="PX", help="pixels added around each box given to the refiner")
    p.add_argument("--refine-classes", type=int, nargs="+", metavar="ID",
                   help="class ids whose masks the refiner draws (default all); the other "
                   "classes keep the detector's masks")
    p.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    p.set_defaults(func=run)


def run(args) -> int:
    """Check the detector and refiner, register the model, print one line."""
    from ..core.errors import MicrosegError
    from ..core.models.card import valid_name
    from ..core.models.two_stage_make import create_two_stage

    if not valid_name(args.name):
        raise MicrosegError(f"--name {args.name!r} must be letters, digits, '-', '_' or '.'.")
    if args.name == args.detector:
        raise MicrosegError("--name must differ from --detector.")
    folder, card = create_two_stage(args.name, args.detector, args.refiner,
                                    min_score=args.min_score, box_margin=args.box_margin,
                                    refine_classes=args.refine_classes, overwrite=args.overwrite)
    print(f"{card.name}: {card.params['detector']} boxes refined by {card.params['refiner']} "
          f"({len(card.classes)} classes) -> {folder}")
    return 0
