"""Blockwise measurement of huge labels (issue 13): the same table as the whole image, exactly.

The blockwise threshold and block side are monkeypatched small so a ~600 x 700
image is measured in 128 px blocks, with objects crossing block borders (read
whole), touching the image border, and ids far apart (large ids).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import disk, ellipse, polygon, rectangle

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.classes import ClassTable
from napari_microseg.core.labels_io import write_labels, write_labels_tiles
from napari_microseg.core.measure import MeasureSettings, blockwise, measure_image, measure_objects
from napari_microseg.core.memmap_regions import MemmapRegions

SHAPE = (600, 700)
BLOCK = 128


def _scene(seed: int = 0):
    """Labels with border-crossing, image-edge and concave objects, an image and classes."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(SHAPE, np.uint32)
    k = 0

    def put(rr, cc):
        nonlocal k
        k += 1
        lab[rr, cc] = 7 * k + 100_000  # ids far apart, not sequential
    # small discs on a jittered grid: many straddle the 128 px block borders
    for y in range(10, SHAPE[0], 37):
        for x in range(12, SHAPE[1], 41):
            r = rng.uniform(2, 9)
            put(*disk((y + rng.integers(-5, 6), x + rng.integers(-5, 6)), r, shape=SHAPE))
    # large objects spanning several blocks, one touching each image border
    put(*ellipse(300, 350, 90, 200, shape=SHAPE, rotation=0.4))
    put(*disk((0, 250), 40, shape=SHAPE))  # top edge
    put(*disk((599, 500), 30, shape=SHAPE))  # bottom edge
    put(*rectangle((200, 0), extent=(60, 20), shape=SHAPE))  # left edge
    put(*disk((450, 699), 55, shape=SHAPE))  # right edge
    put(*polygon([100, 250, 250, 100, 120], [500, 690, 520, 560, 650], shape=SHAPE))  # concave
    # an object in two pieces in different blocks (one id, two components)
    lab[500:505, 20:30] = 9
    lab[560:570, 600:603] = 9
    img = rng.integers(0, 60000, SHAPE).astype(np.uint16)
    ids = np.unique(lab[lab > 0])
    inst = {int(i): int(1 + (i % 3)) for i in ids[::2]}
    return lab, img, inst


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 10_000)
    monkeypatch.setattr(blockwise, "BLOCK", BLOCK)


def _whole(lab, img, inst, ps, mask=None):
    return measure_objects(lab, ps, intensity=img, instance_classes=inst, classes=ClassTable(),
                           analysis_mask=mask)


@pytest.mark.parametrize("calibrated", [True, False])
def test_blockwise_table_equals_whole_image(calibrated):
    lab, img, inst = _scene()
    ps = PixelSize.isotropic(0.37, "user", "test") if calibrated else PixelSize.uncalibrated()
    whole = _whole(lab, img, inst, ps)
    blocks = blockwise.measure_objects_blockwise(lab, ps, intensity=img, instance_classes=inst,
                                                 classes=ClassTable(), block=BLOCK)
    # many objects cross block borders, several touch the image border
    assert whole["touches_image_edge"].sum() >= 5
    assert len(whole) > 200
    pd.testing.assert_frame_equal(blocks, whole, check_exact=True)
    assert blocks.attrs == whole.attrs


def test_blockwise_with_mask_equals_whole_image():
    """Excluded pixels (an SEM-bar-like strip and a hole) and centroid_in_analysed, exactly."""
    lab, img, inst = _scene(1)
    mask = np.ones(SHAPE, bool)
    mask[540:, :] = False
    mask[250:262, 300:420] = False
    ps = PixelSize.isotropic(2.0, "user", "test")
    whole = _whole(lab, img, inst, ps, mask)
    blocks = blockwise.measure_objects_blockwise(lab, ps, intensity=img, instance_classes=inst,
                                                 classes=ClassTable(), analysis_mask=mask,
                                                 block=BLOCK)
    assert whole["touches_excluded"].any() and not whole["centroid_in_analysed"].all()
    pd.testing.assert_frame_equal(blocks, whole, check_exact=True)
    assert blocks.attrs == whole.attrs


