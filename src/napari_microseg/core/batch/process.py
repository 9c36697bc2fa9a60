"""One image through a recipe: :func:`process_image`.

Read (lazily for large files) -> predict -> post-process -> measure -> write,
with the same core calls the Predict and Measure docks make
(:func:`predict`, :func:`~napari_microseg.core.models.postprocess.postprocess`,
:func:`~napari_microseg.core.measure.pipeline.measure_image`), so one recipe
gives the same labels and tables in napari and in a batch.

For an image named ``NAME`` the outputs in ``out_dir`` are

* ``NAME_labels.tif`` + ``NAME_labels.labels.json`` -- instance labels and classes;
* ``NAME_objects.csv`` -- the per-object table (``counted`` column; provenance in
  ``NAME_objects.csv.json``);
* ``NAME.record.json`` -- status, recipe hash, summary row, timings, and what
  decides "already done": the input's size and SHA-256, the calibration from
  its sidecar files, and the size and SHA-256 of every output. Written last.

An image is done (:func:`finished`) only when its record says ``"ok"`` for the
same recipe hash, the input's content and sidecar calibration are unchanged,
and every output file still has the recorded size and SHA-256.

Every file is written atomically. Errors never escape: they become a record
with ``status = "error"`` (and are retried on the next run).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..calibration import PixelSize
from ..errors import CalibrationError, MicrosegError
from .recipe import Recipe, model_fingerprint

RECORD_FORMAT = "napari-microseg-batch-image"
#: Version 2 added the input's SHA-256, its sidecar calibration and the outputs' digests.
RECORD_VERSION = 2
#: Output files whose size and SHA-256 the record keeps.
DIGESTED = ("labels", "sidecar", "objects")


@dataclass
class ImageResult:
    """What happened to one image.

    Attributes
    ----------
    image : str
        The input path.
    name : str
        Stem of its output files.
    status : str
        ``"ok"`` (computed now), ``"skipped"`` (done by an earlier run with the
        same recipe) or ``"error"``.
    error : str or None
        One sentence when ``status == "error"``.
    row : dict
        The image's row of the run summary (counts, densities, sizes, ...).
    outputs : dict
        ``{"labels", "sidecar", "objects", "record"}`` paths as strings.
    timings : dict
        Seconds spent reading, predicting, post-processing, measuring, writing, in total.
    recipe_hash : str
    """

    image: str
    name: str
    status: str
    error: str | None = None
    row: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    recipe_hash: str = ""

    def summary_record(self) -> dict:
        """The flat ``summary.csv`` row of this result."""
        return {
            "image": self.image,
            "name": self.name,
            "status": self.status,
            "error": self.error or "",
            "seconds": self.timings.get("total", ""),
            **self.row,
        }

    def to_dict(self) -> dict:
        """JSON-ready record."""
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> ImageResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def output_paths(out_dir, name: str) -> dict[str, Path]:
    """The files :func:`process_image` writes for image ``name``."""
    out = Path(out_dir)
    return {
        "labels": out / f"{name}_labels.tif",
        "sidecar": out / f"{name}_labels.labels.json",
        "objects": out / f"{name}_objects.csv",
        "record": out / f"{name}.record.json",
    }


def file_digest(path) -> dict:
    """``{"size", "sha256"}`` of a file's bytes."""
    from ..measure.export import file_sha256

    return {"size": int(os.stat(path).st_size), "sha256": file_sha256(path)}


def image_identity(path) -> dict:
    """Size, modification time and SHA-256 of an input file (a changed file is redone).

    The content is hashed every time: a file rewritten with the same size and
    time is still noticed (hashing is fast next to the network).
    """
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), **file_digest(path)}


def calibration_key(path) -> dict:
    """The calibration an image's sidecar files give (``<image>.microseg.json``, ``microseg.json``).

    With the input's content (its own metadata) and the recipe (its pixel-size
    policy) this decides the pixel size, so a sidecar added or changed later
    makes the image "not done".
    """
    from ..reading import read_sidecar

    try:
        side = read_sidecar(Path(path))
    except CalibrationError as e:
        return {"error": str(e)}
    return {"sidecar": None if side is None else side.to_dict()}


def finished(recipe_hash: str, path, out_dir, name: str) -> ImageResult | None:
    """The ``"skipped"`` result of an image already done with this recipe, else ``None``.

    Done means: a record of this version with status ``"ok"`` and ``recipe_hash``,
    the same input content (SHA-256) and sidecar calibration, and every output
    with its recorded size and SHA-256.
    """
    import json

    paths = output_paths(out_dir, name)
    try:
        d = json.loads(paths["record"].read_text(encoding="utf-8"))
        if d.get("version") != RECORD_VERSION:
            return None
        res = ImageResult.from_dict(d)
        if res.status != "ok" or res.recipe_hash != recipe_hash:
            return None
        recorded = d.get("input") or {}
        if recorded.get("sha256") != file_digest(path)["sha256"]:
            return None
        if d.get("calibration") != calibration_key(path):
            return None
        digests = d.get("output_digests") or {}
        for key in DIGESTED:
            want = digests.get(key) or {}
            if os.stat(paths[key]).st_size != want.get("size"):
                return None
            if file_digest(paths[key]) != want:
                return None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    res.status = "skipped"
    return res


