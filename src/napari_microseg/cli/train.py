"""``microseg train``: train, fine-tune or resume a segmentation model headless."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.errors import MicrosegError


def register(sub) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train or fine-tune a model on labelled micrographs; register it",
        description="Train a model (see --arch) on a dataset folder (images/ with masks/, boxes/ "
        "or a COCO .json) or on image/labels pairs, validate every epoch (pixel mIoU, instance F1 "
        "at IoU 0.3), keep the best and last checkpoints in the run folder, and register the best "
        "weights with a model card. Ctrl+C stops after the current step with a checkpoint; "
        "--resume RUN_DIR continues it.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="FOLDER", help="dataset folder")
    data.add_argument("--images", nargs="+", metavar="NAME", help="image names of --data to use")
    data.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="IMAGE:LABELS",
        help="an image and its instance-labels TIFF (with .labels.json classes); repeatable. "
        "Split at the LAST ':', so IMAGE may contain ':' (C:/img.tif:lab.tif) but LABELS not",
    )
    data.add_argument("--val-data", metavar="FOLDER", help="validation dataset folder")
    data.add_argument(
        "--val-images",
        nargs="+",
        metavar="NAME",
        help="image names (of --val-data, else of --data) to validate on",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share held out when no validation images are given",
    )
    data.add_argument("--kfold", type=int, default=0, metavar="K", help="k-fold split ...")
    data.add_argument("--fold", type=int, default=0, metavar="F", help="... and this fold of it")
    data.add_argument(
        "--pixel-size",
        type=float,
        metavar="NM",
        help="nm/px of the training images (recorded on the model card)",
    )
    data.add_argument(
        "--adapt-target",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="unlabelled target-domain images: adversarial output adaptation",
    )
    model = p.add_argument_group("model")
    model.add_argument("--arch", default="unet", help="architecture (see --list-arch)")
    model.add_argument("--list-arch", action="store_true", help="list trainable architectures")
    model.add_argument("--params", default="{}", metavar="JSON", help="architecture parameters")
    model.add_argument("--name", default="my-model", help="registry name of the result")
    model.add_argument("--init", metavar="MODEL", help="fine-tune from this registered model")
    model.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    model.add_argument("--no-register", action="store_true", help="do not register the result")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--patch", type=int, default=256, help="patch side (px)")
    opt.add_argument("--batch", type=int, default=4, help="patches per step")
    opt.add_argument("--epochs", type=int, default=20)
    opt.add_argument("--steps", type=int, default=50, help="steps per epoch")
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--patience", type=int, default=0, help="early stopping (epochs; 0 off)")
    opt.add_argument("--minutes", type=float, help="time budget (see --clock)")
    opt.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="the budget counts wall time or this process's CPU time (equal-compute comparisons)",
    )
    opt.add_argument(
        "--snapshot-minutes",
        type=float,
        nargs="+",
        default=[],
        help="keep weights after these many minutes of training",
    )
    opt.add_argument("--no-augment", action="store_true", help="crops only")
    opt.add_argument("--device", default="auto")
    opt.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    opt.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default: a new one)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped or killed run (its data, recipe and --no-register come from "
        "the run folder)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _config(args):
    from ..core.training import AugmentConfig, TrainConfig

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        raise MicrosegError(f"--params is not JSON: {e}") from None
    return TrainConfig(
        name=args.name,
        architecture=args.arch,
        params=params,
        init_model=args.init,
        patch_size=args.patch,
        batch_size=args.batch,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        lr=args.lr,
        val_fraction=args.val_fraction,
        kfold=args.kfold,
        fold=args.fold,
        patience=args.patience,
        augment=AugmentConfig.off() if args.no_augment else AugmentConfig(),
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        max_minutes=args.minutes,
        clock=args.clock,
        snapshot_minutes=list(args.snapshot_minutes),
        adapt_target=list(args.adapt_target),
        pixel_size_nm=args.pixel_size,
    )


def load_pair(spec: str):
    """A :class:`TrainImage` from ``IMAGE:LABELS``.

    The spec is split at its last ``:``, so a Windows drive or a ``:`` in the
    image path works (``C:/data/a.tif:a_labels.tif``); the labels path must
    not contain ``:``.
    """
    from ..core.labels_io import read_labels
    from ..core.reading import read_micrograph
    from ..core.training import TrainImage
    from ..core.training.data import class_names_of

    image, sep, labels = spec.rpartition(":")
    if not sep or not image or not labels:
        raise MicrosegError(
            f"--pair {spec!r}: expected IMAGE:LABELS (split at the last ':'; the labels path "
            "may not contain ':')."
        )
    for what, path in (("image", image), ("labels", labels)):
        if not Path(path).is_file():
            raise MicrosegError(
                f"--pair {spec!r}: the {what} file {path} does not exist (IMAGE:LABELS is split "
                "at the last ':')."
            )
    mg = read_micrograph(image, as_grey=True)
    rec = read_labels(labels)
    ps = mg.pixel_size.x_nm if mg.pixel_size.calibrated else None
    return TrainImage(Path(image).stem, mg.data, rec.labels, dict(rec.instance_classes), ps,
                      class_names=class_names_of(rec.classes))


def _data(d: dict):
    """``(train, val, source)`` from the data arguments (also those saved in a run)."""
    from ..core.training import load_folder

    train, source = [], {"cli": d}
    if d.get("data"):
        train, src = load_folder(d["data"], d.get("images"))
        source.update(src)
    train += [load_pair(s) for s in d.get("pair") or []]
    if not train:
        raise MicrosegError("No training data: give --data FOLDER and/or --pair IMAGE:LABELS.")
    val = None
    if d.get("val_images") and not (d.get("val_data") or d.get("data")):
        raise MicrosegError(
            "--val-images names images of --val-data (or --data), and neither is given; add "
            "--val-data FOLDER, or leave --val-images out to hold out --val-fraction."
        )
    if d.get("val_data") or d.get("val_images"):
        val, _ = load_folder(d.get("val_data") or d["data"], d.get("val_images"))
    return train, val, source


DATA_KEYS = ("data", "images", "pair", "val_data", "val_images")


def run(args) -> int:
    from ..core.training import TRAINABLE, TrainConfig, train

    if args.list_arch:
        for k, v in TRAINABLE.items():
            print(f"{k:14s} {v}")
        return 0
    if args.resume:
        saved = _saved_run(args.resume)
        cfg = TrainConfig.from_dict(saved["config"])
        cli = saved.get("source", {}).get("cli", {})
        do_register = not (args.no_register or cli.get("no_register"))
        train_set, val_set, source = _data(cli)
        run_dir = args.resume
    else:
        from ..core.training.run_folder import check_run_dir

        cfg = _config(args)
        check_run_dir(args.run_dir, False)  # before loading any data
        do_register = not args.no_register
        d = {k: getattr(args, k) for k in DATA_KEYS}
        train_set, val_set, source = _data(d)
        if args.no_register:  # remembered, so a resumed run does not register either
            source["cli"] = {**d, "no_register": True}
        run_dir = args.run_dir
    bar = _Progress(cfg.total_steps, quiet=args.quiet)
    try:
        result = train(
            cfg,
            train_set,
            val_set,
            run_dir=run_dir,
            resume=bool(args.resume),
            progress=bar,
            should_stop=bar.interrupted,
            register=do_register,
            overwrite=args.overwrite,
            source=source,
        )
    finally:
        bar.close()
    print(f"run folder: {result.run_dir}")
    if result.stopped:
        print(f"stopped; continue with: microseg train --resume {result.run_dir}")
        return 130
    if result.model_name:
        print(f"registered model: {result.model_name}  {json.dumps(result.card.metrics)}")
    return 0


def _saved_run(run_dir) -> dict:
    """The ``config.json`` of the run folder ``run_dir``; one-line error when it is not one."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise MicrosegError(f"--resume {run_dir}: no such run folder.")
    if not path.is_file():
        raise MicrosegError(
            f"--resume {run_dir}: not a training run folder (no config.json); give the folder "
            "a run printed as 'run folder:'."
        )
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MicrosegError(f"{path}: not readable JSON ({e}).") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise MicrosegError(f"{path}: not the config.json of a training run (no 'config').")
    if not isinstance(saved.get("source", {}), dict):
        raise MicrosegError(f"{path}: 'source' must be a JSON object.")
    return saved


