"""Defect classes: names, colours, and the instance-to-class assignment.

A labels image holds instance ids (0 = background). Which defect class each
instance belongs to is kept beside it as ``{instance_id: class_id}``, and the
class names and colours in a :class:`ClassTable`. Both travel with the labels
(napari ``layer.features`` / ``layer.metadata``, the JSON sidecar, COCO).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import LabelsError


@dataclass(frozen=True)
class DefectClass:
    """One defect class.

    Parameters
    ----------
    id : int
        Positive class id (0 is reserved for background).
    name : str
        Display name, e.g. ``"<111> loop"``.
    color : str
        Hex colour ``"#rrggbb"`` used on the canvas and in plots.
    """

    id: int
    name: str
    color: str = "#ff0000"


DEFAULT_CLASSES = (
    DefectClass(1, "<111> loop", "#e6194b"),
    DefectClass(2, "<100> loop", "#3cb44b"),
    DefectClass(3, "black dot", "#4363d8"),
    DefectClass(4, "void", "#f58231"),
    DefectClass(5, "precipitate", "#911eb4"),
    DefectClass(6, "pit", "#42d4f4"),
)


class ClassTable:
    """An ordered, user-editable list of :class:`DefectClass`.

    Parameters
    ----------
    classes : iterable of DefectClass
        Classes with unique positive ids and unique names.
    """

    def __init__(self, classes: Iterable[DefectClass] = DEFAULT_CLASSES):
        self._classes: dict[int, DefectClass] = {}
        for c in classes:
            self.add(c)

    def add(self, cls: DefectClass) -> None:
        """Add a class; ids and names must be unique and ids positive."""
        if int(cls.id) <= 0:
            raise LabelsError(f"Class id must be positive, got {cls.id} for {cls.name!r}.")
        if cls.id in self._classes:
            raise LabelsError(f"Duplicate class id {cls.id}.")
        if any(c.name == cls.name for c in self._classes.values()):
            raise LabelsError(f"Duplicate class name {cls.name!r}.")
        self._classes[int(cls.id)] = DefectClass(int(cls.id), str(cls.name), str(cls.color))

    def __iter__(self):
        return iter(self._classes.values())

    def __len__(self) -> int:
        return len(self._classes)

    def __getitem__(self, class_id: int) -> DefectClass:
        try:
            return self._classes[int(class_id)]
        except KeyError:
            raise LabelsError(f"No class with id {class_id}.") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassTable) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"ClassTable({list(self)!r})"

    def id_of(self, name: str) -> int:
        """Id of the class called ``name``."""
        for c in self:
            if c.name == name:
                return c.id
        raise LabelsError(f"No class named {name!r}; known: {[c.name for c in self]}.")

    def names(self) -> dict[int, str]:
        """``{class_id: name}``."""
        return {c.id: c.name for c in self}

    def to_list(self) -> list[dict]:
        """JSON-ready list of ``{"id", "name", "color"}``."""
        return [{"id": c.id, "name": c.name, "color": c.color} for c in self]

    @classmethod
    def from_list(cls, items: Iterable[Mapping]) -> ClassTable:
        """Inverse of :meth:`to_list`."""
        try:
            return cls(DefectClass(int(d["id"]), str(d["name"]), str(d.get("color", "#ff0000"))) for d in items)
        except (KeyError, TypeError, ValueError) as e:
            raise LabelsError(f"Malformed class table: {e}") from e

    def to_json(self) -> str:
        """The table as a JSON string."""
        return json.dumps(self.to_list(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        """Parse :meth:`to_json` output (or a list of class dicts)."""
        return cls.from_list(json.loads(text))


def check_instance_classes(instance_classes: Mapping[int, int], table: ClassTable) -> dict[int, int]:
    """Validate an ``{instance_id: class_id}`` mapping against ``table``.

    Returns the mapping with plain ``int`` keys and values.
    """
    out = {}
    known = {c.id for c in table}
    for k, v in instance_classes.items():
        k, v = int(k), int(v)
        if k <= 0:
            raise LabelsError(f"Instance id must be positive, got {k}.")
        if v not in known:
            raise LabelsError(f"Instance {k} has class {v}, which is not in the class table {sorted(known)}.")
        out[k] = v
    return out
