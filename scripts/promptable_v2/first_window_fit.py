"""Experiment (not shipped): ways to choose the first click's window, fitted on TRAINING pools.

Pools come from ``first_window_pool.py``. Every choice (model, its settings, the factor of
the size rule) is made on the training pools only (Ti 2/124/278/433/588/743, creme 1-9: the
model's own training images); the validation pools (Ti 896/974 every object, creme 10-12) are
scored once with what was chosen. Score: mean first-click IoU of the kept candidate. A variant
would be kept only if it also beat the fixed 64 px window on the FeCrAl STEM boxes (never
trained on, not a validation set; box IoU of a click at each box centre).

Variants:

* ``fixed:S``: the smallest window fixed at S px (64: as shipped);
* ``oracle``: the best candidate of each object (an upper bound);
* ``ridge`` / ``gbm``: a linear model or gradient boosting predicts each candidate's IoU from
  its features, the best is kept (``gbm`` is evaluated with grouped 5-fold CV on training);
* ``... +prior``: the same with the median area of K = 10 other objects of the image (what a
  user has committed there) as extra features;
* ``size rule``: the side nearest to c x sqrt(median committed area), c chosen on training;
* ``self-calibrated``: per image, the side best on the 10 committed objects.
* ``size rule, fixed when spread > t``: the size rule, but the fixed 64 px window when the
  committed objects' log-area standard deviation exceeds t (t chosen on training);
* ``area match``: the candidate whose mask area is nearest the committed median area.

    python scripts/promptable_v2/first_window_fit.py POOL_DIR [OUT.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from first_window_lib import FEATURES, SIDES
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

TRAIN, VAL = ("train_ti", "train_creme"), ("val_ti", "val_creme")
SEL = ("sel_fecral",)  # never trained on, not validation: where a variant must prove itself
K = 10  # committed objects per image behind the prior
SMALL = 100
LOG_AREA = FEATURES.index("log_area")


def load(folder: Path, name: str) -> dict:
    d = np.load(folder / f"{name}.npz")
    k = len(d["sides"])
    out = {"x": d["features"].reshape(-1, k, len(FEATURES)), "y": d["iou"].reshape(-1, k),
           "area": d["area"].reshape(-1, k)[:, 0], "img": d["image"].reshape(-1, k)[:, 0]}
    out["prior"], out["calib"], out["spread"] = committed_prior(out)
    return out


def committed_prior(d: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object, over K other objects of its image: their median area, the side best on them,
    and the standard deviation of their log areas."""
    rng = np.random.default_rng(seed)
    n = len(d["y"])
    prior, calib, spread = np.zeros(n), np.zeros(n, int), np.zeros(n)
    for i in range(n):
        same = np.flatnonzero((d["img"] == d["img"][i]) & (np.arange(n) != i))
        pick = rng.choice(same, size=min(K, len(same)), replace=False)
        prior[i] = np.median(d["area"][pick])
        calib[i] = d["y"][pick].mean(0).argmax()
        spread[i] = np.std(np.log(d["area"][pick]))
    return prior, calib, spread


def design(d: dict, prior: bool) -> np.ndarray:
    x = d["x"]
    if not prior:
        return x
    rel = (x[:, :, LOG_AREA] - np.log1p(d["prior"])[:, None])[..., None]
    return np.concatenate([x, rel, np.abs(rel)], -1)


def model(kind: str):
    if kind == "ridge":
        return Ridge(alpha=10.0)
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                         min_samples_leaf=40, random_state=0)


def fit_pick(kind, prior, train: list[dict], test: dict) -> np.ndarray:
    """Index of the kept candidate per object of ``test``."""
    x = np.concatenate([design(d, prior) for d in train])
    y = np.concatenate([d["y"] for d in train])
    m = model(kind).fit(x.reshape(-1, x.shape[-1]), y.ravel())
    xt = design(test, prior)
    return m.predict(xt.reshape(-1, xt.shape[-1])).reshape(test["y"].shape).argmax(1)


def cv_pick(kind, prior, sets: dict, name: str) -> np.ndarray:
    d = sets[name]
    pick = np.zeros(len(d["y"]), int)
    others = [sets[o] for o in TRAIN if o != name]
    for tr, te in GroupKFold(5).split(d["y"], groups=d["img"] if len(set(d["img"])) >= 5
                                      else np.arange(len(d["y"]))):
        part = {k: v[tr] for k, v in d.items()}
        test = {k: v[te] for k, v in d.items()}
        pick[te] = fit_pick(kind, prior, [part, *others], test)
    return pick


def score(d: dict, pick: np.ndarray) -> dict:
    got = d["y"][np.arange(len(pick)), pick]
    small = d["area"] < SMALL
    return {"mean": round(float(got.mean()), 4),
            "small": round(float(got[small].mean()), 4) if small.any() else None}


def size_rule(d: dict, c: float) -> np.ndarray:
    want = c * np.sqrt(d["prior"])
    return np.abs(np.log(SIDES)[None, :] - np.log(want)[:, None]).argmin(1)


def main(folder: str, out: str | None = None) -> dict:
    sets = {n: load(Path(folder), n) for n in (*TRAIN, *VAL, *SEL)}
    rows = {}
    for s in SIDES:
        rows[f"fixed:{s}"] = {n: score(d, np.full(len(d["y"]), SIDES.index(s))) for n, d in sets.items()}
    rows["oracle"] = {n: score(d, d["y"].argmax(1)) for n, d in sets.items()}
    for kind in ("ridge", "gbm"):
        for prior in (False, True):
            name = f"{kind}{' +prior' if prior else ''}"
            row = {n: score(sets[n], cv_pick(kind, prior, sets, n)) for n in TRAIN}
            for n in (*VAL, *SEL):
                row[n] = score(sets[n], fit_pick(kind, prior, [sets[t] for t in TRAIN], sets[n]))
            rows[name] = row
            print(name, json.dumps(row), flush=True)
    cs = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
    c = max(cs, key=lambda c: np.mean([score(sets[n], size_rule(sets[n], c))["mean"] for n in TRAIN]))
    rows[f"size rule c={c}"] = {n: score(d, size_rule(d, c)) for n, d in sets.items()}
    rows["self-calibrated"] = {n: score(d, d["calib"]) for n, d in sets.items()}
    i64 = SIDES.index(64)
    spread_pick = {n: (lambda d, t: np.where(d["spread"] > t, i64, size_rule(d, c))) for n in sets}
    ts = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
    t = max(ts, key=lambda t: np.mean([score(sets[n], spread_pick[n](sets[n], t))["mean"] for n in TRAIN]))
    rows[f"size rule c={c}, fixed when spread > {t}"] = {n: score(d, spread_pick[n](d, t)) for n, d in sets.items()}
    rows["area match"] = {n: score(d, np.abs(d["x"][:, :, LOG_AREA] - np.log1p(d["prior"])[:, None]).argmin(1))
                          for n, d in sets.items()}
    for r in rows.values():
        r["train_mean"] = round(float(np.mean([r[n]["mean"] for n in TRAIN])), 4)
        r["val_mean"] = round(float(np.mean([r[n]["mean"] for n in VAL])), 4)
        r["selection"] = r["sel_fecral"]["mean"]
    print(json.dumps(rows, indent=1))
    if out:
        Path(out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:3])
