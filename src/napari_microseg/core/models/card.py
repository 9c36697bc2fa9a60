"""Model cards: the JSON description stored beside every trained model.

A card says what a checkpoint is (architecture and its parameters), what it
predicts (task, classes and colours, output activation), how its input must be
prepared (channels, intensity normalisation, the nm/px it was trained at, tile
and halo) and where it came from (training provenance, validation metrics).
Inference reads everything it needs from the card, so a model is run exactly
as it was trained.

Output channels
---------------
``activation`` fixes the meaning of the network's output channels for a
semantic model with ``K`` classes:

* ``"softmax"``: ``K + 1`` logits, channel 0 the background, channel ``k`` the
  ``k``-th class of ``classes``;
* ``"sigmoid"``: ``K`` independent logits, one per class;
* ``"none"``: ``K`` channels that already are probabilities (ensembles).

An instance model (Mask R-CNN) has ``K + 1`` classes, 0 the background, as in
torchvision.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..classes import ClassTable
from ..errors import LabelsError, MicrosegError

#: Value of the card's ``format`` key.
CARD_FORMAT = "napari-microseg-model"
#: Newest card format this code reads (and the one it writes).
FORMAT_VERSION = 1
#: File names inside a model folder.
CARD_FILE, WEIGHTS_FILE = "model_card.json", "weights.pt"
#: Tasks a runnable card may have ("promptable" cards belong to the prompt engine).
TASKS = ("semantic", "instance")
ACTIVATIONS = ("softmax", "sigmoid", "none")
NORMALIZATIONS = ("percentiles", "fixed")


class ModelError(MicrosegError):
    """A model, its card or its weights are missing, broken or incompatible."""


@dataclass
class ModelCard:
    """Everything needed to rebuild and run one trained model.

    Parameters
    ----------
    name : str
        Registry name (a folder name: letters, digits, ``-``, ``_``, ``.``).
    architecture : str
        Key of :data:`~.architectures.ARCHITECTURES`, e.g. ``"unet"``.
    params : dict
        Keyword arguments of the architecture (encoder, widths, depth, ...).
    classes : list of dict
        ``{"id", "name", "color"}`` per class, in output-channel order.
    task : str
        ``"semantic"`` or ``"instance"``.
    activation : str
        Meaning of the output channels (see the module docstring).
    in_channels : int
        Image channels the network takes (1 grey, 3 colour).
    normalization : dict
        ``{"method": "percentiles", "percentiles": [lo, hi]}`` or
        ``{"method": "fixed", "range": [lo, hi]}``; maps intensities to [0, 1].
    pixel_size_nm : float or None
        Pixel size of the training images; calibrated images at another scale
        are resampled to it. ``None``: the model is used at any scale.
    tile, halo : int
        Default tile side and context discarded on each inner tile side (px).
    thresholds : dict
        Default probability threshold per class id (as a string key).
    version : str
        Version of this model (bumped when retrained).
    description : str
    provenance : dict
        Training data, recipe, code version, dates.
    metrics : dict
        Validation metrics.
    format_version : int
        Card format; newer than :data:`FORMAT_VERSION` is refused.
    weights_sha256 : str or None
        SHA-256 of the model's ``weights.pt``, set when the model is
        registered; the weights are checked against it before they are loaded.
    """

    name: str
    architecture: str
    classes: list
    params: dict = field(default_factory=dict)
    task: str = "semantic"
    activation: str = "softmax"
    in_channels: int = 1
    normalization: dict = field(
        default_factory=lambda: {"method": "percentiles", "percentiles": [0.5, 99.5]}
    )
    pixel_size_nm: float | None = None
    tile: int = 512
    halo: int = 32
    thresholds: dict = field(default_factory=dict)
    version: str = "1"
    description: str = ""
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    weights_sha256: str | None = field(default=None, compare=False)

    def __post_init__(self):
        self.validate()

    # -- derived -------------------------------------------------------------------

    @property
    def n_classes(self) -> int:
        """Number of defect classes (background not counted)."""
        return len(self.classes)

    @property
    def out_channels(self) -> int:
        """Output channels of the network (classes of a Mask R-CNN incl. background)."""
        if self.task == "instance" or self.activation == "softmax":
            return self.n_classes + 1
        return self.n_classes

    @property
    def class_ids(self) -> list[int]:
        """Class ids in output-channel order."""
        return [int(c["id"]) for c in self.classes]

    def class_table(self) -> ClassTable:
        """The classes as a :class:`~napari_microseg.core.classes.ClassTable`."""
        return ClassTable.from_list(self.classes)

    def threshold_list(self, default: float = 0.5) -> list[float]:
        """Per-class thresholds in channel order (card values, else ``default``)."""
        return [float(self.thresholds.get(str(i), default)) for i in self.class_ids]

    def reference(self) -> dict:
        """Short identification for provenance records."""
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "task": self.task,
            "card_format_version": self.format_version,
        }

    # -- validation and (de)serialisation ---------------------------------------------

    def validate(self, where: str = "model card") -> None:
        """Raise :class:`ModelError` naming ``where`` if a field is unusable."""

        def bad(msg):
            raise ModelError(f"{where}: {msg}")

        if not isinstance(self.format_version, int) or self.format_version < 1:
            bad(f"format_version {self.format_version!r} is not a positive integer.")
        if self.format_version > FORMAT_VERSION:
            bad(
                f"card format {self.format_version} is newer than this napari-microseg reads "
                f"({FORMAT_VERSION}); update napari-microseg."
            )
        if not isinstance(self.name, str) or not valid_name(self.name):
            bad(f"name {self.name!r} must be letters, digits, '-', '_' or '.'.")
        if not isinstance(self.architecture, str) or not self.architecture:
            bad("the architecture is missing.")
        if not isinstance(self.params, dict):
            bad("architecture params must be a JSON object.")
        try:  # canonical JSON types (tuples become lists), so saved and read params compare equal
            self.params = json.loads(json.dumps(self.params))
            self.provenance = json.loads(json.dumps(self.provenance))
            self.metrics = json.loads(json.dumps(self.metrics))
        except (TypeError, ValueError) as e:
            bad(f"params, provenance and metrics must be JSON-serialisable ({e}).")
        if self.task not in TASKS:
            bad(f"task {self.task!r} is not one of {', '.join(TASKS)}.")
        if self.activation not in ACTIVATIONS:
            bad(f"activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}.")
        if not isinstance(self.classes, list) or not self.classes:
            bad("it lists no classes.")
        try:
            self.classes = ClassTable.from_list(self.classes).to_list()
        except LabelsError as e:
            bad(f"bad classes ({e})")
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            bad(f"in_channels {self.in_channels!r} must be a positive integer.")
        self._validate_normalization(bad)
        sha = self.weights_sha256
        if sha is not None and not (
            isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
        ):
            bad(f"weights_sha256 {sha!r} must be a lower-case hex SHA-256 or null.")
        if self.pixel_size_nm is not None and not (
            isinstance(self.pixel_size_nm, (int, float))
            and math.isfinite(self.pixel_size_nm)
            and self.pixel_size_nm > 0
        ):
            bad(f"pixel_size_nm {self.pixel_size_nm!r} must be a positive number or null.")
        check_tiling(self.tile, self.halo, where)
        for k, v in self.thresholds.items():
            if not (str(k).isdigit() and int(k) in self.class_ids):
                bad(f"threshold for unknown class id {k!r}.")
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                bad(f"threshold {v!r} for class {k} is not in [0, 1].")

    def _validate_normalization(self, bad) -> None:
        norm = self.normalization
        if not isinstance(norm, dict) or norm.get("method") not in NORMALIZATIONS:
            bad(f"normalization must have method {' or '.join(NORMALIZATIONS)}, got {norm!r}.")
        key = "percentiles" if norm["method"] == "percentiles" else "range"
        try:
            lo, hi = (float(v) for v in norm[key])
        except (KeyError, TypeError, ValueError):
            bad(f"normalization {norm['method']!r} needs {key} = [low, high].")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            bad(f"normalization {key} [{lo}, {hi}] must be finite with low < high.")
        if key == "percentiles" and not 0 <= lo < hi <= 100:
            bad(f"percentiles [{lo}, {hi}] must lie in [0, 100].")

    def to_dict(self) -> dict:
        """JSON-ready dict (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        return {"format": CARD_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "model card") -> ModelCard:
        """Build from a dict, raising :class:`ModelError` naming ``where`` when unusable."""
        if not isinstance(d, dict):
            raise ModelError(f"{where}: a model card must be a JSON object.")
        if d.get("format") != CARD_FORMAT:
            raise ModelError(f"{where}: not a napari-microseg model card (format {d.get('format')!r}).")
        version = d.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ModelError(
                f"{where}: card format {version} is newer than this napari-microseg reads "
                f"({FORMAT_VERSION}); update napari-microseg."
            )
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("name", "architecture", "classes", "format_version") if k not in d]
        if missing:
            raise ModelError(f"{where}: missing {', '.join(missing)}.")
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            card = cls(**kwargs)
        except ModelError as e:
            msg = str(e).removeprefix("model card: ")
            raise ModelError(f"{where}: {msg}") from None
        except TypeError as e:
            raise ModelError(f"{where}: {e}") from None
        return card

    def to_json(self) -> str:
        """The card as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def check_tiling(tile, halo, where: str = "tiling") -> None:
    """Raise :class:`ModelError` unless ``0 <= halo`` and ``tile > 2 * halo``."""
    if not isinstance(tile, int) or not isinstance(halo, int) or tile < 8 or halo < 0:
        raise ModelError(f"{where}: tile {tile!r} must be an integer >= 8 and halo {halo!r} >= 0.")
    if tile <= 2 * halo:
        raise ModelError(f"{where}: tile {tile} px must be larger than twice the halo ({halo} px).")


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a model folder name."""
    return bool(name) and name[0] not in ".-" and all(c.isalnum() or c in "-_." for c in name)


def read_card(path) -> ModelCard:
    """Read and validate a ``model_card.json``; errors name the file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: the model card is missing.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path}: the model card is not readable JSON ({e}).") from None
    return ModelCard.from_dict(d, where=str(path))


def card_task(path) -> str | None:
    """The ``task`` of a card file without validating it (``None`` when unreadable)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return d.get("task") if isinstance(d, dict) else None
