"""``microseg recipe``: write a batch recipe for a registered model from command-line options."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``recipe`` subcommand."""
    p = sub.add_parser(
        "recipe",
        help="write a batch recipe (model, settings, pixel-size policy) for `microseg batch`",
        description="Write a recipe (.json or .yaml) naming MODEL with its card and weights hash, "
        "the inference, post-processing and measurement settings, and the pixel-size policy. "
        "The Predict and Measure docks write the same file with 'Save recipe…'.",
    )
    p.add_argument("model", help="registered model name")
    p.add_argument("--out", required=True, help="recipe file to write (.json, .yaml)")
    p.add_argument("--tile", type=int, metavar="N", help="tile side in px (default: the card's)")
    p.add_argument("--halo", type=int, metavar="N", help="tile halo in px (default: the card's)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="class probability threshold (default: the card's, else 0.5)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--min-size-nm2", type=float, metavar="A", help="drop objects below A nm²")
    size.add_argument("--min-size-px", type=float, metavar="A", help="drop objects below A px")
    p.add_argument("--instances", choices=("cc", "watershed"), default="cc")
    p.add_argument("--min-distance", type=int, default=5, metavar="PX")
    p.add_argument("--fill-holes", action="store_true")
    p.add_argument("--open", type=int, default=0, metavar="R", help="opening radius (px)")
    p.add_argument("--close", type=int, default=0, metavar="R", help="closing radius (px)")
    p.add_argument(
        "--smooth", type=float, default=0.0, metavar="S", help="boundary smoothing sigma"
    )
    p.add_argument(
        "--edges",
        choices=("include", "exclude", "guard"),
        default="include",
        help="counting rule for objects on the edge",
    )
    p.add_argument("--guard-nm", type=float, default=0.0, metavar="X", help="guard-frame width")
    p.add_argument("--thickness-nm", type=float, metavar="T", help="foil thickness (hardening)")
    p.add_argument("--bins", type=int, default=20, metavar="N", help="histogram bins")
    p.add_argument(
        "--pixel-size-policy",
        choices=("metadata", "require", "override", "allow_px"),
        default="metadata",
        help="metadata (default; 'require' is the same): the file's calibration or its "
        "microseg.json sidecar, an uncalibrated image is an error; override: --pixel-size for "
        "every image; allow_px: measure uncalibrated images in px (the report says so)",
    )
    p.add_argument(
        "--pixel-size", type=float, metavar="NM", help="nm/px for --pixel-size-policy override"
    )
    p.add_argument("--description", default="", help="free text stored in the recipe")
    p.set_defaults(func=run)


def run(args) -> int:
    """Build, validate and save the recipe; print its hash."""
    from ..core.batch import InferenceSettings, PixelSizePolicy, Recipe
    from ..core.measure import MeasureSettings
    from ..core.models.card import CARD_FILE, read_card
    from ..core.models.registry import find_model
    from ..core.output_paths import check_outputs
    from .predict import _settings

    check_outputs([], [("--out", args.out)])
    card = read_card(find_model(args.model).folder / CARD_FILE)
    policy = args.pixel_size_policy
    if args.pixel_size is not None and policy == "metadata":
        policy = "override"
    recipe = Recipe.for_model(
        args.model,
        inference=InferenceSettings(tile=args.tile, halo=args.halo, tta=args.tta),
        postprocess=_settings(args, card),
        measure=MeasureSettings(
            edges=args.edges, guard=args.guard_nm, thickness_nm=args.thickness_nm, bins=args.bins
        ),
        pixel_size=PixelSizePolicy(policy, args.pixel_size),
        description=args.description,
        provenance={"saved_from": "microseg recipe"},
    )
    path = recipe.save(args.out)
    print(f"wrote {path} (recipe hash {recipe.recipe_hash()[:12]})")
    return 0
