"""Find similar (core): exemplars in, scored candidates out, on synthetic images with exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.evaluate.matching import match_instances
from napari_microseg.core.fewshot import Candidates, FindSimilar, find_similar
from napari_microseg.core.prompting.eval_data import Sample
from napari_microseg.core.synth.generator import generate


@pytest.fixture(scope="module")
def pits():
    """256² synthetic SEM pits (19 objects) with exact instance labels."""
    s = generate("sem-pits", shape=(256, 256), seed=3, n_objects=25, nuisances=False)
    return s.image, s.labels


def _exemplars(labels, k=5):
    ids = np.unique(labels)[1:][:k]
    return np.where(np.isin(labels, ids), labels, 0), ids


def _f1(cands: Candidates, truth, threshold=0.5):
    keep = np.where(np.isin(cands.labels, cands.above(threshold)), cands.labels, 0)
    return match_instances(keep, truth, 0.5).f1


def _check_candidates(c: Candidates, committed):
    assert c.labels.dtype == np.int32
    assert c.scores.ndim == 1 and len(c) == len(c.scores)
    assert int(c.labels.max(initial=0)) == len(c)
    assert set(np.unique(c.labels)) <= set(range(len(c) + 1))
    assert np.all((c.scores >= 0) & (c.scores <= 1))
    assert np.all(np.diff(c.scores) <= 1e-12)  # best first
    assert not np.any((c.labels > 0) & (np.asarray(committed) != 0))


def test_finds_the_other_pits_and_beats_segment_everything(pits):
    from napari_microseg.core.fewshot.evaluation import evaluate_fewshot

    image, labels = pits
    res = evaluate_fewshot([Sample("pits", image, labels)], "masks", shots=5,
                           methods=("find-similar", "segment-everything"))
    fs_f1 = res["summary"]["find-similar"][0]["f1@50"]
    se_f1 = res["summary"]["segment-everything"][0]["f1@50"]
    assert fs_f1 >= 0.8
    assert fs_f1 > se_f1 + 0.3


def test_inputs_never_modified_and_candidates_avoid_committed(pits):
    image, labels = pits
    ex, ids = _exemplars(labels)
    committed = ex.copy()
    committed[:20, :20] = 99  # something else the user committed
    ex0, com0, img0 = ex.copy(), committed.copy(), image.copy()
    fs = FindSimilar(image)
    fs.set_exemplars(ex, committed=committed)
    c = fs.propose()
    _check_candidates(c, committed)
    assert fs.n_rounds == 1
    rest = np.where(np.isin(labels, ids), 0, labels)
    true_ids = match_instances(c.labels, rest, 0.5).matched_pred
    wrong = np.setdiff1d(np.arange(1, len(c) + 1), true_ids)
    c.labels[:] = 0  # the caller's copy: changing it changes nothing inside
    fs.review(accept=[true_ids.min()], reject=wrong[:3])
    c2 = fs.propose()
    assert fs.n_rounds == 2
    accepted = fs._pos != 0
    _check_candidates(c2, committed)
    assert not np.any((c2.labels > 0) & accepted)
    np.testing.assert_array_equal(ex, ex0)
    np.testing.assert_array_equal(committed, com0)
    np.testing.assert_array_equal(image, img0)
    # Every true pit not yet committed is still among the candidates.
    left = np.where(accepted, 0, rest)
    assert match_instances(c2.labels, left, 0.5).recall >= 0.9


def test_review_accepted_become_exemplars_rejected_negatives(pits):
    image, labels = pits
    ex, _ = _exemplars(labels, 3)
    fs = FindSimilar(image)
    fs.set_exemplars(ex)
    c = fs.propose()
    assert len(c) >= 3
    first = c.labels == 1
    fs.review(accept=[1], reject=[len(c)])
    assert np.all(fs._pos[first] > 0) and np.all(fs._committed[first])
    assert np.all(fs._negative[c.labels == len(c)])
    with pytest.raises(MicrosegError, match="both accepted and rejected"):
        fs.review(accept=[2], reject=[2])
    with pytest.raises(MicrosegError, match="No candidate"):
        fs.review(accept=[len(c) + 5])


def test_bad_inputs_clear_errors(pits):
    image, labels = pits
    fs = FindSimilar(image)
    with pytest.raises(MicrosegError, match="at least one exemplar"):
        fs.set_exemplars(np.zeros_like(labels))
    with pytest.raises(MicrosegError, match="differ in shape"):
        fs.set_exemplars(labels[:100])
    with pytest.raises(MicrosegError, match="No object with id"):
        fs.set_exemplars(labels, ids=[9999])
    with pytest.raises(MicrosegError, match="exemplars first"):
        fs.propose()
    with pytest.raises(MicrosegError, match="Nothing to review"):
        fs.review(accept=[1])
    with pytest.raises(MicrosegError, match="2-D"):
        FindSimilar(np.zeros((4, 32, 32)))
    with pytest.raises(MicrosegError, match="too small"):
        FindSimilar(np.zeros((4, 4)))
    with pytest.raises(MicrosegError, match="integers"):
        fs.set_exemplars(labels.astype(float))
    fs.set_exemplars(labels, ids=np.unique(labels)[1:3])
    with pytest.raises(MicrosegError, match="outside"):
        fs.add_negatives(points=[[300, 5]])


def test_rgb_is_converted_with_a_warning(pits):
    image, labels = pits
    rgb = np.stack([image] * 3, axis=-1)
    with pytest.warns(UserWarning, match="grey"):
        fs = FindSimilar(rgb)
    assert fs.image.shape == image.shape


def test_single_tiny_exemplar_and_edge_exemplar_do_not_crash():
    rng = np.random.default_rng(0)
    image = (rng.normal(128, 8, (96, 96))).clip(0, 255).astype(np.uint8)
    labels = np.zeros((96, 96), np.int32)
    labels[40:42, 40:42] = 1  # 4 px
    image[labels == 1] = 40
    c = find_similar(image, labels)
    _check_candidates(c, labels)
    edge = np.zeros((96, 96), np.int32)
    edge[0:6, 30:40] = 3  # touches the top border
    image2 = image.copy()
    image2[edge == 3] = 30
    image2[60:66, 60:70] = 30  # one similar object
    c = find_similar(image2, edge)
    _check_candidates(c, edge)
    assert np.any(c.labels[60:66, 60:70] > 0)


def test_image_with_nothing_similar_gives_a_clean_result():
    rng = np.random.default_rng(1)
    image = rng.normal(0.5, 0.02, (128, 128)).astype(np.float32)
    labels = np.zeros((128, 128), np.int32)
    yy, xx = np.ogrid[:128, :128]
    labels[(yy - 64) ** 2 + (xx - 64) ** 2 <= 36] = 1
    image[labels == 1] = 0.1
    c = find_similar(image, labels)
    _check_candidates(c, labels)
    assert len(c.above(0.5)) == 0


def test_negatives_are_accepted(pits):
    image, labels = pits
    ex, _ = _exemplars(labels)
    fs = FindSimilar(image)
    fs.set_exemplars(ex)
    fs.add_negatives(points=[[10, 10], [200.5, 30]], mask=np.eye(256, dtype=bool))
    free = ~fs._committed
    assert np.all(fs._negative[np.eye(256, dtype=bool) & free])
    assert fs._negative[10, 10] == free[10, 10] and fs._negative[200, 30] == free[200, 30]
    _check_candidates(fs.propose(), ex)


def test_tiled_and_untiled_agree(pits):
    image, labels = pits
    ex, ids = _exemplars(labels)
    whole = find_similar(image, ex, tile=1024)
    tiled = find_similar(image, ex, tile=96)
    a = np.where(np.isin(whole.labels, whole.above(0.5)), whole.labels, 0)
    b = np.where(np.isin(tiled.labels, tiled.above(0.5)), tiled.labels, 0)
    assert match_instances(b, a, 0.5).f1 >= 0.9


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_dtypes_give_the_same_objects(pits, dtype):
    image, labels = pits
    ex, _ = _exemplars(labels)
    ref = find_similar(image, ex)
    other = image.astype(np.uint16) * 257 if dtype == "uint16" else image.astype(np.float32) / 255
    c = find_similar(other, ex)
    a = np.where(np.isin(ref.labels, ref.above(0.5)), ref.labels, 0)
    b = np.where(np.isin(c.labels, c.above(0.5)), c.labels, 0)
    assert match_instances(b, a, 0.5).f1 >= 0.9


def test_propose_on_another_image(pits):
    image, labels = pits
    ex, _ = _exemplars(labels)
    other = generate("sem-pits", shape=(256, 256), seed=4, n_objects=25, nuisances=False)
    fs = FindSimilar(image)
    fs.set_exemplars(ex)
    c = fs.propose_on(other.image)
    assert c.labels.shape == other.labels.shape
    assert match_instances(c.labels, other.labels, 0.5).recall >= 0.7
    # Exemplars from another image only: nothing committed here.
    fs2 = FindSimilar(other.image)
    fs2.add_exemplars_from(image, ex)
    c2 = fs2.propose()
    _check_candidates(c2, np.zeros_like(other.labels))
    assert match_instances(c2.labels, other.labels, 0.5).recall >= 0.7


def test_cancel_returns_an_empty_cancelled_result(pits):
    image, labels = pits
    ex, _ = _exemplars(labels)
    fs = FindSimilar(image)
    fs.set_exemplars(ex)
    seen = []
    c = fs.propose(progress=seen.append, cancel=lambda: True)
    assert c.cancelled and len(c) == 0 and fs.n_rounds == 0
    c = fs.propose(progress=seen.append)
    assert not c.cancelled and seen[-1] == pytest.approx(1.0)
    assert all(0 <= f <= 1 for f in seen)


def test_promptable_backend_redraws_masks(pits):
    """``backend=`` a prompt backend: one click per candidate redraws its mask (classical here)."""
    image, labels = pits
    ex, ids = _exemplars(labels)
    c = find_similar(image, ex, backend="otsu-flood")
    _check_candidates(c, ex)
    rest = np.where(np.isin(labels, ids), 0, labels)
    assert match_instances(c.labels, rest, 0.5).recall >= 0.7
    with pytest.raises(MicrosegError):
        find_similar(image, ex, backend="no-such-backend")


def test_default_masks_promptable_up_to_the_size_limit_then_own(pits, monkeypatch):
    """Every entry point's default: the promptable model draws masks up to 4096², above it
    find similar's own masks, with a note saying so; an explicit choice is never overridden."""
    import napari_microseg.core.fewshot.masks as fsm

    image, labels = pits
    ex, _ = _exemplars(labels)
    assert fsm.mask_source("default", (4096, 4096)) == ("auto", "")
    spec, note = fsm.mask_source("default", (4096, 4097))
    assert spec == "none" and "16.8 Mpx" in note and "pixel classifier" in note
    assert fsm.mask_source("otsu-flood", (10**5, 10**5)) == ("otsu-flood", "")
    fs = FindSimilar(image)
    assert fs.backend.name == "microseg-promptable" and fs.mask_note == ""  # no SAM2 weights here
    own = FindSimilar(image, backend="none")
    own.set_exemplars(ex)
    expected = own.propose()
    monkeypatch.setattr(fsm, "PROMPTABLE_MAX_PIXELS", image.size - 1)
    big = FindSimilar(image)
    big.set_exemplars(ex)
    got = big.propose()
    assert big.backend is None and "pixel classifier" in big.mask_note
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.scores, expected.scores)
    with pytest.raises(ValueError, match="mask_source"):
        fsm.resolve_backend("default")


