"""Recipes: everything that decides a batch's numbers, in one versioned file.

A recipe names a registered model (with its card reference and the SHA-256 of
its weights, so a changed model is noticed), the inference settings (tile,
halo, test-time augmentation), the post-processing
(:class:`~napari_microseg.core.models.postprocess.PostprocessSettings`), the
class table, the measurement and edge settings
(:class:`~napari_microseg.core.measure.pipeline.MeasureSettings`) and a
pixel-size policy. It is saved as JSON (``.json``) or YAML (``.yaml``/``.yml``)::

    {"format": "napari-microseg-recipe", "format_version": 1,
     "model": {"name": "loops-unet", "card": {...}, "weights_sha256": "..."},
     "inference": {"tile": null, "halo": null, "tta": false},
     "postprocess": {...}, "classes": [...], "measure": {...},
     "pixel_size": {"policy": "metadata", "nm": null},
     "description": "", "provenance": {...}}

:meth:`Recipe.recipe_hash` digests only what changes results (not the
description or provenance), so a rerun can tell finished images apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ... import __version__
from ..atomic import atomic_path
from ..classes import ClassTable
from ..errors import LabelsError, MicrosegError
from ..measure.pipeline import MeasureSettings
from ..models.card import WEIGHTS_FILE, ModelError, check_tiling, valid_name
from ..models.postprocess import PostprocessSettings

#: Value of the recipe's ``format`` key.
RECIPE_FORMAT = "napari-microseg-recipe"
#: Newest recipe format this code reads (and the one it writes).
RECIPE_VERSION = 1
#: Pixel-size policies: the file's calibration, uncalibrated images refused (``metadata``,
#: the default, and its older name ``require``); one nm/px for every image (``override``);
#: the file's calibration with uncalibrated images measured in px (``allow_px``, an opt-in).
PIXEL_POLICIES = ("metadata", "require", "override", "allow_px")
YAML_SUFFIXES = (".yaml", ".yml")


class RecipeError(MicrosegError):
    """A recipe file is missing, unreadable, of another version or has a bad field."""


@dataclass
class InferenceSettings:
    """How the network is run: tile side and halo (``None`` = the card's), TTA."""

    tile: int | None = None
    halo: int | None = None
    tta: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"tile": self.tile, "halo": self.halo, "tta": bool(self.tta)}


@dataclass
class PixelSizePolicy:
    """Where the pixel size comes from.

    ``"metadata"`` (default) and ``"require"``: the file's calibration (its
    metadata or a ``microseg.json`` sidecar); an uncalibrated image is an error
    for that image, never a silent px result. ``"override"``: ``nm`` for every
    image. ``"allow_px"``: the file's calibration, and uncalibrated images are
    measured in px (the summary and the report say so).
    """

    policy: str = "metadata"
    nm: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"policy": self.policy, "nm": self.nm}