# -- the shared steps (also called by the Predict dock) ----------------------------------


def predict(
    model,
    card,
    image,
    pixel_size=None,
    *,
    tile=None,
    halo=None,
    tta=False,
    progress=None,
    cancel=None,
):
    """Probabilities ``(K, H, W)`` of a semantic model, or an ``InstancePrediction``.

    ``tile``/``halo`` of 0 or ``None`` mean the card's.
    """
    from ..models.inference import predict_probabilities
    from ..models.instances import predict_instances

    kw = dict(
        pixel_size=pixel_size,
        tile=tile or None,
        halo=halo or None,
        progress=progress,
        cancel=cancel,
    )
    if card.task == "instance":
        return predict_instances(model, card, image, **kw)
    return predict_probabilities(model, card, image, tta=tta, **kw)


def labels_from_prediction(prediction, card, settings, pixel_size=None):
    """``(labels, instance_classes, semantic or None)`` from :func:`predict`'s output."""
    from ..models.postprocess import postprocess

    if card.task == "instance":
        return prediction.labels, prediction.instance_classes, None
    res = postprocess(prediction, card.class_ids, settings, pixel_size)
    return res.labels, res.instance_classes, res.semantic


def pixel_size_for(recipe: Recipe, mg) -> PixelSize:
    """The image's pixel size under the recipe's policy (raises when it refuses the image).

    Only policy ``"allow_px"`` accepts an uncalibrated image (measured in px);
    ``"metadata"`` and ``"require"`` refuse it, ``"override"`` never meets one.
    """
    ps = mg.pixel_size
    if not ps.calibrated and recipe.pixel_size.policy != "allow_px":
        name = Path(mg.path or "?").name
        raise CalibrationError(
            f"{name}: no pixel size and the recipe requires calibrated images (set one in "
            f"{name}.microseg.json, or use pixel_size policy 'override' with nm, or "
            "'allow_px' to measure in px)."
        )
    return ps


@functools.lru_cache(maxsize=2)
def _load(folder: str, stamp: tuple, expected_sha: str | None, device: str):
    from ..models.registry import load_folder

    if expected_sha is not None:
        actual = model_fingerprint(folder)
        if actual != expected_sha:
            from ..models.card import ModelError

            raise ModelError(
                f"The weights of {Path(folder).name!r} changed since the recipe was "
                f"saved (SHA-256 {actual[:12]}… instead of {expected_sha[:12]}…); "
                "save the recipe again or restore the model."
            )
    return load_folder(folder, device)


def load_recipe_model(recipe: Recipe, device: str = "cpu"):
    """``(model, card)`` of the recipe, checked against its weights hash and classes.

    Loaded once per process (cached by model folder, weights file time and device).
    """
    from ..models.card import WEIGHTS_FILE, ModelError
    from ..models.registry import find_model

    folder = find_model(recipe.model_name).folder
    weights = folder / WEIGHTS_FILE
    st = weights.stat() if weights.exists() else None
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino) if st is not None else ()
    model, card = _load(str(folder), stamp, recipe.model.get("weights_sha256"), str(device))
    ids = [c["id"] for c in recipe.classes]
    if sorted(ids) != sorted(card.class_ids):
        raise ModelError(
            f"The recipe's class ids {ids} differ from model {card.name!r}'s {card.class_ids}."
        )
    return model, card


# -- one image ---------------------------------------------------------------------------


def process_image(
    recipe: Recipe,
    path,
    out_dir,
    *,
    name: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
) -> ImageResult:
    """Segment and measure one micrograph with ``recipe``; write its outputs.

    Parameters
    ----------
    recipe : Recipe
    path : str or Path
        The micrograph.
    out_dir : str or Path
        Output folder (created).
    name : str, optional
        Stem of the output files (default: the image's stem).
    overwrite : bool
        Redo an image even when its outputs match the recipe hash.
    device : str
        Torch device for the network.

    Returns
    -------
    ImageResult
        Never raises for a bad image: ``status == "error"`` says why.
    """
    path = Path(path)
    name = name or path.stem
    rhash = recipe.recipe_hash()
    paths = output_paths(out_dir, name)
    if not overwrite:
        done = finished(rhash, path, out_dir, name)
        if done is not None:
            return done
    t0 = time.perf_counter()
    timings = {}
    ident = calib = digests = None
    try:
        # what decides "done" is taken before the image is read: a change meanwhile is redone
        ident, calib = image_identity(path), calibration_key(path)
        row, outputs = _compute(recipe, path, paths, timings, device)
        digests = {k: file_digest(paths[k]) for k in DIGESTED}
        res = ImageResult(str(path), name, "ok", None, row, outputs, timings, rhash)
    except Exception as e:  # a batch never stops for one image
        msg = str(e) if isinstance(e, (MicrosegError, OSError)) else f"{type(e).__name__}: {e}"
        res = ImageResult(str(path), name, "error", msg or type(e).__name__, {}, {}, timings, rhash)
    res.timings["total"] = round(time.perf_counter() - t0, 4)
    record = {**res.to_dict(), "input": ident, "calibration": calib, "output_digests": digests}
    try:
        write_json_atomic(paths["record"], record)
        res.outputs["record"] = str(paths["record"])
    except OSError as e:
        res.status, res.error = "error", f"cannot write {paths['record']}: {e}"
    return res