def test_learnt_score_joins_only_when_it_ranks_the_decisions_better():
    """Review rounds: the accepted-vs-rejected classifier is used only when it demonstrably helps."""
    from napari_microseg.core.fewshot.scoring import learnt_helps, prior_score, score_objects

    rng = np.random.default_rng(0)

    def objs(n, area, contrast):
        return np.column_stack([np.log(rng.normal(area, 5, n).clip(10)), rng.uniform(0.2, 0.6, n),
                                rng.uniform(0.9, 1.0, n), rng.normal(contrast, 0.01, n),
                                rng.uniform(0.05, 0.1, n), rng.uniform(0.5, 0.9, n)])

    exemplars = objs(10, 100, 0.3)
    # The user accepts fainter and smaller objects than the exemplars and rejects larger,
    # stronger ones: the prior (which favours contrast) ranks them the wrong way round,
    # the classifier learns it.
    accepted, rejected = objs(12, 70, 0.2), objs(12, 140, 0.3)
    pos = np.vstack([exemplars, accepted])
    pa, pr = prior_score(accepted, pos), prior_score(rejected, pos)
    assert learnt_helps(exemplars, accepted, rejected, pa, pr)
    # The same objects with decisions at random: nothing to learn, the prior stays alone.
    both = np.vstack([accepted, rejected])
    flip = rng.permutation(len(both))
    acc2, rej2 = both[flip[:12]], both[flip[12:]]
    assert not learnt_helps(exemplars, acc2, rej2, prior_score(acc2, pos), prior_score(rej2, pos))
    mask = np.r_[np.zeros(10, bool), np.ones(12, bool)]
    cands = objs(20, 70, 0.2)
    pos2 = np.vstack([exemplars, acc2])
    np.testing.assert_array_equal(score_objects(cands, pos2, rej2, mask), prior_score(cands, pos2))
    # With telling decisions the score changes, and small candidates gain over large ones.
    both = np.vstack([cands, objs(20, 140, 0.3)])
    s, p = score_objects(both, pos, rejected, mask), prior_score(both, pos)
    assert s[:20].mean() - s[20:].mean() > p[:20].mean() - p[20:].mean() + 0.1
    # Too few decisions: the prior alone.
    assert not learnt_helps(exemplars, accepted[:2], rejected, pa[:2], pr)


def test_redraw_count_is_half_with_a_floor_and_a_cap_per_area():
    """A backend redraws the better half of the candidates, at least 500, at most 400 per Mpx."""
    from napari_microseg.core.fewshot.session import redraw_count

    assert redraw_count(300, 512 * 512) == 300  # few: all of them
    assert redraw_count(2000, 512 * 512) == 500  # the floor beats the cap on a small image
    assert redraw_count(2800, 2048 * 2048) == 1400  # half
    assert redraw_count(8000, 2048 * 2048) == 1678  # at most 400 per Mpx (6,000-8,000 on busy Ti frames)