class _Progress:
    """tqdm bar over steps, a line per epoch; Ctrl+C asks the run to stop cleanly."""

    def __init__(self, total: int, quiet: bool = False):
        import signal

        from tqdm import tqdm

        self.bar = None if quiet else tqdm(total=total, unit="step", file=sys.stderr)
        self._stop = False
        try:
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: no Ctrl+C handling
            self._old = None

    def _on_sigint(self, *_):
        self._stop = True

    def interrupted(self) -> bool:
        return self._stop

    def __call__(self, ev) -> None:
        if ev.kind == "step" and self.bar is not None:
            self.bar.n = ev.step
            self.bar.set_postfix(loss=f"{ev.loss:.3f}", batch=ev.batch_size, refresh=False)
            self.bar.refresh()
        elif ev.kind == "epoch":
            m = ev.metrics
            if "miou" in m and "f1" in m:
                scores = f"  val mIoU {m['miou']:.3f}  F1@0.3 {m['f1']:.3f}"
            else:  # prompt models: mean IoU after 1 and 3 simulated clicks
                scores = "".join(f"  val {k} {v:.3f}" for k, v in m.items() if isinstance(v, float))
            self._write(f"epoch {ev.epoch}: loss {ev.loss:.4f}{scores}")
        elif ev.kind == "message":
            self._write(ev.text)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        if self.bar is not None:
            self.bar.close()
