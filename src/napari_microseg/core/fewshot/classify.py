"""Classify like these: give every object of a labels image the class of the examples it resembles.

The user picks a few objects of each class (``{instance id: class id}``, two
classes or more, e.g. five ``<111>`` loops, five ``<100>`` loops and five black
dots); :class:`ObjectClassifier` learns from them and assigns a class and a
confidence to every other object. Corrections are more examples:
:meth:`ObjectClassifier.add_examples` retrains with them.

Features (one row per object, :func:`object_features`)
------------------------------------------------------
* size and shape from :func:`~napari_microseg.core.measure.measure_objects`
  (area, equivalent diameter, axes, Feret diameters, aspect ratio, perimeter,
  circularity, solidity; the orientation is left out, so a class is learnt
  whatever the direction its examples lie in);
* intensity, on the image normalised by the background's median and robust
  spread (so 8-bit, 16-bit and float images read alike): mean, spread and
  percentiles inside the object, the mean of a ring of background around it and
  the contrast against that ring;
* a radial profile: mean intensity of the object's rim, middle and core (by
  distance from the outline, relative to its largest distance), minus the ring,
  which tells a ring-shaped loop from a filled dot;
* texture: local-binary-pattern histogram and the Hessian's eigenvalues at the
  object's scale, averaged over the object.

The classifier is a class-balanced extremely-randomised-trees ensemble
(scikit-learn), which needs no feature scaling and copes with 2 examples as
with 200. It learns from one of three nested feature sets (:data:`FEATURE_SETS`),
the one that classifies the examples best in cross-validation (so classes that
differ by size and shape alone are not learnt through noisy texture), then
self-trains on the objects it is already sure of. Objects cut by the image
border do not train it. The confidence of an object is its largest class
probability. Benchmark: ``benchmarks/bench_classify_like.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from ..calibration import PixelSize
from ..errors import InvalidImageError, MicrosegError

#: Shape columns of :func:`~napari_microseg.core.measure.measure_objects` used as
#: features, without their unit suffix.
SHAPE_COLUMNS = ("area", "equivalent_diameter", "major_axis", "minor_axis", "feret_min",
                 "feret_max", "aspect_ratio", "perimeter", "heywood_circularity", "solidity")
#: Background pixels sampled to normalise the intensities.
_BACKGROUND_SAMPLE = 1_000_000
#: Local-binary-pattern neighbours (uniform patterns: P + 2 codes).
_LBP_POINTS = 8
#: Intensity and radial-profile columns of :func:`object_features`.
INTENSITY_COLUMNS = ("z_mean", "z_std", "z_p10", "z_p50", "z_p90", "ring_mean", "ring_std",
                     "contrast", "contrast_extreme", "profile_rim", "profile_mid", "profile_core",
                     "core_minus_rim")
#: Nested feature sets the classifier chooses from by cross-validation on the examples
#: (size and shape alone unless another set is better by :data:`FEATURE_SET_MARGIN`):
#: classes that differ by size and shape are learnt without the noise of features that do
#: not tell them apart; classes alike in shape (voids, precipitates) get the intensities.
FEATURE_SETS = ("shape", "shape+intensity", "all")
#: Cross-validated accuracy by which a larger feature set must beat size and shape alone.
FEATURE_SET_MARGIN = 0.15
#: Class probability from which self-training takes an object's class as known ...
SELF_TRAINING_THRESHOLD = 0.8
#: ... for at most this many rounds.
SELF_TRAINING_ROUNDS = 10
#: Folds of the cross-validation that chooses the feature set (stratified; fewer when a
#: class has fewer examples, leave-one-out when one has a single example).
_CV_FOLDS = 5
#: Trees of the models fitted during that cross-validation.
_CV_TREES = 40


class ClassifyError(MicrosegError):
    """Bad examples or inputs for :class:`ObjectClassifier`."""


def _grey(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3].astype(np.float32).mean(axis=-1)
    if img.ndim != 2:
        raise InvalidImageError(f"Classify like these needs a 2-D image, got shape {img.shape}.")
    if img.dtype.kind not in "uifb":
        raise InvalidImageError(f"The image's dtype {img.dtype} is not numeric.")
    return img


def _normalised(img: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(img - background median) / robust spread`` as float32; non-finite pixels -> median."""
    out = img.astype(np.float32)  # a copy: the caller's image is never changed
    finite = np.isfinite(out)
    bg = out[(labels == 0) & finite]
    if bg.size == 0:
        bg = out[finite]
    if bg.size > _BACKGROUND_SAMPLE:
        bg = bg[:: bg.size // _BACKGROUND_SAMPLE + 1]
    med = float(np.median(bg)) if bg.size else 0.0
    spread = 1.4826 * float(np.median(np.abs(bg - med))) if bg.size else 0.0
    if not spread > 0:
        spread = float(bg.std()) if bg.size else 0.0
    if not spread > 0:
        spread = 1.0
    out[~finite] = med
    out -= med
    out /= spread
    return out


def _shape_table(labels: np.ndarray, pixel_size: PixelSize | None) -> pd.DataFrame:
    from ..measure import measure_objects

    table = measure_objects(labels, pixel_size)
    unit = table.attrs["unit"]
    rename = {}
    for name in SHAPE_COLUMNS:
        for col in (f"{name}_{unit}2", f"{name}_{unit}", name):
            if col in table.columns:
                rename[col] = name
                break
    shape = table[["label", *rename]].rename(columns=rename)
    shape["touches_image_edge"] = table["touches_image_edge"].to_numpy(np.float64)
    minor = shape["minor_axis"].to_numpy()
    # a one-pixel-wide line has no minor axis: its aspect is its length over one pixel
    px = 1.0
    if pixel_size is not None and pixel_size.calibrated:
        px = float(np.sqrt(pixel_size.x_nm * pixel_size.y_nm))
    shape["aspect_ratio"] = np.where(np.isfinite(shape["aspect_ratio"]), shape["aspect_ratio"],
                                     shape["major_axis"] / np.maximum(minor, px))
    shape["log_area"] = np.log(np.maximum(shape["area"].to_numpy(), 1e-12))
    return shape.reset_index(drop=True)


def _hessian_eigen(z: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    h = hessian_matrix(z, sigma=sigma, order="rc", use_gaussian_derivatives=False)
    ev = hessian_matrix_eigvals(h)
    return ev[0] * sigma**2, ev[1] * sigma**2  # scale-normalised, largest first


def _object_row(zs, z, lbp, crop_lab, oid, hess):
    """Intensity, radial and texture features of one object in its padded crop."""
    m = crop_lab == oid
    inside, inside_s = z[m], zs[m]
    dist_out = ndimage.distance_transform_edt(~m)
    width = max(2.0, 0.35 * np.sqrt(m.sum()))
    ring = (dist_out > 0) & (dist_out <= width) & (crop_lab == 0)
    ring_vals = zs[ring] if ring.any() else zs[~m] if (~m).any() else np.zeros(1, np.float32)
    ring_mean = float(ring_vals.mean())
    d_in = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1][m]
    dn = d_in / max(float(d_in.max()), 1e-6)
    prof = []
    for lo, hi in ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01)):
        sel = (dn > lo) & (dn <= hi) if lo else dn <= hi
        prof.append(float(inside_s[sel].mean()) - ring_mean if sel.any() else np.nan)
    prof = [p if np.isfinite(p) else float(inside_s.mean()) - ring_mean for p in prof]
    codes = lbp[m].astype(np.int64)
    hist = np.bincount(codes, minlength=_LBP_POINTS + 2)[: _LBP_POINTS + 2] / max(codes.size, 1)
    h1, h2 = hess[0][m], hess[1][m]
    row = {
        "z_mean": float(inside.mean()),
        "z_std": float(inside.std()),
        "z_p10": float(np.percentile(inside_s, 10)),
        "z_p50": float(np.median(inside_s)),
        "z_p90": float(np.percentile(inside_s, 90)),
        "ring_mean": ring_mean,
        "ring_std": float(ring_vals.std()),
        "contrast": float(inside_s.mean()) - ring_mean,
        "contrast_extreme": float(inside_s.min() if inside_s.mean() < ring_mean else inside_s.max())
        - ring_mean,
        "profile_rim": prof[0],
        "profile_mid": prof[1],
        "profile_core": prof[2],
        "core_minus_rim": prof[2] - prof[0],
        "hessian_max": float(h1.mean()),
        "hessian_min": float(h2.mean()),
        "hessian_ratio": float(np.abs(h2).mean() / (np.abs(h1).mean() + np.abs(h2).mean() + 1e-6)),
    }
    row.update({f"lbp_{i}": float(v) for i, v in enumerate(hist)})
    return row