def _compute(recipe: Recipe, path: Path, paths: dict, timings: dict, device: str):
    from ..reading import read_micrograph

    t = time.perf_counter()

    def lap(key):
        nonlocal t
        now = time.perf_counter()
        timings[key] = round(now - t, 4)
        t = now

    model, card = load_recipe_model(recipe, device)
    lap("load_model")
    override = recipe.pixel_size.nm if recipe.pixel_size.policy == "override" else None
    mg = read_micrograph(path, pixel_size_nm=override, as_grey=card.in_channels == 1)
    ps = pixel_size_for(recipe, mg)
    lap("read")
    inf = recipe.inference
    prediction = predict(model, card, mg.data, ps, tile=inf.tile, halo=inf.halo, tta=inf.tta)
    lap("predict")
    labels, inst, _ = labels_from_prediction(prediction, card, recipe.postprocess, ps)
    del prediction
    lap("postprocess")
    result = measure(recipe, labels, inst, mg, ps)
    lap("measure")
    outputs = write_outputs(recipe, path, paths, labels, inst, result, card)
    lap("write")
    return summary_row(result, recipe, mg), outputs


def measure(recipe: Recipe, labels, instance_classes, mg, pixel_size):
    """:func:`measure_image` of predicted labels, as the Measure dock calls it."""
    from ..measure.pipeline import measure_image

    image = mg.data if mg.data.ndim == 2 else None
    return measure_image(
        labels,
        pixel_size,
        intensity=None if image is None else np.asarray(image),
        instance_classes=instance_classes,
        classes=recipe.class_table(),
        analysis_mask=mg.analysis_mask,
        settings=recipe.measure,
    )


def write_outputs(recipe, path, paths, labels, inst, result, card) -> dict:
    """Labels TIFF + sidecar and the per-object CSV, each atomically."""
    from ..labels_io import write_labels
    from ..measure.export import make_provenance, write_csv

    model = {**card.reference(), "weights_sha256": recipe.model.get("weights_sha256")}
    settings = {
        "inference": recipe.inference.to_dict(),
        "postprocess": recipe.postprocess.to_dict(),
        "recipe_hash": recipe.recipe_hash(),
    }
    prov = make_provenance(
        image_path=path, pixel_size=result.pixel_size, model=model, settings=settings
    )
    write_labels(
        paths["labels"],
        labels,
        instance_classes=inst,
        classes=recipe.class_table(),
        pixel_size=result.pixel_size,
        metadata=prov,
    )
    table = result.table.copy()
    table["counted"] = np.asarray(result.counting.counted, bool)
    mprov = {**prov, "settings": {**settings, "measure": result.settings_record()}}
    write_csv(paths["objects"], table, mprov, name="objects")  # atomic, with its .csv.json sidecar
    return {k: str(paths[k]) for k in ("labels", "sidecar", "objects")}


def summary_row(result, recipe: Recipe, mg) -> dict:
    """One row of the run summary: size, calibration, counts, densities, mean sizes."""
    ps, s = result.pixel_size, result.summary
    u = ps.unit
    dens = "density_per_um2" if u == "nm" else "density_per_px2"
    all_row = s[s["class_id"] == -1].iloc[0]
    row = {
        "height_px": int(mg.shape[0]),
        "width_px": int(mg.shape[1]),
        "pixel_size_nm": ps.x_nm if ps.calibrated else None,
        "pixel_size_source": ps.source,
        "unit": u,
        f"reference_area_{u}2": float(all_row[f"reference_area_{u}2"]),
        "n_objects": int(all_row["count"]),
        dens: float(all_row[dens]),
        "area_fraction": float(all_row["area_fraction"]),
        f"mean_equivalent_diameter_{u}": _float(all_row[f"mean_equivalent_diameter_{u}"]),
    }
    if not ps.calibrated:
        row["calibration_note"] = "measured in px: no pixel size (pixel_size policy allow_px)"
    if result.hardening is not None:
        row["hardening_rss_mpa"] = float(result.hardening.total_rss_mpa)
    for _, r in s[s["class_id"] >= 0].iterrows():
        row[f"count[{r['class_name']}]"] = int(r["count"])
        row[f"{dens}[{r['class_name']}]"] = float(r[dens])
    return row


def _float(v):
    v = float(v)
    return v if np.isfinite(v) else None
