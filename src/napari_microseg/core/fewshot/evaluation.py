"""Few-shot whole-image benchmark: a simulated user labels K objects, the method finds the rest.

Protocol (``microseg fewshot-eval``), per image:

1. ``K`` true instances are drawn (seeded) and committed as exemplars (at most
   ``n - 1`` on an image with ``n`` objects). With ``exemplars_from`` the
   exemplars are instead drawn from another (tuning) image and nothing on the
   evaluated image is committed: the way to test a set whose images hold
   fewer than ``K`` objects (creme).
2. The method proposes; candidates scoring ``>= threshold`` are its answer.
3. ``rounds`` times: the user looks at the ``top`` best-scored candidates,
   accepts those matching a true object not found yet (IoU >= 0.5) and rejects
   the others; the method retrains and proposes again.
4. Scored against the truth minus the exemplars: detection precision, recall
   and F1 at IoU 0.5 and 0.3 (:mod:`~..evaluate.matching`, accepted objects
   count as found), mean IoU of the matches at 0.5, and against the whole
   truth the relative count and areal-density errors of exemplars + accepted
   + proposals. Seconds per image are the method's own (training + search).

Box datasets (only boxes are known) get exemplar masks as the ellipse
inscribed in each exemplar box and are scored by box IoU of each object's
bounding box; the areal density is then that of the boxes (so it is reported
but means little).

Baselines side by side, given the same exemplars but not learning from them:
``segment-everything`` (a grid of clicks of the offline promptable model,
spacing twice the exemplars' median radius, 512-px tiles) and ``otsu-flood``
(the same grid with the classical backend), both keeping only candidates in
the exemplars' area range (half the smallest to twice the largest) that do
not overlap committed objects.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import MicrosegError
from ..evaluate.matching import match_instances, prf
from ..prompting.evaluation import box_iou
from .session import FindSimilar

#: Methods known to :func:`evaluate_fewshot`.
METHODS = ("find-similar", "segment-everything", "otsu-flood")
#: Tile of the baselines' segment-everything (bounds its memory).
BASELINE_TILE = 512


def ellipse_in_box(shape, box) -> np.ndarray:
    """Bool mask of the ellipse inscribed in ``box`` (``ymin xmin ymax xmax``, inclusive)."""
    y0, x0, y1, x1 = (float(v) for v in box)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ry, rx = max(0.5, (y1 - y0 + 1) / 2), max(0.5, (x1 - x0 + 1) / 2)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def boxes_to_labels(shape, boxes) -> np.ndarray:
    """Instance labels ``1..n`` of the ellipses inscribed in ``boxes`` (later ones on top)."""
    out = np.zeros(shape, np.int32)
    for i, b in enumerate(np.asarray(boxes, float).reshape(-1, 4), start=1):
        out[ellipse_in_box(shape, b)] = i
    return out


def label_boxes(labels: np.ndarray) -> np.ndarray:
    """``(n, 4)`` inclusive bounding boxes of the instances of ``labels`` (in id order)."""
    from scipy import ndimage as ndi

    rows = [[s[0].start, s[1].start, s[0].stop - 1, s[1].stop - 1]
            for s in ndi.find_objects(labels) if s is not None]
    return np.asarray(rows, float).reshape(-1, 4)


def match_boxes(pred, true, threshold: float) -> tuple[int, list[float], np.ndarray]:
    """Greedy one-to-one matching by box IoU: ``(tp, matched ious, matched pred index)``."""
    pred, true = np.asarray(pred, float).reshape(-1, 4), np.asarray(true, float).reshape(-1, 4)
    if not len(pred) or not len(true):
        return 0, [], np.zeros(0, int)
    iou = np.array([[box_iou(p, t) for t in true] for p in pred])
    pairs = np.argwhere(iou >= threshold)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_p, used_t, ious, idx = set(), set(), [], []
    for k in order:
        i, j = pairs[k]
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            ious.append(float(iou[i, j]))
            idx.append(int(i))
    return len(ious), ious, np.asarray(idx, int)


class _Truth:
    """The truth of one image: instance labels, or boxes (with ellipse labels for exemplars)."""

    def __init__(self, sample, layout: str):
        self.image = sample.image
        self.boxes_only = layout == "boxes"
        if self.boxes_only:
            self.boxes = np.asarray(sample.target, float).reshape(-1, 4)
            self.labels = boxes_to_labels(sample.image.shape, self.boxes)
            self.ids = np.arange(1, len(self.boxes) + 1)
        else:
            self.labels = np.asarray(sample.target)
            ids = np.unique(self.labels)
            self.ids = ids[ids > 0]

    def area(self, ids) -> float:
        if self.boxes_only:
            b = self.boxes[np.asarray(ids, int) - 1]
            return float(((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)).sum())
        return float(np.isin(self.labels, ids).sum())

    def matches(self, pred_labels: np.ndarray, true_ids, threshold: float):
        """``(tp, matched ious, matched pred ids, n_pred)`` of ``pred_labels`` vs ``true_ids``."""
        pred_ids = np.unique(pred_labels)
        pred_ids = pred_ids[pred_ids > 0]
        if self.boxes_only:
            tp, ious, idx = match_boxes(label_boxes(pred_labels), self.boxes[np.asarray(true_ids, int) - 1],
                                        threshold)
            return tp, ious, pred_ids[idx], len(pred_ids)
        true = np.where(np.isin(self.labels, true_ids), self.labels, 0)
        m = match_instances(pred_labels, true, threshold)
        return m.tp, m.matched_iou.tolist(), m.matched_pred, len(pred_ids)


def _metrics(truth: _Truth, answer: np.ndarray, exemplar_ids, n_committed: int,
             committed_area: float) -> dict:
    """Scores of ``answer`` (labels: accepted + proposals) against the truth minus exemplars."""
    rest = np.setdiff1d(truth.ids, exemplar_ids)
    out = {}
    for th in (0.5, 0.3):
        tp, ious, _, n_pred = truth.matches(answer, rest, th)
        p, r, f = prf(tp, n_pred, len(rest))
        key = f"{int(th * 100)}"
        out.update({f"precision@{key}": round(p, 4), f"recall@{key}": round(r, 4),
                    f"f1@{key}": round(f, 4)})
        if th == 0.5:
            out["mean_iou_matched"] = round(float(np.mean(ious)), 4) if ious else None
            out["n_proposed"] = int(n_pred)
    n_all = len(truth.ids)
    n_found = out["n_proposed"] + n_committed
    out["count_error"] = round((n_found - n_all) / n_all, 4) if n_all else None
    area_true = truth.area(truth.ids)
    if truth.boxes_only:
        found = committed_area + float(sum(
            (b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in label_boxes(answer)))
    else:
        found = committed_area + float(np.count_nonzero(answer))
    out["density_error"] = round((found - area_true) / area_true, 4) if area_true else None
    return out


def _draw_exemplars(truth: _Truth, shots: int, rng) -> np.ndarray:
    k = int(min(shots, max(1, len(truth.ids) - 1)))
    if len(truth.ids) == 0:
        raise MicrosegError("An image without any true object cannot give exemplars.")
    return np.sort(rng.choice(truth.ids, k, replace=False))


def run_find_similar(truth: _Truth, exemplar_ids, *, rounds: int, top: int, threshold: float,
                     seed: int, source=None, backend="default", tile: int = 1024) -> dict:
    """The simulated user with :class:`FindSimilar` on one image (see module doc)."""
    t0 = time.perf_counter()
    fs = FindSimilar(truth.image, backend=backend, seed=seed, tile=tile)
    if source is None:
        ex = np.where(np.isin(truth.labels, exemplar_ids), truth.labels, 0)
        fs.set_exemplars(ex)
        committed_area = truth.area(exemplar_ids)
        n_committed = len(exemplar_ids)
    else:
        src_truth, src_ids = source
        fs.add_exemplars_from(src_truth.image, src_truth.labels, src_ids)
        committed_area, n_committed = 0.0, 0
    cands = fs.propose()
    seconds = [time.perf_counter() - t0]
    accepted = np.zeros(truth.image.shape, np.int32)
    found_true: np.ndarray = np.zeros(0, int)
    per_round = []
    rest = np.setdiff1d(truth.ids, exemplar_ids) if source is None else truth.ids
    for r in range(rounds + 1):
        shown = np.where(np.isin(cands.labels, cands.above(threshold)), cands.labels, 0)
        answer = np.where(accepted > 0, accepted, shown + np.where(shown > 0, accepted.max(), 0))
        m = _metrics(truth, answer, exemplar_ids if source is None else [],
                     n_committed, committed_area)
        m.update(round=r, n_accepted=int(len(np.unique(accepted)) - 1),
                 seconds=round(seconds[-1], 2))
        per_round.append(m)
        if r == rounds:
            break
        top_ids = np.arange(1, min(top, len(cands)) + 1)
        if not len(top_ids):
            break
        todo = np.setdiff1d(rest, found_true)
        top_lab = np.where(np.isin(cands.labels, top_ids), cands.labels, 0)
        _, _, hit, _ = truth.matches(top_lab, todo, 0.5)
        acc = np.intersect1d(top_ids, hit)
        rej = np.setdiff1d(top_ids, acc)
        if len(acc):
            base = int(accepted.max())
            table = np.zeros(len(cands) + 1, np.int32)
            table[acc] = np.arange(base + 1, base + 1 + len(acc))
            new = table[cands.labels]
            accepted = np.where(new > 0, new, accepted)
            # Which true objects are now found (for the next round's 'not found yet').
            found_true = np.union1d(found_true, _matched_true(truth, accepted, todo))
        fs.review(accept=acc, reject=rej)
        t1 = time.perf_counter()
        cands = fs.propose()
        seconds.append(time.perf_counter() - t1)
    return {"rounds": per_round, "seconds_first": round(seconds[0], 2)}


def _matched_true(truth: _Truth, pred: np.ndarray, true_ids) -> np.ndarray:
    if truth.boxes_only:
        boxes = truth.boxes[np.asarray(true_ids, int) - 1]
        pb = label_boxes(pred)
        got = [t for t, b in zip(true_ids, boxes, strict=True)
               if any(box_iou(p, b) >= 0.5 for p in pb)]
        return np.asarray(got, int)
    true = np.where(np.isin(truth.labels, true_ids), truth.labels, 0)
    return match_instances(pred, true, 0.5).matched_true


def run_baseline(truth: _Truth, exemplar_ids, backend_name: str, *, source=None) -> dict:
    """Segment-everything with ``backend_name`` filtered to the exemplars' area range."""
    from ..prompting.everything import segment_everything
    from ..prompting.registry import make_backend
    from ..prompting.session import PromptSession

    ref = truth if source is None else source[0]
    ids = exemplar_ids if source is None else source[1]
    areas = np.bincount(ref.labels.ravel())[np.asarray(ids, int)]
    areas = areas[areas > 0]
    radius = float(np.median(np.sqrt(areas / np.pi)))
    committed = (np.isin(truth.labels, exemplar_ids) if source is None
                 else np.zeros(truth.image.shape, bool))
    t0 = time.perf_counter()
    session = PromptSession(make_backend(backend_name))
    h, w = truth.image.shape
    out = np.zeros((h, w), np.int32)
    t = BASELINE_TILE
    for r in range(0, h, t):
        for c in range(0, w, t):
            sl = (slice(r, min(r + t, h)), slice(c, min(c + t, w)))
            session.set_image(truth.image[sl])
            # An even integer spacing keeps every grid point inside the tile.
            lab = segment_everything(session, spacing=float(max(6, 2 * round(radius))),
                                     min_area_px=int(max(3, 0.5 * areas.min())))
            area = np.bincount(lab.ravel())
            over = np.bincount(lab[committed[sl]], minlength=len(area))
            keep = (area <= 2 * areas.max()) & (over == 0)
            keep[0] = False
            lab = np.where(keep[lab], lab, 0)
            out[sl] = np.where(lab > 0, lab + out.max(), 0)
    seconds = time.perf_counter() - t0
    n_committed = len(exemplar_ids) if source is None else 0
    m = _metrics(truth, out, exemplar_ids if source is None else [], n_committed,
                 truth.area(exemplar_ids) if source is None else 0.0)
    m.update(round=0, n_accepted=0, seconds=round(seconds, 2))
    return {"rounds": [m], "seconds_first": round(seconds, 2)}


