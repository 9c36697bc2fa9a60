"""Candidate masks redrawn by a promptable backend (SAM2 or the offline model).

Each candidate found by :mod:`.proposal` is clicked once at its interior
point (farthest from its border); the backend's mask replaces the candidate
when it is plausible (area within a factor of 4 and IoU >= 0.3 with the
candidate), otherwise the candidate's own mask is kept. Committed pixels stay
out of every mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import MicrosegError
from ..prompting.base import PromptBackend

#: SAM2 models tried by ``backend="auto"``, smallest (fastest on a CPU) first.
AUTO_SAM2 = ("sam2.1-tiny", "sam2-tiny", "sam2.1-small", "sam2-small")
#: Above this many pixels ``backend="default"`` keeps find similar's own masks: a backend
#: clicks every kept candidate (about 10 ms each), and a 10k x 10k mosaic holds over a
#: million candidates (BENCHMARKS.md "Find similar").
PROMPTABLE_MAX_PIXELS = 4096 * 4096


def mask_source(spec, shape) -> tuple[object, str]:
    """What draws the masks on an image of ``shape``, and a note when the rule chose for the user.

    ``"default"`` (every entry point's default: the Find similar dock, ``microseg
    find-similar``, ``microseg fewshot-eval``) is ``"auto"`` (SAM2 when its
    weights are present, else the offline promptable model; the better masks
    on every held-out set, BENCHMARKS.md "Find similar") up to
    :data:`PROMPTABLE_MAX_PIXELS` (4096², 16.8 Mpx), and find similar's own masks (``"none"``)
    above, with a one-line note saying so. Any other ``spec`` is returned as
    is, with an empty note.
    """
    if not (isinstance(spec, str) and spec == "default"):
        return spec, ""
    pixels = int(np.prod([int(s) for s in shape[:2]]))
    if pixels <= PROMPTABLE_MAX_PIXELS:
        return "auto", ""
    return "none", (f"The image has {pixels / 1e6:.1f} Mpx: masks from the pixel classifier (a "
                    f"promptable model clicks every candidate; it is used up to "
                    f"{PROMPTABLE_MAX_PIXELS / 1e6:.1f} Mpx).")


def resolve_backend(spec) -> PromptBackend | None:
    """The backend for ``spec``: a PromptBackend, ``"none"``, ``"auto"`` or a registry name.

    ``"default"`` depends on the image's size: resolve it with :func:`mask_source` first.
    """
    if spec == "default":
        raise ValueError('resolve backend="default" for an image size with mask_source() first')
    if spec is None or spec == "none":
        return None
    if isinstance(spec, PromptBackend):
        return spec
    from ..prompting.registry import make_backend

    if spec == "auto":
        from ..weights import find_weights

        for name in AUTO_SAM2:
            try:
                if find_weights(name) is not None:
                    return make_backend(name)
            except (MicrosegError, ImportError):
                continue
        return make_backend("microseg-promptable")
    return make_backend(str(spec))


def _interior(mask: np.ndarray) -> tuple[int, int]:
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.unravel_index(int(np.argmax(dist)), mask.shape)


def redraw_with_backend(backend: PromptBackend, tiled, labels: np.ndarray, committed,
                        *, cancel=None, progress=None) -> np.ndarray:
    """Labels with each candidate's mask from one click of ``backend`` (see module doc)."""
    from ..prompting.session import PromptSession

    session = PromptSession(backend)
    session.set_image(tiled.image)
    h, w = labels.shape
    out = np.zeros_like(labels)
    boxes = ndi.find_objects(labels)
    for i, sl in enumerate(boxes, start=1):
        if sl is None:
            continue
        own = labels[sl] == i
        if cancel is not None and cancel():
            out[sl][own & (out[sl] == 0)] = i
            continue
        r, c = _interior(own)
        session.reset()
        pred = session.predict([[r + sl[0].start, c + sl[1].start]], [1], use_previous=False)
        ext = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        win = (slice(max(0, sl[0].start - ext), min(h, sl[0].stop + ext)),
               slice(max(0, sl[1].start - ext), min(w, sl[1].stop + ext)))
        mine = labels[win] == i
        m = np.asarray(pred.mask[win], bool) & ~np.asarray(committed[win], bool)
        inter, union = np.count_nonzero(m & mine), np.count_nonzero(m | mine)
        area, area0 = np.count_nonzero(m), np.count_nonzero(mine)
        plausible = area0 / 4 <= area <= 4 * area0 and union and inter / union >= 0.3
        use = m if plausible else mine
        out[win][use & (out[win] == 0)] = i
        if progress is not None:
            progress(i / len(boxes))
    return out
