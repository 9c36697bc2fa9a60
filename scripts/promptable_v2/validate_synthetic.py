"""First click of a promptable weights file against Otsu-flood on synthetic micrographs of every kind.

Seeds 5000-5005 (training used the generator with seed 2 for its 300 images; these seeds give other
images). "Never below Otsu-flood at click 1" is checked kind by kind.

    python scripts/promptable_v2/validate_synthetic.py [WEIGHTS.pt] [OUT.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.eval_data import Sample
from napari_microseg.core.prompting.evaluation import evaluate_clicks
from napari_microseg.core.prompting.registry import make_backend
from napari_microseg.core.synth import generate

KINDS = ("tem-loops", "tem-dots", "tem-voids", "tem-precipitates", "stem-loops", "stem-haadf-loops",
         "sem-pits")
SEEDS = range(5000, 5006)


def main(weights: str | None = None, out: str | None = None) -> dict:
    be = PromptableBackend.from_checkpoint(weights) if weights else PromptableBackend.load_default()
    backends = {"promptable": be, "otsu-flood": make_backend("otsu-flood")}
    result = {}
    for kind in KINDS:
        samples = [Sample(f"{kind}-{s}", g.image, g.labels)
                   for s in SEEDS for g in [generate(kind, (384, 384), seed=s)]]
        row = {}
        for name, b in backends.items():
            r = evaluate_clicks(b, samples, n_corrective=2, max_objects=40, seed=0)
            row[name] = [round(x, 4) for x in r["mean_iou"]]
        row["n_objects"] = r["n_objects"]
        result[kind] = row
        print(kind, json.dumps(row), flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
