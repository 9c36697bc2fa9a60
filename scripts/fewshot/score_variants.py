"""Best fixed-threshold F1@0.5 of score formulas on pools dumped by :mod:`dump_pool`.

For each ``PREFIX`` (one set of dumped images), the threshold that maximises the mean F1 over
its images, for: the score find similar gave (``current``), the old formula on the dumped
features, the score as it is now (``now``, :func:`~napari_microseg.core.fewshot.scoring.prior_score`)
and the contrast-term variants (``g`` = contrast over the exemplars' median, capped
at 1; ``p`` = mean pixel probability; ``sim`` = similarity to the exemplars).

    python scripts/fewshot/score_variants.py PREFIX [PREFIX ...]
"""

from __future__ import annotations

import glob
import sys

import numpy as np

from napari_microseg.core.fewshot.scoring import prior_score, similarity

THRESHOLDS = np.round(np.arange(0.01, 0.95, 0.01), 2)


def formulas(d, x, ref) -> dict:
    sim = similarity(x, ref)
    p = np.clip(x[:, 5], 0, 1)
    c_ref = float(np.median(ref[:, 3]))
    g = np.clip(x[:, 3] / c_ref, 0, 1) if abs(c_ref) > 1e-3 else np.ones(len(x))
    return {"current": d["score"], "old prior": sim ** 0.5 * p ** 0.25,
            "g^0": sim ** 0.5 * p ** 0.5, "g^0.5": sim ** 0.5 * g ** 0.5 * p ** 0.5,
            "g^1": sim ** 0.5 * g * p ** 0.5, "g^1 p^0.25": sim ** 0.5 * g * p ** 0.25,
            "now": prior_score(x, ref)}


def f1_at(hit, score, n_true, threshold) -> float:
    shown = score >= threshold
    return 2 * hit[shown].sum() / (shown.sum() + n_true)


def main(prefixes) -> None:
    for prefix in prefixes:
        curves: dict[str, list] = {}
        for path in sorted(glob.glob(prefix + "_*.npz")):
            d = np.load(path)
            for name, s in formulas(d, d["feats"], d["ref"]).items():
                curves.setdefault(name, []).append(
                    [f1_at(d["hit5"], s, int(d["n_rest"]), t) for t in THRESHOLDS])
        parts = []
        for name, c in curves.items():
            m = np.mean(c, axis=0)
            parts.append(f"{name}: {m.max():.3f}@{THRESHOLDS[m.argmax()]}")
        print(prefix, "  ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