def object_features(image, labels, pixel_size: PixelSize | None = None) -> pd.DataFrame:
    """One row of size, shape, intensity, radial-profile and texture features per object.

    Parameters
    ----------
    image : array-like
        2-D micrograph (any numeric dtype; RGB is averaged to grey).
    labels : array-like of int
        Instance labels of the same shape, 0 = background.
    pixel_size : PixelSize, optional
        Sizes in nm when calibrated, else in px.

    Returns
    -------
    pandas.DataFrame
        ``label``, the feature columns (all finite) and ``touches_image_edge``
        (1.0 for an object cut by the border), sorted by label.
    """
    from skimage.feature import local_binary_pattern

    from ..measure.runs import check_labels

    lab = check_labels(labels)
    img = _grey(image)
    if img.shape != lab.shape:
        raise InvalidImageError(f"The labels are {lab.shape[1]} x {lab.shape[0]} px but the image is "
                                f"{img.shape[1]} x {img.shape[0]} px.")
    shape = _shape_table(lab, pixel_size)
    if shape.empty:
        return shape
    z = _normalised(img, lab)
    slices = ndimage.find_objects(lab)
    rows = []
    for oid, area_px in zip(shape["label"].to_numpy(), np.bincount(lab.ravel())[shape["label"]],
                            strict=True):
        sl = slices[int(oid) - 1]
        r = float(np.sqrt(area_px / np.pi))
        pad = int(np.ceil(max(4.0, 1.2 * r)))
        y0, x0 = max(sl[0].start - pad, 0), max(sl[1].start - pad, 0)
        y1, x1 = min(sl[0].stop + pad, lab.shape[0]), min(sl[1].stop + pad, lab.shape[1])
        zc = z[y0:y1, x0:x1]
        sigma = float(np.clip(0.5 * r, 0.7, 8.0))
        zs = ndimage.gaussian_filter(zc, min(1.0, sigma))
        # integer levels (1/16 of the background spread): LBP compares neighbours exactly
        lbp = local_binary_pattern(np.round(zs * 16).astype(np.int32), _LBP_POINTS, 1.0,
                                   method="uniform")
        hess = _hessian_eigen(zc, sigma)
        rows.append(_object_row(zs, zc, lbp, lab[y0:y1, x0:x1], int(oid), hess))
    feats = pd.concat([shape, pd.DataFrame(rows)], axis=1)
    num = feats.columns.drop("label")
    feats[num] = feats[num].astype(np.float64).replace([np.inf, -np.inf], np.nan).fillna(0.0)
    return feats


