"""Dump find similar's round-0 candidate pool with match flags, for choosing the score offline.

For each image: K = 10 seeded exemplars (as ``microseg fewshot-eval`` draws them, or drawn
from ``--exemplars-from``), one proposal, and per candidate its features measured on its final
mask, its score and whether it matches a true object (IoU >= 0.5 / 0.3). Writes
``OUT_<image>.npz`` for :mod:`score_variants`. Use tuning images only.

    python scripts/fewshot/dump_pool.py DATASET --images A B C --backend microseg-promptable --out PREFIX
    python scripts/fewshot/dump_pool.py ../shared/data/creme-316L-loops --images 1 2 3 --exemplars-from 8 ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_microseg.core.evaluate.matching import match_instances
from napari_microseg.core.fewshot import proposal
from napari_microseg.core.fewshot.evaluation import _draw_exemplars, _Truth
from napari_microseg.core.fewshot.session import FindSimilar
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.prompting.normalize import apply_normalization


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--backend", default="none")
    p.add_argument("--exemplars-from")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    layout, samples = load_dataset(a.dataset, a.images)
    source = None
    if a.exemplars_from:
        src = _Truth(load_dataset(a.dataset, [a.exemplars_from])[1][0], layout)
        source = (src, _draw_exemplars(src, 10, np.random.default_rng([0, 10_000])))
    for i, sample in enumerate(samples):
        truth = _Truth(sample, layout)
        fs = FindSimilar(truth.image, backend=a.backend, seed=0)
        if source is None:
            ex = _draw_exemplars(truth, 10, np.random.default_rng([0, i]))
            fs.set_exemplars(np.where(np.isin(truth.labels, ex), truth.labels, 0))
        else:
            ex = np.zeros(0, int)
            fs.add_exemplars_from(source[0].image, source[0].labels, source[1])
        t0 = time.perf_counter()
        cands = fs.propose()
        seconds = time.perf_counter() - t0
        rest = np.setdiff1d(truth.ids, ex)
        true = np.where(np.isin(truth.labels, rest), truth.labels, 0)
        tiled = fs._tiled
        norm = apply_normalization(np.asarray(truth.image), *tiled.value_range)
        prob = proposal.full_resolution(proposal.probability_map(tiled, fs._model), tiled.scale.factor,
                                        (0, 0, *truth.image.shape))
        ids, feats = proposal.object_features(cands.labels, norm, prob, tiled.scale)
        if source is None:
            ref = proposal.object_features(fs._pos, norm, prob, tiled.scale)[1]
        else:
            ref = fs._source_references()[0]
        hit5 = np.isin(ids, match_instances(cands.labels, true, 0.5).matched_pred)
        hit3 = np.isin(ids, match_instances(cands.labels, true, 0.3).matched_pred)
        np.savez(f"{a.out}_{sample.name}.npz", ids=ids, feats=feats, ref=ref,
                 score=cands.scores[ids - 1], hit5=hit5, hit3=hit3, n_rest=len(rest))
        print(f"{sample.name}: {len(cands)} candidates in {seconds:.1f} s, pool recall@0.5 "
              f"{hit5.sum() / max(1, len(rest)):.3f}, @0.3 {hit3.sum() / max(1, len(rest)):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
