"""``microseg train-promptable``: train or fine-tune the built-in promptable model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..core.errors import MicrosegError


def register(sub) -> None:
    """Add the ``train-promptable`` subcommand."""
    p = sub.add_parser(
        "train-promptable",
        help="train (or fine-tune) the microseg-promptable click/box model on CPU",
        description="Train the compact click/box-conditioned U-Net on synthetic micrographs "
        "plus labelled mask-style datasets (images/ + masks/, connected components = "
        "instances). A checkpoint is written to OUT after every epoch (--resume continues); "
        "the final fp16 weights go to OUT/weights.pt. Fine-tune on your own labels with "
        "--init default --synthetic 0 --data YOUR_DIR.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--data", nargs="+", default=[], metavar="DIR",
                   help="mask-style dataset folder(s) to train on")
    p.add_argument("--images", nargs="+", metavar="NAME",
                   help="only these images of the --data folders (file stems)")
    p.add_argument("--data-list", metavar="FILE.json",
                   help="the exact training data as a JSON list of {\"folder\": DIR, "
                   "\"images\": [stems], \"weight\": share} (folders relative to the file; "
                   "weight = share of the real draws, default by image count); with --data too, "
                   "both are used")
    p.add_argument("--val", metavar="DIR", help="mask-style folder scored after each epoch")
    p.add_argument("--val-images", nargs="+", metavar="NAME", help="images of --val to score")
    p.add_argument("--synthetic", type=int, default=300, metavar="N",
                   help="synthetic training images (default 300; 0 for none)")
    p.add_argument("--synth-size", type=int, default=320, metavar="PX")
    p.add_argument("--real-fraction", type=float, default=0.4,
                   help="share of examples drawn from --data when synthetic images are used")
    p.add_argument("--minutes", type=float, default=55.0, help="wall-time budget (default 55)")
    p.add_argument("--epochs", type=int, default=200, help="epoch cap (default 200)")
    p.add_argument("--steps-per-epoch", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--init", metavar="PATH", help="start from weights ('default': shipped model)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (read as data; a changed file or one "
                   "holding code is refused)")
    p.set_defaults(func=run)


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(args) -> int:
    """Load the data, train, and print where the weights are."""
    from ..core.atomic import write_json_atomic
    from ..core.promptable.data import synthetic_samples
    from ..core.promptable.training import train_promptable
    from ..core.prompting.eval_data import load_creme

    real, real_w = [], []
    for d in args.data:
        loaded = [(s.image, s.target) for s in load_creme(d, args.images)]
        real += loaded
        real_w += [1.0] * len(loaded)
    for folder, images, share in read_data_list(args.data_list) if args.data_list else ():
        loaded = [(s.image, s.target) for s in load_creme(folder, images)]
        real += loaded
        real_w += [share / len(loaded) if share is not None else 1.0] * len(loaded)
    print(f"{len(real)} labelled images; generating {args.synthetic} synthetic ...",
          file=sys.stderr, flush=True)
    synth = synthetic_samples(args.synthetic, args.seed, args.synth_size)
    if not real and not synth:
        raise MicrosegError("Nothing to train on: give --data and/or --synthetic N.")
    samples = real + [(im, lab) for im, lab, _ in synth]
    weights = None
    if real and synth:
        frac = min(max(args.real_fraction, 0.0), 1.0)
        total = sum(real_w)
        weights = [frac * w / total for w in real_w] + [(1 - frac) / len(synth)] * len(synth)
    elif real and args.data_list:
        weights = real_w
    invert = [False] * len(real) + [True] * len(synth)
    val = load_creme(args.val, args.val_images) if args.val else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"argv": sys.argv, "args": {k: v for k, v in vars(args).items() if k != "func"},
              "git_commit": _git_commit(), "n_real_images": len(real),
              "n_synthetic_images": len(synth)}
    write_json_atomic(out / "recipe.json", recipe)
    path = train_promptable(
        samples, epochs=args.epochs, out_dir=out, init=args.init,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
        minutes=args.minutes, weights=weights, invert=invert, val_samples=val,
        resume=args.resume, seed=args.seed, threads=args.threads,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    card = model_card(recipe, path, args)
    write_json_atomic(out / "model_card.json", card)
    print(path)
    return 0


def read_data_list(path) -> list[tuple[Path, list[str] | None, float | None]]:
    """``(folder, image stems or None, share or None)`` per entry of a ``--data-list`` file.

    The file is JSON (data, never code): a list of objects with ``folder``
    (relative to the file's own folder unless absolute), optional ``images``
    (file stems) and optional ``weight`` (the entry's share of the real draws;
    entries without one weigh as many images as they hold).
    """
    import json

    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MicrosegError(f"{path}: not a readable JSON data list ({e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "folder" in e
                                                for e in entries):
        raise MicrosegError(f"{path}: expected a JSON list of {{\"folder\": ...}} objects")
    out = []
    for e in entries:
        folder = Path(e["folder"])
        folder = folder if folder.is_absolute() else (path.parent / folder).resolve()
        images = [str(i) for i in e["images"]] if e.get("images") is not None else None
        weight = e.get("weight")
        if weight is not None and not (isinstance(weight, (int, float)) and weight > 0):
            raise MicrosegError(f"{path}: weight of {e['folder']} must be a positive number")
        out.append((folder, images, None if weight is None else float(weight)))
    return out


def model_card(recipe: dict, weights_path, args) -> dict:
    """The model card of a run (validation per epoch from the log; final scores added later)."""
    import json

    from ..core.promptable.backend import load_weights
    from ..core.promptable.data import SYNTH_MIX

    model, crop, meta = load_weights(weights_path)
    return {
        "model_id": f"microseg-promptable-{Path(args.out).name}",
        "architecture": {
            "type": "U-Net, 3x3 conv + GroupNorm + ReLU, max-pool, bilinear up, concat skips",
            **model.config(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "inputs": ["image (standardised over the crop)", "validity", "positive clicks",
                       "negative clicks", "box", "previous mask probability"],
            "weights_dtype": "float16",
        },
        "crop": crop.to_dict(),
        "normalisation": "image to [0, 1] by the 0.5/99.5 % percentiles of the whole image "
        "(prompting.normalize.normalize_image, as PromptSession does), then each network "
        "crop standardised to zero mean and unit std over its valid pixels, clipped to +-6",
        "training_data": {
            "real": [{"folder": d, "images": args.images} for d in args.data]
            + ([{"folder": str(f), "images": i, "weight": w}
                for f, i, w in read_data_list(args.data_list)] if args.data_list else []),
            "real_fraction": args.real_fraction if args.data and args.synthetic else None,
            "synthetic": {"images": args.synthetic, "size": args.synth_size, "seed": args.seed,
                          "mix": SYNTH_MIX,
                          "pixel_size": "kind default x log-uniform [0.5, 1.6]"},
            "validation_held_out": {"folder": args.val, "images": args.val_images},
        },
        "recipe": {
            "steps": meta.get("steps"), "train_seconds": meta.get("elapsed_s"),
            "batch_size": args.batch_size, "steps_per_epoch": args.steps_per_epoch,
            "optimizer": f"AdamW lr {args.lr} wd 1e-4, 3 % warm-up, cosine to 2 %",
            "loss": "BCE + soft Dice on the window",
            "prompts": "first: click at the interior point farthest from the border (30 % a "
            "random deep interior pixel) or (30 % of examples) the bounding box, jittered by "
            "up to 10 % half the time; then 0-3 rounds (p 0.4/0.3/0.2/0.1) of the model's "
            "own prediction + evaluation.next_click corrective click, logits fed back",
            "augmentation": "scale 0.6-1.6, dihedral 8, gamma, contrast 0.6-1.5, offset, "
            "blur (p 0.3, sigma <= 1.5), Gaussian noise (p 0.5, std <= 0.08), inversion "
            "(p 0.1, synthetic only)",
            "threads": args.threads,
        },
        "command": " ".join(["microseg", *recipe["argv"][1:]]),
        "git_commit": recipe["git_commit"],
        "history": json.loads(json.dumps(meta.get("history", []))),
    }