def test_blockwise_reads_a_lazy_array_region_by_region():
    """Only regions are read; never the whole labels or image."""
    lab, img, inst = _scene(2)

    class Regions:
        def __init__(self, a):
            self.a, self.shape, self.ndim, self.dtype, self.biggest = a, a.shape, a.ndim, a.dtype, 0

        def __getitem__(self, key):
            out = self.a[key]
            self.biggest = max(self.biggest, out.size)
            return out.copy()

        def __array__(self, *a, **k):
            raise AssertionError("the whole array was read")

    rl, ri = Regions(lab), Regions(img)
    t = blockwise.measure_objects_blockwise(rl, None, intensity=ri, instance_classes=inst,
                                            block=BLOCK)
    pd.testing.assert_frame_equal(t, _whole(lab, img, inst, None), check_exact=True)
    assert rl.biggest < lab.size and ri.biggest < img.size


def test_blockwise_empty_and_negative_labels():
    empty = np.zeros((300, 300), np.uint16)
    t = blockwise.measure_objects_blockwise(empty, None, intensity=empty, block=BLOCK)
    w = measure_objects(empty, None, intensity=empty)
    pd.testing.assert_frame_equal(t, w, check_exact=True)
    assert t.attrs == w.attrs
    neg = np.zeros((300, 300), np.int32)
    neg[290, 290] = -3
    from napari_microseg.core.errors import LabelsError

    with pytest.raises(LabelsError, match="negative"):
        blockwise.measure_objects_blockwise(neg, None, block=BLOCK)


@pytest.mark.parametrize("edges", ["include", "exclude", "guard"])
def test_measure_image_switches_to_blockwise_with_same_statistics(small_blocks, monkeypatch, edges):
    lab, img, inst = _scene(3)
    ps = PixelSize.isotropic(0.5, "user", "test")
    settings = MeasureSettings(edges=edges, guard=10.0 if edges == "guard" else 0.0, thickness_nm=80.0)
    calls = []
    real = blockwise.measure_objects_blockwise
    monkeypatch.setattr(blockwise, "measure_objects_blockwise",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    got = measure_image(lab, ps, intensity=img, instance_classes=inst, settings=settings)
    assert calls
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 10**12)
    ref = measure_image(lab, ps, intensity=img, instance_classes=inst, settings=settings)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(got.table, ref.table, check_exact=True)
    pd.testing.assert_frame_equal(got.summary, ref.summary, check_exact=True)
    assert np.array_equal(got.counting.counted, ref.counting.counted)
    assert got.counting.reference_area_px == ref.counting.reference_area_px


def _tiles(lab, tile=256):
    for y in range(0, lab.shape[0], tile):
        for x in range(0, lab.shape[1], tile):
            yield lab[y : y + tile, x : x + tile]