def evaluate_fewshot(samples, layout: str, *, shots: int = 10, rounds: int = 0, top: int = 30,
                     seed: int = 0, threshold: float = 0.5, methods=("find-similar",),
                     exemplars_from=None, backend="default", progress=None) -> dict:
    """Run the simulated user over ``samples`` (see module doc); a JSON-ready summary.

    Parameters
    ----------
    samples : list of Sample
        From :func:`~..prompting.eval_data.load_dataset`.
    layout : {"masks", "boxes"}
    shots, rounds, top, seed, threshold
        Exemplars per image, review rounds, candidates reviewed per round,
        seed of the exemplar draw, score threshold of the answer.
    methods : sequence of str
        Among :data:`METHODS`.
    exemplars_from : Sample, optional
        Draw the exemplars from this image instead (see module doc).
    backend : str
        ``FindSimilar`` backend.
    progress : callable, optional
        ``progress(done, total)`` after each image and method.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise MicrosegError(f"Unknown method(s) {bad}; choose from {', '.join(METHODS)}.")
    if shots < 1:
        raise MicrosegError("--shots must be at least 1.")
    source = None
    if exemplars_from is not None:
        src = _Truth(exemplars_from, layout)
        rng = np.random.default_rng([seed, 10_000])
        source = (src, _draw_exemplars(src, shots, rng))
    results = {m: [] for m in methods}
    total, done = len(samples) * len(methods), 0
    for i, sample in enumerate(samples):
        truth = _Truth(sample, layout)
        if len(truth.ids) < 2 and source is None:
            raise MicrosegError(f"{sample.name}: fewer than 2 true objects, nothing to find.")
        ex = np.zeros(0, int) if source is not None else _draw_exemplars(
            truth, shots, np.random.default_rng([seed, i]))
        for m in methods:
            if m == "find-similar":
                res = run_find_similar(truth, ex, rounds=rounds, top=top, threshold=threshold,
                                       seed=seed, source=source, backend=backend)
            else:
                name = "microseg-promptable" if m == "segment-everything" else "otsu-flood"
                res = run_baseline(truth, ex, name, source=source)
            res.update(image=sample.name, n_true=int(len(truth.ids)), n_exemplars=int(len(ex)))
            results[m].append(res)
            done += 1
            if progress is not None:
                progress(done, total)
    summary = {m: _mean(v) for m, v in results.items()}
    return {
        "layout": layout, "shots": shots, "rounds": rounds, "top": top, "seed": seed,
        "threshold": threshold, "backend": str(backend),
        "exemplars_from": None if exemplars_from is None else exemplars_from.name,
        "images": [s.name for s in samples], "summary": summary, "per_image": results,
    }


def _mean(runs: list) -> list[dict]:
    """Mean of each metric per round over images (absolute value for the errors)."""
    if not runs:
        return []
    n_rounds = max(len(r["rounds"]) for r in runs)
    out = []
    for k in range(n_rounds):
        rows = [r["rounds"][min(k, len(r["rounds"]) - 1)] for r in runs]
        agg = {"round": k}
        for key in rows[0]:
            if key == "round":
                continue
            vals = [row[key] for row in rows if row.get(key) is not None]
            if key in ("count_error", "density_error"):
                vals = [abs(v) for v in vals]
                key = "abs_" + key
            agg[key] = round(float(np.mean(vals)), 4) if vals else None
        out.append(agg)
    return out
