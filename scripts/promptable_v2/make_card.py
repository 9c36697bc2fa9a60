"""Install the v2 promptable weights in the package with their model card.

Reads the training run (``weights.pt``, ``log.jsonl``, ``recipe.json``), the data list beside
this script, the first-click choice made on training images (``tune_first_click.py``) and
the validation results (``validate.py``, for v2 and for the model it replaces), and writes
``resources/models/microseg-promptable/{weights.pt, model_card.json}``.

    python scripts/promptable_v2/make_card.py RUN_DIR TUNE.json VAL_V2.json VAL_V1.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

from napari_microseg.core.promptable.backend import load_weights, save_weights

HERE = Path(__file__).resolve().parent
RESOURCES = HERE.parents[1] / "src" / "napari_microseg" / "resources" / "models" / "microseg-promptable"


def main(run_dir: str, tune: str, val_v2: str, val_v1: str) -> Path:
    run = Path(run_dir)
    card = json.loads((RESOURCES / "model_card.json").read_text())
    previous = {k: card[k] for k in ("model_id", "training_data", "recipe", "command")}
    recipe = json.loads((run / "recipe.json").read_text())
    run_card = json.loads((run / "model_card.json").read_text())  # the run's own card (for its best epoch)
    history = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    tuned = json.loads(Path(tune).read_text())["best"]
    v2, v1 = json.loads(Path(val_v2).read_text()), json.loads(Path(val_v1).read_text())
    weights = RESOURCES / "weights.pt"
    model, crop, meta = load_weights(run / "weights.pt")  # fp16 in, fp16 out: the same values
    crop = dataclasses.replace(crop, min_side=int(tuned["min_side"]))  # the window is stored with the weights
    save_weights(weights, model, crop, **meta)
    data = weights.read_bytes()
    card.update({
        "model_id": "microseg-promptable-v2",
        "description": ("Offline default click/box promptable segmentation model for defects in TEM/STEM/SEM "
                        "micrographs: a compact U-Net on a window around the prompts. v2: v1 fine-tuned on "
                        "in-situ TEM frames of irradiated Ti (about 6,100 defects) besides creme and synthetic "
                        "micrographs."),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "weights_bytes": len(data),
        "first_threshold": tuned["first_threshold"],
        "threshold_note": (f"first-click logit threshold {tuned['first_threshold']} and smallest click window "
                           f"{tuned['min_side']} px chosen on TRAINING images only (Ti 433, 743; creme 1-9; "
                           "scripts/promptable_v2/tune_first_click.py); 0.0 when refining"),
        "training_data": {
            "data_list": "scripts/promptable_v2/data.json (exact images; Ti weight 0.6, creme 0.4)",
            "real": json.loads((HERE / "data.json").read_text()),
            "synthetic": {**run_card["training_data"]["synthetic"],
                          "share": round(1 - recipe["args"]["real_fraction"], 2)},
            "held_out": {"ti-insitu-tem-defects": ["Chip-4-Heat-1-Frame-896", "Chip-4-Heat-1-Frame-974"],
                         "creme-316L-loops": ["10", "11", "12"],
                         "uwcmg-fecral-111loops": "all 198 images (never used in training)"},
            "initialised_from": previous,
        },
        "recipe": {
            **{k: v for k, v in run_card["recipe"].items() if k not in ("steps", "train_seconds")},
            "script": "scripts/promptable_v2/train.sh (resumable; checkpoints outside the repository)",
            "args": recipe["args"],
            "steps": history[-1]["step"],
            "train_seconds": history[-1]["elapsed_s"],
            "hardware": "2 shared CPU cores (1 torch thread), no GPU",
            "weights_chosen": "the last step (the run's best_weights.pt, picked on creme 10-12, is not used)",
        },
        "command": "bash scripts/promptable_v2/train.sh",
        "git_commit": recipe["git_commit"],
        "git_commit_note": "HEAD when the run started; resumed runs keep their recipe",
        "history": [{k: h[k] for k in ("epoch", "step", "loss", "lr", "elapsed_s", "val_iou") if k in h}
                    for h in history],
        "validation": {
            "protocol": ("scripts/promptable_v2/validate.py: simulated user, first click at the interior point "
                         "farthest from the border (or the bounding box), 3 corrective clicks at the largest "
                         "error region; Ti 150 objects per frame (seed 0); small = under 100 px"),
            "microseg-promptable-v2": v2,
            "microseg-promptable-v1 (same protocol)": v1,
            "notes": [
                "No validation image was trained on or used to choose the weights or the thresholds.",
                "creme 10-12 click-1 scores were logged during training (history.val_iou) but not used.",
            ],
        },
    })
    card["crop"] = crop.to_dict()
    card.pop("latency_ms_median", None)
    (RESOURCES / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    return RESOURCES


if __name__ == "__main__":
    print(main(*sys.argv[1:5]))