@dataclass
class Recipe:
    """Model, inference, post-processing, classes, measurement and calibration policy.

    Build one with :meth:`for_model` (records the model's card and weights
    hash), or read one with :meth:`load`.
    """

    model: dict
    classes: list
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    pixel_size: PixelSizePolicy = field(default_factory=PixelSizePolicy)
    description: str = ""
    provenance: dict = field(default_factory=dict)
    format_version: int = RECIPE_VERSION

    # -- building ------------------------------------------------------------------------

    @classmethod
    def for_model(cls, name: str, **kwargs) -> Recipe:
        """A recipe for registered model ``name`` with its card and weights hash recorded.

        The class table defaults to the card's; other keyword arguments are
        fields of :class:`Recipe`.
        """
        from ..models.card import CARD_FILE, read_card
        from ..models.registry import find_model

        folder = find_model(name).folder
        card = read_card(folder / CARD_FILE)
        model = {
            "name": name,
            "card": card.reference(),
            "weights_sha256": model_fingerprint(folder),
        }
        kwargs.setdefault("classes", card.class_table().to_list())
        kwargs.setdefault("provenance", {})
        kwargs["provenance"] = {
            "created_utc": _now(),
            "plugin_version": __version__,
            **kwargs["provenance"],
        }
        recipe = cls(model=model, **kwargs)
        recipe.validate()
        return recipe

    @classmethod
    def from_provenance(cls, labels_provenance: dict, **kwargs) -> Recipe:
        """A recipe from the provenance of labels the Predict dock wrote (model, settings).

        ``labels_provenance`` holds ``model`` (with ``name``), ``postprocess`` and,
        from this version on, ``inference``; other fields come from ``kwargs``.
        """
        prov = labels_provenance or {}
        name = (prov.get("model") or {}).get("name")
        if not name:
            raise RecipeError(
                "These labels were not predicted by a registered model; save the "
                "recipe from the Predict dock after running a model."
            )
        post = prov.get("postprocess")
        kwargs.setdefault("postprocess", _build(PostprocessSettings, post, "postprocess"))
        kwargs.setdefault(
            "inference", _build(InferenceSettings, prov.get("inference"), "inference")
        )
        return cls.for_model(name, **kwargs)

    @property
    def model_name(self) -> str:
        """Registry name of the model."""
        return self.model["name"]

    def class_table(self) -> ClassTable:
        """The classes as a :class:`ClassTable`."""
        return ClassTable.from_list(self.classes)

    # -- validation ----------------------------------------------------------------------

    def validate(self, where: str = "recipe") -> None:
        """Raise :class:`RecipeError` naming ``where`` and the field when unusable."""

        def bad(msg):
            raise RecipeError(f"{where}: {msg}")

        if not isinstance(self.format_version, int) or self.format_version < 1:
            bad(f"format_version {self.format_version!r} is not a positive integer.")
        if self.format_version > RECIPE_VERSION:
            bad(
                f"recipe format {self.format_version} is newer than this napari-microseg reads "
                f"({RECIPE_VERSION}); update napari-microseg."
            )
        name = self.model.get("name") if isinstance(self.model, dict) else None
        if not isinstance(name, str) or not valid_name(name):
            bad(f"model.name {name!r} must be the name of a registered model.")
        sha = self.model.get("weights_sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            bad(f"model.weights_sha256 {sha!r} must be a 64-character hex digest or null.")
        try:
            self.classes = ClassTable.from_list(self.classes).to_list()
        except (LabelsError, TypeError, KeyError, ValueError, AttributeError) as e:
            bad(f"bad classes ({e}).")
        if not self.classes:
            bad("the class table is empty.")
        self._validate_inference(bad)
        self._validate_postprocess(bad)
        self._validate_measure(bad)
        p = self.pixel_size
        if p.policy not in PIXEL_POLICIES:
            bad(f"pixel_size.policy {p.policy!r} is not one of {', '.join(PIXEL_POLICIES)}.")
        if p.policy == "override" and not _positive(p.nm):
            bad(f"pixel_size.policy 'override' needs nm > 0, got {p.nm!r}.")
        if p.policy != "override" and p.nm is not None:
            bad(f"pixel_size.nm is only used with policy 'override' (policy is {p.policy!r}).")

    def _validate_inference(self, bad) -> None:
        """The same tile/halo bounds as ``microseg predict`` and the Predict dock (null: the card's)."""
        from ..bounds import SettingsError
        from ..models.inference import check_inference_args

        i = self.inference
        try:
            check_inference_args(i.tile, i.halo)
        except SettingsError as e:
            bad(str(e))
        if i.tile is not None and i.halo is not None:
            try:
                check_tiling(i.tile, i.halo, "inference")
            except ModelError as e:
                bad(str(e))
        if not isinstance(i.tta, bool):
            bad(f"inference.tta {i.tta!r} must be true or false.")

    def _validate_postprocess(self, bad) -> None:
        """Delegate to :meth:`PostprocessSettings.validate`, then check class ids against the table."""
        from ..bounds import SettingsError

        s = self.postprocess
        try:
            s.validate(where="postprocess")
        except SettingsError as e:
            bad(str(e))
        t = s.thresholds
        if isinstance(t, dict):
            ids = {str(c["id"]) for c in self.classes if isinstance(c, dict)}
            unknown = [k for k in t if str(k) not in ids]
            if unknown:
                bad(f"postprocess.thresholds names unknown class ids {unknown}.")
        elif not isinstance(t, (int, float, list)):
            bad(f"postprocess.thresholds {t!r} must be a number, a list or a mapping.")
        if isinstance(t, list) and len(t) != len(self.classes):
            bad(f"postprocess.thresholds lists {len(t)} values for {len(self.classes)} classes.")

    def _validate_measure(self, bad) -> None:
        """Delegate to :meth:`MeasureSettings.validate`."""
        from ..bounds import SettingsError

        try:
            self.measure.validate(where="measure")
        except SettingsError as e:
            bad(str(e))

    # -- (de)serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready dict (inverse of :meth:`from_dict`)."""
        return {
            "format": RECIPE_FORMAT,
            "format_version": self.format_version,
            "description": self.description,
            "model": dict(self.model),
            "inference": self.inference.to_dict(),
            "postprocess": self.postprocess.to_dict(),
            "classes": [dict(c) for c in self.classes],
            "measure": self.measure.to_dict(),
            "pixel_size": self.pixel_size.to_dict(),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "recipe") -> Recipe:
        """Build and validate from a dict; :class:`RecipeError` names ``where`` when unusable."""
        if not isinstance(d, dict):
            raise RecipeError(f"{where}: a recipe must be a mapping (JSON object).")
        if d.get("format") != RECIPE_FORMAT:
            raise RecipeError(
                f"{where}: not a napari-microseg recipe (format {d.get('format')!r})."
            )
        version = d.get("format_version")
        if isinstance(version, int) and version > RECIPE_VERSION:
            raise RecipeError(
                f"{where}: recipe format {version} is newer than this napari-microseg "
                f"reads ({RECIPE_VERSION}); update napari-microseg."
            )
        missing = [k for k in ("format_version", "model", "classes") if k not in d]
        if missing:
            raise RecipeError(f"{where}: missing {', '.join(missing)}.")
        try:
            recipe = cls(
                model=d["model"] if isinstance(d["model"], dict) else {"name": d["model"]},
                classes=d["classes"],
                inference=_build(InferenceSettings, d.get("inference"), "inference"),
                postprocess=_build(PostprocessSettings, d.get("postprocess"), "postprocess"),
                measure=_measure(d.get("measure")),
                pixel_size=_build(PixelSizePolicy, d.get("pixel_size"), "pixel_size"),
                description=str(d.get("description") or ""),
                provenance=dict(d.get("provenance") or {}),
                format_version=version,
            )
        except RecipeError as e:
            raise RecipeError(f"{where}: {str(e).removeprefix('recipe: ')}") from None
        recipe.validate(where)
        return recipe

    def save(self, path) -> Path:
        """Write the recipe (JSON, or YAML by suffix) atomically; return the path."""
        path = Path(path)
        self.validate(str(path))
        d = self.to_dict()
        if path.suffix.lower() in YAML_SUFFIXES:
            import yaml

            text = yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
        else:
            text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> Recipe:
        """Read and validate a recipe file; errors name the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecipeError(f"{path}: no such recipe file.") from None
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"{path}: the recipe cannot be read ({e}).") from None
        try:
            if path.suffix.lower() in YAML_SUFFIXES:
                import yaml

                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except Exception as e:  # json.JSONDecodeError or yaml.YAMLError
            raise RecipeError(
                f"{path}: the recipe is not valid {path.suffix[1:].upper() or 'JSON'} ({e})."
            ) from None
        return cls.from_dict(d, where=str(path))

    def hashed_content(self) -> dict:
        """The part of the recipe that changes results (what :meth:`recipe_hash` digests)."""
        d = self.to_dict()
        card = d["model"].get("card") or {}
        d["model"] = {
            "name": d["model"]["name"],
            "version": card.get("version"),
            "weights_sha256": d["model"].get("weights_sha256"),
        }
        for key in ("format", "description", "provenance"):
            d.pop(key)
        return d

    def recipe_hash(self) -> str:
        """SHA-256 (hex) of :meth:`hashed_content` as canonical JSON."""
        text = json.dumps(self.hashed_content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(folder) -> str:
    """SHA-256 of a model folder's weights file (an ensemble: of its card's JSON text)."""
    from ..measure.export import file_sha256
    from ..models.card import CARD_FILE

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    return file_sha256(weights if weights.is_file() else folder / CARD_FILE)


def _build(kind, d, where: str):
    if d is None:
        return kind()
    if not isinstance(d, dict):
        raise RecipeError(f"{where} must be a mapping, got {d!r}.")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise RecipeError(f"{where} has unknown keys {unknown}; known: {sorted(known)}.")
    return kind(**d)


def _measure(d) -> MeasureSettings:
    if d is None:
        return MeasureSettings()
    if not isinstance(d, dict):
        raise RecipeError(f"measure must be a mapping, got {d!r}.")
    _build(MeasureSettings, {k: v for k, v in d.items() if k != "hardening"}, "measure")
    try:
        return MeasureSettings.from_dict(d)
    except (TypeError, AttributeError) as e:
        raise RecipeError(f"measure has a bad field ({e}).") from None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _number(v) and v > 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