@pytest.mark.parametrize("layout", ["tiled", "uncompressed"])
def test_cli_measure_blockwise_writes_the_same_csv(small_blocks, monkeypatch, cli, tmp_path, layout):
    """``microseg measure`` on lazily read labels/image gives the identical CSV files."""
    from napari_microseg.core import reading
    from napari_microseg.core.measure import export

    lab, img, inst = _scene(4)
    ps = PixelSize.isotropic(0.8, "user", "test")
    ip, lp = tmp_path / "img.tif", tmp_path / "labels.tif"
    if layout == "tiled":  # as `microseg predict` writes huge labels
        tifffile.imwrite(ip, img, tile=(256, 256), compression="zlib")
        write_labels_tiles(lp, _tiles(lab), shape=lab.shape, dtype=np.uint32,
                           n_instances=int(np.unique(lab[lab > 0]).size),
                           instance_classes=inst, pixel_size=ps)
    else:  # one contiguous strip: read through a short-lived memmap
        tifffile.imwrite(ip, img)
        write_labels(lp, lab, instance_classes=inst, pixel_size=ps)
        tifffile.imwrite(lp, lab)  # write_labels compresses: rewrite raw (sidecar kept)
    # a fixed timestamp, so the files can be compared byte for byte
    from datetime import datetime, timezone

    real_prov = export.make_provenance
    fixed = datetime(2026, 1, 1, tzinfo=timezone.utc)
    monkeypatch.setattr("napari_microseg.cli.measure.make_provenance",
                        lambda **k: real_prov(**k, timestamp=fixed))
    args = ["--pixel-size", "0.8", "--edges", "guard", "--guard-nm", "20", "--thickness-nm", "50"]
    monkeypatch.setattr(reading, "LAZY_PIXELS", 10_000)  # both files open lazily
    seen = []
    real = blockwise.measure_objects_blockwise
    monkeypatch.setattr(blockwise, "measure_objects_blockwise",
                        lambda lab_, *a, **k: seen.append((lab_, k["intensity"])) or real(lab_, *a, **k))
    r = cli("measure", ip, lp, "--out", tmp_path / "blocks.csv", *args)
    assert r.rc == 0, r.err
    kind = MemmapRegions if layout == "uncompressed" else object
    assert len(seen) == 1 and all(not isinstance(a, np.ndarray) and isinstance(a, kind) for a in seen[0])
    monkeypatch.setattr(reading, "LAZY_PIXELS", 2**27)
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 10**12)
    r = cli("measure", ip, lp, "--out", tmp_path / "whole.csv", *args)
    assert r.rc == 0, r.err
    for a, b in (("blocks.csv", "whole.csv"), ("blocks_summary.csv", "whole_summary.csv")):
        ta, tb = (tmp_path / a).read_text(), (tmp_path / b).read_text()
        assert ta.replace("blocks", "whole") == tb
        assert len(ta.splitlines()) > 100 or "summary" in a


def test_blockwise_accepts_ids_too_large_for_the_whole_image_path():
    """uint32 ids above the whole-image limit (50 M) measure as their sequential relabelling."""
    lab, img, _ = _scene(5)
    ids = np.unique(lab[lab > 0])
    seq = np.where(lab > 0, np.searchsorted(ids, lab) + 1, 0).astype(np.uint32)
    huge = np.where(lab > 0, 4_000_000_000 - seq.astype(np.int64) * 3, 0).astype(np.uint32)
    from napari_microseg.core.errors import LabelsError

    with pytest.raises(LabelsError, match="too large"):
        measure_objects(huge, None)
    ref = measure_objects(seq, None, intensity=img)
    got = blockwise.measure_objects_blockwise(huge, None, intensity=img, block=BLOCK)
    got_order = np.argsort(-got["label"].to_numpy(), kind="stable")  # huge ids run backwards
    back = got.iloc[got_order].reset_index(drop=True)
    back["label"] = (4_000_000_000 - back["label"]) // 3
    pd.testing.assert_frame_equal(back.drop(columns="label"), ref.drop(columns="label"),
                                  check_exact=True)
    assert np.array_equal(back["label"], ref["label"])


def test_guard_frame_without_mask_is_the_full_mask_frame():
    """Counting with a guard and no mask (no image-sized array) equals an all-analysed mask."""
    from napari_microseg.core.measure import count_objects

    lab, img, inst = _scene(6)
    t = measure_objects(lab, None)
    for g in (0.0, 3.0, 40.0):
        a = count_objects(t, edges="guard", guard=g)
        b = count_objects(t, edges="guard", guard=g, analysis_mask=np.ones(SHAPE, bool))
        assert np.array_equal(a.counted, b.counted) and a.reference_area_px == b.reference_area_px
        assert a.counted.dtype == bool and 0 < a.counted.sum() <= len(t)