def _check_examples(examples, known: np.ndarray) -> dict[int, int]:
    """``{instance id: class id}`` as ints; every id an object of the labels, every class > 0."""
    if examples is None:
        raise ClassifyError("Give example objects: {instance id: class id}.")
    try:
        items = examples.items() if isinstance(examples, Mapping) else iter(examples)
        out = {}
        for k, v in items:
            if isinstance(k, bool | float) or isinstance(v, bool | float):
                raise TypeError(f"{k!r}: {v!r}")
            out[int(k)] = int(v)
    except (TypeError, ValueError) as e:
        raise ClassifyError(f"Examples must map instance ids to class ids (whole numbers): {e}.") from e
    bad_cls = sorted({c for c in out.values() if c <= 0})
    if bad_cls:
        raise ClassifyError(f"Class ids must be positive; got {bad_cls[0]}.")
    missing = sorted(set(out) - set(known.tolist()))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        what = "the labels hold no objects" if known.size == 0 else "not an object of the labels"
        raise ClassifyError(f"Example id {missing[0]}{more}: {what}.")
    return out


class ObjectClassifier:
    """Few-shot classifier of the objects of one labels image ("classify like these").

    Parameters
    ----------
    image : array-like
        2-D micrograph (any numeric dtype). Never modified.
    labels : array-like of int
        Instance labels of the same shape, 0 = background. Never modified.
    pixel_size : PixelSize, optional
        Sizes in nm when calibrated.
    seed : int
        Seed of the tree ensemble: the same examples always give the same result.
    n_estimators : int
        Trees in the ensemble.
    feature_set : {"auto", "shape", "shape+intensity", "all"}
        Features learnt from; ``"auto"`` chooses among :data:`FEATURE_SETS` by
        cross-validation on the examples (see :attr:`feature_set_used`).
    self_training : bool
        Also learn from the objects the ensemble is already sure of (probability
        :data:`SELF_TRAINING_THRESHOLD` or more), round after round, as
        scikit-learn's ``SelfTrainingClassifier`` does: with five examples a class,
        the unlabelled objects fill in the classes' spread.

    Objects cut by the image border are left out of training (examples too, as
    long as every class keeps an example inside): their measured shape is not
    their class's. They are classified like the others.

    Examples
    --------
    >>> clf = ObjectClassifier(image, labels).fit({4: 1, 9: 1, 17: 2, 30: 2, 41: 3, 52: 3})
    >>> table = clf.predict()          # label, class_id, confidence, p_1, p_2, p_3, example
    >>> clf.add_examples({63: 2})      # a correction; retrains
    """

    def __init__(self, image, labels, *, pixel_size: PixelSize | None = None, seed: int = 0,
                 n_estimators: int = 100, feature_set: str = "auto", self_training: bool = True):
        if feature_set != "auto" and feature_set not in FEATURE_SETS:
            raise ClassifyError(f"feature_set must be 'auto' or one of {', '.join(FEATURE_SETS)}; "
                                f"got {feature_set!r}.")
        self.features = object_features(image, labels, pixel_size)
        self.seed = int(seed)
        self.n_estimators = int(n_estimators)
        self.feature_set = feature_set
        self.self_training = bool(self_training)
        #: Feature set of the last fit; per-set cross-validated accuracy in :attr:`cv_scores`.
        self.feature_set_used: str | None = None
        self.cv_scores: dict[str, float] = {}
        self._examples: dict[int, int] = {}
        self._columns: list[str] = []
        self._model = None

    @property
    def labels(self) -> np.ndarray:
        """Instance ids of the objects, in the order of :attr:`features`."""
        return self.features["label"].to_numpy() if len(self.features) else np.zeros(0, np.int64)

    @property
    def examples(self) -> dict[int, int]:
        """The examples the classifier was last fitted on, ``{instance id: class id}``."""
        return dict(self._examples)

    @property
    def classes(self) -> list[int]:
        """Class ids learnt, ascending."""
        return sorted(set(self._examples.values()))

    def fit(self, examples: Mapping[int, int]) -> ObjectClassifier:
        """Learn from ``examples`` (``{instance id: class id}``, two classes or more); return self.

        Raises
        ------
        ClassifyError
            Fewer than two classes, an id that is not an object, a class id below 1.
        """
        ex = _check_examples(examples, self.labels)
        if len(set(ex.values())) < 2:
            found = f"only class {next(iter(ex.values()))}" if ex else "no example"
            raise ClassifyError(f"Give examples of two classes or more ({found} given).")
        y = np.array(list(ex.values()))
        name = self.feature_set
        if name == "auto":
            self.cv_scores = self._cross_validate(list(ex), y)
            # size and shape unless they clearly fail where intensity succeeds: with a few
            # examples, a larger set often wins the cross-validation by chance, then
            # misclassifies (ring and filled loops of one class differ more in intensity
            # than two classes do; see BENCHMARKS.md "Classify like these")
            best = max(FEATURE_SETS, key=lambda k: (self.cv_scores[k], -FEATURE_SETS.index(k)))
            margin = self.cv_scores[best] - self.cv_scores["shape"]
            name = best if margin >= FEATURE_SET_MARGIN else "shape"
        columns = self.columns_of(name)
        model = self._self_train(np.fromiter(ex, np.int64, len(ex)), y, columns)
        self._model, self._examples, self._columns = model, ex, columns
        self.feature_set_used = name
        return self

    def columns_of(self, feature_set: str) -> list[str]:
        """Feature columns of one of :data:`FEATURE_SETS`."""
        shape = [c for c in (*SHAPE_COLUMNS, "log_area") if c in self.features.columns]
        if feature_set == "shape":
            return shape
        if feature_set == "shape+intensity":
            return shape + [c for c in INTENSITY_COLUMNS if c in self.features.columns]
        return [c for c in self.features.columns if c not in ("label", "touches_image_edge")]

    def _inside(self, ids, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and classes of the examples, less those cut by the border if every class keeps one."""
        pos = np.searchsorted(self.labels, np.asarray(ids, np.int64))
        inner = self.features["touches_image_edge"].to_numpy()[pos] == 0
        if set(y[inner].tolist()) == set(y.tolist()):
            return pos[inner], y[inner]
        return pos, y

    def _self_train(self, ids: np.ndarray, y: np.ndarray, columns: list[str]):
        """Trees fitted on the examples, then on the objects they are sure of, up to 10 rounds."""
        x = self._matrix(columns=columns)
        edge = self.features["touches_image_edge"].to_numpy() > 0
        target = np.zeros(len(x), np.int64)
        known = np.zeros(len(x), bool)
        pos, y = self._inside(ids, y)
        target[pos], known[pos] = y, True
        model = self._trees(self.n_estimators).fit(x[known], target[known])
        for _ in range(SELF_TRAINING_ROUNDS if self.self_training else 0):
            rest = np.flatnonzero(~known & ~edge)
            if rest.size == 0:
                break
            prob = model.predict_proba(x[rest])
            sure = prob.max(axis=1) >= SELF_TRAINING_THRESHOLD
            if not sure.any():
                break
            target[rest[sure]] = model.classes_[prob[sure].argmax(axis=1)]
            known[rest[sure]] = True
            model = self._trees(self.n_estimators).fit(x[known], target[known])
        return model

    def _trees(self, n: int):
        from sklearn.ensemble import ExtraTreesClassifier

        # every feature at each split: with few examples, the informative one is not left out
        return ExtraTreesClassifier(n_estimators=n, class_weight="balanced", max_features=None,
                                    random_state=self.seed, n_jobs=1)

    def _cross_validate(self, ids: list[int], y: np.ndarray) -> dict[str, float]:
        """Accuracy of each feature set on the examples held out (stratified k-fold)."""
        import warnings

        from sklearn.model_selection import LeaveOneOut, StratifiedKFold, cross_val_score

        pos, y = self._inside(ids, y)
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < 2:
            cv = LeaveOneOut()
        else:
            cv = StratifiedKFold(min(_CV_FOLDS, int(counts.min())), shuffle=True,
                                 random_state=self.seed)
        scores = {}
        with warnings.catch_warnings():  # a class missing from a training fold is expected
            warnings.simplefilter("ignore")
            for name in FEATURE_SETS:
                x = self.features[self.columns_of(name)].to_numpy(np.float64)[pos]
                scores[name] = float(cross_val_score(self._trees(_CV_TREES), x, y, cv=cv).mean())
        return scores

    def add_examples(self, examples: Mapping[int, int]) -> ObjectClassifier:
        """Add or correct examples (a new class id for an id replaces the old one); retrain."""
        ex = _check_examples(examples, self.labels)
        return self.fit({**self._examples, **ex})

    def remove_examples(self, ids: Iterable[int]) -> ObjectClassifier:
        """Forget the examples ``ids`` (unknown ids are ignored); retrain."""
        drop = {int(i) for i in ids}
        return self.fit({k: v for k, v in self._examples.items() if k not in drop})

    def _matrix(self, ids=None, columns=None) -> np.ndarray:
        f = self.features
        if ids is not None:
            f = f.iloc[np.searchsorted(self.labels, np.asarray(list(ids), np.int64))]
        return f[list(columns or self._columns)].to_numpy(np.float64)

    def predict(self) -> pd.DataFrame:
        """Class and confidence of every object.

        Returns
        -------
        pandas.DataFrame
            ``label, class_id, confidence, p_<class id>... , example``, one row per
            object, sorted by label. Examples keep their given class with
            confidence 1.
        """
        if self._model is None:
            raise ClassifyError("Fit the classifier with examples first.")
        cls = np.asarray(self._model.classes_)
        ids = self.labels
        prob = self._model.predict_proba(self._matrix()) if ids.size else np.zeros((0, cls.size))
        ex_ids = np.fromiter(self._examples, np.int64, len(self._examples))
        is_ex = np.isin(ids, ex_ids)
        if is_ex.any():
            given = np.array([self._examples[int(i)] for i in ids[is_ex]])
            prob[is_ex] = (given[:, None] == cls[None, :]).astype(np.float64)
        best = prob.argmax(axis=1) if ids.size else np.zeros(0, np.int64)
        out = {"label": ids.astype(np.int64), "class_id": cls[best].astype(np.int64),
               "confidence": prob.max(axis=1) if ids.size else np.zeros(0)}
        out.update({f"p_{int(c)}": prob[:, j] for j, c in enumerate(cls)})
        out["example"] = is_ex
        return pd.DataFrame(out)

    def instance_classes(self) -> dict[int, int]:
        """``{instance id: class id}`` of every object, as :meth:`predict` assigns them."""
        t = self.predict()
        return dict(zip(t["label"].tolist(), t["class_id"].tolist(), strict=True))


def classify_like(image, labels, examples: Mapping[int, int], *, pixel_size=None,
                  seed: int = 0) -> pd.DataFrame:
    """Classify every object of ``labels`` like ``examples``: :meth:`ObjectClassifier.predict`."""
    return ObjectClassifier(image, labels, pixel_size=pixel_size, seed=seed).fit(examples).predict()


#: Column names accepted for the instance id and the class in an examples table.
_ID_COLUMNS = ("label", "id", "instance", "instance_id", "object")
_CLASS_COLUMNS = ("class_id", "class", "class_name")


def _class_id(value, classes) -> int:
    """A class id from an id or a class name of ``classes``."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        names = {n.casefold(): i for i, n in classes.names().items()}
        if value.strip().casefold() not in names:
            raise ClassifyError(f"Unknown class name {value!r}; known: "
                                f"{', '.join(classes.names().values())}.")
        return names[value.strip().casefold()]
    if isinstance(value, float) and not float(value).is_integer():
        raise ClassifyError(f"Class ids are whole numbers, got {value!r}.")
    return int(value)


def read_examples(path, classes=None) -> dict[int, int]:
    """Examples ``{instance id: class id}`` from a JSON or CSV file.

    JSON: ``{"3": 1, "7": "<100> loop"}``, the same under ``"examples"`` or
    ``"instance_classes"``, or a list of ``{"label": 3, "class_id": 1}``. CSV: a
    column ``label`` (or ``id``, ``instance``) and ``class_id`` (or ``class``,
    ``class_name``). Classes may be given by name, looked up in ``classes``
    (default :class:`~napari_microseg.core.classes.ClassTable`'s defaults).
    """
    import json
    from pathlib import Path

    from ..classes import ClassTable

    classes = classes if classes is not None else ClassTable()
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(path.read_bytes().decode("utf-8"))
            if isinstance(doc, dict):
                doc = doc.get("examples", doc.get("instance_classes", doc))
            if isinstance(doc, dict):
                pairs = list(doc.items())
            elif isinstance(doc, list):
                pairs = [(_pick(d, _ID_COLUMNS), _pick(d, _CLASS_COLUMNS)) for d in doc]
            else:
                raise ValueError(f"expected an object or a list, got {type(doc).__name__}")
        elif suffix in (".csv", ".txt"):
            table = pd.read_csv(path, comment="#")
            table.columns = [str(c).strip().casefold() for c in table.columns]
            pairs = list(zip(table[_pick_col(table, _ID_COLUMNS)],
                             table[_pick_col(table, _CLASS_COLUMNS)], strict=True))
        else:
            raise ClassifyError(f"{path.name}: examples are read from .json or .csv, not "
                                f"{suffix or '(no suffix)'}.")
    except (UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as e:
        raise ClassifyError(f"Cannot read the examples {path.name}: {' '.join(str(e).split())}.") from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ClassifyError(f"The examples {path.name} are malformed: {' '.join(str(e).split())}.") from e
    out = {}
    for k, v in pairs:
        try:
            key = float(k)
            if not key.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise ClassifyError(f"{path.name}: instance id {k!r} is not a whole number.") from None
        out[int(key)] = _class_id(v, classes)
    if not out:
        raise ClassifyError(f"{path.name} holds no example.")
    return out


def _pick(d, keys):
    if not isinstance(d, Mapping):
        raise TypeError(f"expected objects like {{\"label\": 3, \"class_id\": 1}}, got {d!r}")
    for k in keys:
        if k in d:
            return d[k]
    raise KeyError(f"no {' / '.join(keys)} in {d!r}")


def _pick_col(table, keys) -> str:
    for k in keys:
        if k in table.columns:
            return k
    raise KeyError(f"no column {' / '.join(keys)} (columns: {', '.join(table.columns)})")
