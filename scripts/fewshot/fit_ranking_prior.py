"""Experiment (not shipped): a ranking prior for find similar learnt on training pools.

The round-0 score (``core/fewshot/scoring.prior_score``) weighs the candidates' similarity to the
exemplars, relative contrast and pixel probability with fixed exponents. Here a standardised,
class-balanced logistic regression learns the weights instead, on features taken *relative to
each image's exemplars* (robust z-scores of the shape and intensity features, their magnitudes,
the relative contrast, the probability, the hand-made score and its log), from find similar's
round-0 pools (``dump_pool.py``, promptable-model masks) on training images only: Ti frames
2-511 and creme 1-7, 9 (exemplars from creme 8).

``--evaluate`` prints the leave-one-image-out table; ``--validate A.npz ...`` scores pools of
other images with a regression fitted on all the training pools; ``--calibrate`` (with
``--validate``) also tries a per-image calibration: logits shifted so that the exemplars' own
leave-one-out logits sit at a level chosen on the training pools, F1@0.5 at probability 0.5. Results and why it was not shipped: BENCHMARKS.md "Find similar", "A learnt
ranking prior".

    python scripts/fewshot/fit_ranking_prior.py ti_*.npz cr_*.npz --evaluate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from napari_microseg.core.fewshot.scoring import (
    PROB_COLUMN,
    SHAPE_COLUMNS,
    _spread,
    prior_score,
    relative_contrast,
)


def relative_features(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Candidates' features relative to the exemplars ``ref``, one row per candidate."""
    cols = list(SHAPE_COLUMNS)
    z = (feats[:, cols] - np.median(ref[:, cols], axis=0)) / _spread(ref[:, cols])
    prior = prior_score(feats, ref)
    return np.column_stack([z, np.abs(z), relative_contrast(feats, ref), np.clip(feats[:, PROB_COLUMN], 0, 1),
                            prior, np.log(prior + 1e-4)])


def load(path: str) -> dict:
    d = np.load(path)
    return {"name": Path(path).stem, "x": relative_features(d["feats"], d["ref"]), "hit": d["hit5"].astype(bool),
            "n": int(d["n_rest"]), "prior": prior_score(d["feats"], d["ref"])}


def regression():
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000))


def best_f1(s, hit, n) -> float:
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(hit[order])
    return float((2 * tp / (np.arange(1, len(order) + 1) + n)).max()) if len(order) else 0.0


def f1_at(s, hit, n, t) -> float:
    keep = s >= t
    return float(2 * hit[keep].sum() / (keep.sum() + n))


def fit(pools: list[dict]):
    return regression().fit(np.vstack([p["x"] for p in pools]), np.concatenate([p["hit"] for p in pools]))


def table(pools: list[dict], model_for) -> dict:
    """Per dataset prefix: best F1@0.5 of the hand-made and learnt scores, learnt F1 at fixed p."""
    out = {}
    for group in sorted({p["name"].split("_")[0] for p in pools}):
        rows = {"hand-made best F1": [], "learnt best F1": [], **{f"learnt F1 at p={t}": [] for t in (0.5, 0.6, 0.7, 0.8)}}
        for p in (q for q in pools if q["name"].startswith(group + "_")):
            s = model_for(p).predict_proba(p["x"])[:, 1]
            rows["hand-made best F1"].append(best_f1(p["prior"], p["hit"], p["n"]))
            rows["learnt best F1"].append(best_f1(s, p["hit"], p["n"]))
            for t in (0.5, 0.6, 0.7, 0.8):
                rows[f"learnt F1 at p={t}"].append(f1_at(s, p["hit"], p["n"], t))
        out[group] = {k: round(float(np.mean(v)), 4) for k, v in rows.items()}
    return out


def exemplar_features(path: str) -> np.ndarray:
    """Each exemplar's relative features against the other exemplars of its image."""
    ref = np.load(path)["ref"]
    return np.array([relative_features(ref[j:j + 1], np.delete(ref, j, 0))[0] for j in range(len(ref))])


def calibrated_f1(pools: list[dict], models: list, level: float, calibrate: bool) -> dict:
    """Mean F1@0.5 at probability 0.5 per dataset prefix, logits shifted by ``level``
    (and, with ``calibrate``, by minus the median of the exemplars' logits)."""
    out: dict = {}
    for p, m in zip(pools, models, strict=True):
        logit = m.decision_function(p["x"]) + level
        if calibrate:
            logit -= np.median(m.decision_function(p["ex"]))
        out.setdefault(p["name"].split("_")[0], []).append(f1_at(1 / (1 + np.exp(-logit)), p["hit"], p["n"], 0.5))
    return {k: round(float(np.mean(v)), 4) for k, v in out.items()}


def calibration(train_paths: list[str], val_paths: list[str]) -> dict:
    train = [{**load(q), "ex": exemplar_features(q)} for q in train_paths]
    val = [{**load(q), "ex": exemplar_features(q)} for q in val_paths]
    loo = [fit([q for q in train if q is not p]) for p in train]
    full = fit(train)
    out = {}
    for calibrate in (False, True):
        level = max(np.arange(-6, 3.01, 0.5),
                    key=lambda c: np.mean(list(calibrated_f1(train, loo, c, calibrate).values())))
        out["calibrated" if calibrate else "plain"] = {
            "level": float(level), "train, leave one out": calibrated_f1(train, loo, level, calibrate),
            "validation": calibrated_f1(val, [full] * len(val), level, calibrate)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pools", nargs="+")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--validate", nargs="*", default=[])
    ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    pools = [load(p) for p in a.pools]
    if a.evaluate:
        print(json.dumps(table(pools, lambda p: fit([q for q in pools if q is not p])), indent=1))
    if a.validate:
        model = fit(pools)
        print(json.dumps(table([load(p) for p in a.validate], lambda p: model), indent=1))
    if a.validate and a.calibrate:
        print(json.dumps(calibration(a.pools, a.validate), indent=1))


if __name__ == "__main__":
    main()
