"""In-session adaptation of the offline promptable model and ``prompt-eval --adapt``;
the exact training data list of ``train-promptable --data-list``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_microseg.cli import main
from napari_microseg.cli.train_promptable import read_data_list
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.promptable.adaptation import (
    adapt_to_objects,
    evaluate_adaptation,
    split_objects,
)
from napari_microseg.core.prompting.eval_data import Sample


def scene(seed=0, shape=(160, 160), n=12):
    """Dark discs of radius 4-9 on a noisy grey background: (uint8 image, instance labels)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    k = 0
    for _ in range(200):
        r = rng.uniform(4, 9)
        c = rng.uniform(r + 2, np.array(shape) - r - 2)
        disc = (rr - c[0]) ** 2 + (cc - c[1]) ** 2 <= r * r
        grown = (rr - c[0]) ** 2 + (cc - c[1]) ** 2 <= (r + 3) ** 2
        if labels[grown].any():
            continue
        k += 1
        labels[disc] = k
        if k == n:
            break
    img = 170 - 80 * (labels > 0) + rng.normal(0, 12, shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def samples():
    return [Sample(str(i), *scene(i)) for i in (1, 2)]


def test_split_objects_is_complementary_and_seeded(samples):
    a, b = split_objects(samples, seed=3)
    for s, x, y in zip(samples, a, b, strict=True):
        assert not np.any((x.target > 0) & (y.target > 0))
        np.testing.assert_array_equal(np.where(x.target > 0, x.target, y.target), s.target)
        assert abs(len(np.unique(x.target)) - len(np.unique(y.target))) <= 1
    a2, _ = split_objects(samples, seed=3)
    assert all(np.array_equal(p.target, q.target) for p, q in zip(a, a2, strict=True))


def test_a_switch_needs_a_gain_beyond_noise_on_enough_objects():
    from napari_microseg.core.promptable.adaptation import MIN_CHECK_OBJECTS, clearly_better

    rng = np.random.default_rng(0)
    old = rng.uniform(0.4, 0.8, 40)
    steady = old + 0.03 + rng.normal(0, 0.01, 40)
    assert clearly_better(steady, old)[0]
    # the same mean gain, but object by object it is noise: refused
    noisy = old + 0.03 + rng.normal(0, 0.3, 40)
    ok, grounds = clearly_better(noisy, old)
    assert not ok and "held-out objects" in grounds
    # creme 10-12 with four committed loops per image: 6 held out, a +0.016 gain is not enough
    few = MIN_CHECK_OBJECTS - 2
    ok, grounds = clearly_better(old[:few] + 0.016, old[:few])
    assert not ok and "too few" in grounds
    assert not clearly_better(old - 0.02, old)[0]
    assert not clearly_better(old + 0.002, old)[0]  # below the margin, however steady


def test_too_few_objects_changes_nothing(samples, tmp_path):
    one = Sample("x", samples[0].image, np.where(samples[0].target == 1, 1, 0))
    r = adapt_to_objects([one], seconds=5, out_dir=tmp_path)
    assert not r.accepted and r.weights is None
    assert "needs 16 or more" in r.reason
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_adaptation_decides_on_held_out_objects_and_leaves_inputs(samples, tmp_path):
    before = [s.target.copy() for s in samples]
    r = adapt_to_objects(samples, seconds=12, replay=0, out_dir=tmp_path, seed=1)
    for s, t in zip(samples, before, strict=True):
        np.testing.assert_array_equal(s.target, t)
    assert r.steps > 0 and np.isfinite(r.before) and np.isfinite(r.after)
    assert len(r.details["held_out_curve_before"]) == 3
    # The decision follows the held-out comparison, and only an accepted run has weights.
    assert "held-out objects" in r.details["check"] and r.details["check"] in r.reason
    if r.after < r.before + 0.005:
        assert not r.accepted
    assert (r.weights is not None) == r.accepted
    if r.accepted:
        assert r.weights.is_file()


def write_dataset(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in (1, 2):
        img, lab = scene(i)
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(lab.astype(np.uint16)).save(root / "masks" / f"{i}.png")
    return root


@pytest.mark.slow
def test_prompt_eval_adapt_end_to_end(tmp_path, capsys):
    root = write_dataset(tmp_path / "ds")
    out = tmp_path / "a.json"
    argv = ["prompt-eval", str(root), "--backend", "microseg-promptable", "--adapt", "4",
            "--adapt-seconds", "10", "--clicks", "1", "--json", str(out)]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert r["k"] == 4 and r["before"]["n_objects"] == 2 * (12 - 4)
    assert r["after"]["n_objects"] == r["before"]["n_objects"]
    if not r["accepted"]:  # refused: the live model is the starting one, the scores equal
        assert r["after"]["mean_iou"] == r["before"]["mean_iou"]
    assert "adaptation:" in capsys.readouterr().out


def test_prompt_eval_adapt_refuses_other_backends(tmp_path, capsys):
    root = write_dataset(tmp_path / "ds")
    assert main(["prompt-eval", str(root), "--backend", "otsu-flood", "--adapt", "3"]) == 1
    assert "microseg-promptable" in capsys.readouterr().err


def test_evaluate_adaptation_counts_remaining_objects_only(samples, monkeypatch):
    """The K committed objects are never scored; the rest all are."""
    from napari_microseg.core.promptable import adaptation

    seen = []

    def fake_adapt(committed, **kw):
        seen.extend(committed)
        return adaptation.AdaptationResult(False, None, 0.5, 0.4, "kept", 0.0)

    monkeypatch.setattr(adaptation, "adapt_to_objects", fake_adapt)
    r = evaluate_adaptation(samples, 3, seconds=1, n_corrective=0)
    assert [len(np.unique(s.target)) - 1 for s in seen] == [3, 3]
    assert r["before"]["n_objects"] == 2 * 9 and not r["accepted"]
    assert r["hints"] == {"1": None, "2": None}  # three objects are too few for a size hint
    assert r["hinted"]["mean_iou"] == r["after"]["mean_iou"] == r["before"]["mean_iou"]


def test_evaluate_adaptation_sizes_first_clicks_like_the_dock(samples, monkeypatch):
    """With five committed objects, 'after' carries their size hint: exactly what
    ``--size-prior 5`` scores with the hint; ``size_hint=False`` gives the old before/after."""
    from napari_microseg.core.promptable import adaptation
    from napari_microseg.core.promptable.backend import PromptableBackend
    from napari_microseg.core.prompting.size_prior import evaluate_size_prior

    monkeypatch.setattr(adaptation, "adapt_to_objects",
                        lambda committed, **kw: adaptation.AdaptationResult(False, None, 0.5, 0.4, "kept", 0.0))
    r = evaluate_adaptation(samples, 5, seconds=1, n_corrective=0)
    prior = evaluate_size_prior(PromptableBackend.load_default(), samples, 5)
    assert r["hints"] == prior["hints"] and all(h is not None for h in r["hints"].values())
    assert r["before"]["mean_iou"] == prior["without"]["mean_iou"]
    assert r["hinted"]["mean_iou"] == r["after"]["mean_iou"] == prior["with"]["mean_iou"]
    plain = evaluate_adaptation(samples, 5, seconds=1, n_corrective=0, size_hint=False)
    assert plain["after"]["mean_iou"] == plain["before"]["mean_iou"] == r["before"]["mean_iou"]


def test_data_list_reads_folders_relative_to_the_file(tmp_path):
    root = write_dataset(tmp_path / "data" / "set")
    lst = tmp_path / "lists" / "d.json"
    lst.parent.mkdir()
    lst.write_text(json.dumps([{"folder": "../data/set", "images": [2], "weight": 0.7},
                               {"folder": str(root)}]))
    entries = read_data_list(lst)
    assert entries == [(root, ["2"], 0.7), (root, None, None)]


@pytest.mark.parametrize("text", ["not json", json.dumps({"folder": "x"}),
                                  json.dumps([{"folder": "x", "weight": -1}])])
def test_data_list_bad_files_are_refused_with_a_message(tmp_path, text):
    lst = tmp_path / "d.json"
    lst.write_text(text)
    with pytest.raises(MicrosegError, match="d.json"):
        read_data_list(lst)


def test_data_list_pickle_is_data_not_code(tmp_path):
    import pickle

    lst = tmp_path / "d.json"
    lst.write_bytes(pickle.dumps({"folder": "x"}))
    with pytest.raises(MicrosegError, match="not a readable JSON"):
        read_data_list(lst)


def test_threshold_calibration_is_at_least_the_live_one_and_round_trips(samples, tmp_path):
    from napari_microseg.core.promptable.adaptation import (
        THRESHOLDS,
        _with_threshold,
        calibrate_threshold,
    )
    from napari_microseg.core.promptable.backend import PromptableBackend
    from napari_microseg.core.prompting.evaluation import evaluate_clicks

    be = PromptableBackend.load_default()
    live = be.first_threshold
    t, iou = calibrate_threshold(be, samples)
    assert t in THRESHOLDS and be.first_threshold == live  # the live backend is untouched
    be.first_threshold = t
    assert evaluate_clicks(be, samples, "point", 0)["mean_iou"][0] == pytest.approx(iou)
    be.first_threshold = live
    if live in THRESHOLDS:
        assert iou >= evaluate_clicks(be, samples, "point", 0)["mean_iou"][0] - 1e-9
    path = _with_threshold(be, t, tmp_path / "w")
    again = PromptableBackend.from_checkpoint(path)
    assert again.first_threshold == t and again.threshold == be.threshold
