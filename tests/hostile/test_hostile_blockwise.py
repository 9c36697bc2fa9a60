"""Blockwise ``microseg predict`` of huge images (issue 13): same result as whole-image prediction.

The block threshold and block size are monkeypatched small, so a few-hundred-pixel
image goes through the blockwise path (lazy regions, border merging, global
minimum size, tile-by-tile TIFF writing) and can be compared with the
whole-image path pixel for pixel.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from napari_microseg.core.labels_io import read_labels, write_labels_tiles
from napari_microseg.core.memmap_regions import MemmapRegions
from napari_microseg.core.models import ModelCard, blockwise, build_model, register_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = [{"id": 2, "name": "<100> loop", "color": "#3cb44b"},
           {"id": 4, "name": "void", "color": "#f58231"}]


def _smooth_noise() -> np.ndarray:
    img = ndi.gaussian_filter(np.random.default_rng(0).normal(size=(300, 270)), 4)
    return (img - img.min()) / np.ptp(img)


@pytest.fixture
def random_model(tmp_path, monkeypatch):
    """A tiny two-class U-Net (random convolutions, real 3x3 context): blobs of both classes.

    Its head thresholds one feature map that follows the image: class 2 above the
    feature's 70th percentile, class 4 below its 30th.
    """
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="rand-seg", architecture="defectsegnet", activation="softmax",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1}, classes=CLASSES,
                     tile=64, halo=8)
    torch.manual_seed(3)
    net = build_model(card).eval()
    feats = {}
    hook = net.head.register_forward_hook(lambda m, i, o: feats.setdefault("f", i[0]))
    with torch.no_grad():
        net(torch.from_numpy(_smooth_noise()[None, None, :200, :200].astype(np.float32)))
    hook.remove()
    hi, lo = np.percentile(feats["f"][0, 1].numpy(), [70, 30])
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[1, 1, 1, 1] = 500.0
        net.head.bias[1] = -500.0 * hi
        net.head.weight[2, 1, 1, 1] = -500.0
        net.head.bias[2] = 500.0 * lo
    register_model(net, card)
    return card


@pytest.fixture
def big_image(tmp_path):
    img = (_smooth_noise() * 255).astype(np.uint8)
    path = tmp_path / "in" / "big.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, img)
    return path


def _run(cli, image, out, *extra):
    r = cli("predict", "--model", "rand-seg", image, "--out", out, "--threshold", "0.4",
            "--batch-size", "1", *extra)
    assert r.rc == 0, r.err
    return r


@pytest.mark.parametrize(("extra", "lazy"), [((), False), (("--min-size-px", "40"), True)])
def test_blockwise_cc_equals_whole_image(cli, random_model, big_image, tmp_path, monkeypatch,
                                         extra, lazy):
    _run(cli, big_image, tmp_path / "whole", *extra, "--probabilities")
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(blockwise, "BLOCK", 96)
    reads = []
    if lazy:  # opened lazily: regions come through a short-lived memmap of the TIFF
        from napari_microseg.core import reading

        monkeypatch.setattr(reading, "LAZY_PIXELS", 1000)
        get = MemmapRegions.__getitem__
        monkeypatch.setattr(MemmapRegions, "__getitem__",
                            lambda self, key: reads.append(key) or get(self, key))
    r = _run(cli, big_image, tmp_path / "blocks", *extra, "--probabilities")
    assert bool(reads) == lazy
    whole = read_labels(tmp_path / "whole" / "big_labels.tif")
    blocks = read_labels(tmp_path / "blocks" / "big_labels.tif")
    assert blocks.metadata.get("blockwise") is True  # really went through the blockwise path
    assert tifffile.TiffFile(tmp_path / "blocks" / "big_labels.tif").pages[0].is_tiled
    lab = whole.labels
    cuts = blockwise.block_cuts(300, 64, 8, 96)
    assert len(cuts) > 2
    # objects cross the block borders, so merging is exercised
    crossing = (set(np.unique(lab[cuts[1] - 1])) & set(np.unique(lab[cuts[1]]))) - {0}
    assert crossing
    assert len(set(whole.instance_classes.values())) == 2
    np.testing.assert_array_equal(blocks.labels, lab)
    assert blocks.instance_classes == whole.instance_classes
    side = json.loads((tmp_path / "blocks" / "big_labels.labels.json").read_text())
    assert side["n_instances"] == len(whole.instance_classes)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "blocks" / "big_prob.tif"),
                                  tifffile.imread(tmp_path / "whole" / "big_prob.tif"))
    assert str(len(whole.instance_classes)) + " objects" in r.out
    assert not any(p.name.startswith(".microseg-blocks") for p in (tmp_path / "blocks").iterdir())


def test_blockwise_with_cleaning_agrees_within_tolerance(cli, random_model, big_image, tmp_path,
                                                         monkeypatch):
    extra = ("--open", "1", "--close", "2", "--smooth", "1")
    _run(cli, big_image, tmp_path / "whole", *extra)
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(blockwise, "BLOCK", 96)
    _run(cli, big_image, tmp_path / "blocks", *extra)
    a = read_labels(tmp_path / "whole" / "big_labels.tif").labels > 0
    rec = read_labels(tmp_path / "blocks" / "big_labels.tif")
    assert rec.metadata.get("blockwise") is True
    b = rec.labels > 0
    assert (a != b).mean() < 0.001


def test_blockwise_watershed_agrees_within_tolerance(cli, random_model, big_image, tmp_path,
                                                     monkeypatch):
    extra = ("--instances", "watershed", "--min-distance", "3")
    _run(cli, big_image, tmp_path / "whole", *extra)
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(blockwise, "BLOCK", 96)
    _run(cli, big_image, tmp_path / "blocks", *extra)
    whole = read_labels(tmp_path / "whole" / "big_labels.tif")
    blocks = read_labels(tmp_path / "blocks" / "big_labels.tif")
    assert blocks.metadata.get("blockwise") is True
    np.testing.assert_array_equal(blocks.labels > 0, whole.labels > 0)
    n_whole, n_blocks = len(whole.instance_classes), len(blocks.instance_classes)
    assert abs(n_blocks - n_whole) <= max(2, 0.05 * n_whole)


def test_blockwise_with_resampling_agrees_within_tolerance(cli, tmp_path, monkeypatch,
                                                           random_model, big_image):
    from napari_microseg.core.models import load_model

    model, card = load_model("rand-seg")
    card.pixel_size_nm = 1.0  # the image (1.5 nm/px) is resampled to the model's scale
    register_model(model, card, overwrite=True)
    _run(cli, big_image, tmp_path / "whole", "--pixel-size", "1.5")
    monkeypatch.setattr(blockwise, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(blockwise, "BLOCK", 96)
    _run(cli, big_image, tmp_path / "blocks", "--pixel-size", "1.5")
    a = read_labels(tmp_path / "whole" / "big_labels.tif").labels > 0
    rec = read_labels(tmp_path / "blocks" / "big_labels.tif")
    assert rec.metadata.get("blockwise") is True
    assert a.mean() > 0.1
    # regions are resampled alone: sub-pixel shifts move object borders by at most ~1 px
    diff = (rec.labels > 0) != a
    border = ndi.binary_dilation(a, iterations=2) & ~ndi.binary_erosion(a, iterations=2)
    assert (diff & ~border).mean() < 0.002, (diff.mean(), (diff & ~border).mean())


def test_tiled_labels_writer_round_trips(tmp_path):
    from napari_microseg.core.calibration import PixelSize

    lab = np.arange(40 * 70, dtype=np.uint32).reshape(40, 70) % 70000
    tiles = (lab[y : y + 16, x : x + 16] for y in range(0, 40, 16) for x in range(0, 70, 16))
    ps = PixelSize.isotropic(0.5, "user")
    write_labels_tiles(tmp_path / "t.tif", tiles, shape=lab.shape, dtype=np.uint32,
                       n_instances=int((np.unique(lab) > 0).sum()), tile=16, pixel_size=ps)
    rec = read_labels(tmp_path / "t.tif")
    np.testing.assert_array_equal(rec.labels, lab)
    assert rec.pixel_size.x_nm == pytest.approx(0.5)


def test_sidecar_streams_instance_classes_in_chunks(tmp_path, monkeypatch):
    from napari_microseg.core import labels_io
    from napari_microseg.core.classes import ClassTable
    from napari_microseg.core.errors import LabelsError

    monkeypatch.setattr(labels_io, "SIDECAR_CHUNK", 2)
    table = ClassTable.from_list(CLASSES)
    lab = np.zeros((8, 8), np.uint16)
    lab[0, :6] = [0, 1, 2, 3, 4, 5]
    inst = {5: 4, 1: 2, 2: 2, 3: 4, 4: 2}
    labels_io.write_labels(tmp_path / "d.tif", lab, instance_classes=inst, classes=table)
    side = json.loads((tmp_path / "d.labels.json").read_text())
    assert side["instance_classes"] == {str(k): v for k, v in sorted(inst.items())}
    assert list(side["instance_classes"]) == ["1", "2", "3", "4", "5"]
    assert read_labels(tmp_path / "d.tif").instance_classes == inst
    labels_io.write_labels(tmp_path / "e.tif", lab * 0, instance_classes={}, classes=table)
    assert json.loads((tmp_path / "e.labels.json").read_text())["instance_classes"] == {}
    tiles = iter([lab])
    with pytest.raises(LabelsError, match="Instance 2 has class 7"):
        write_labels_tiles(tmp_path / "f.tif", tiles, shape=lab.shape, dtype=np.uint16,
                           n_instances=5, tile=16, classes=table,
                           instance_classes=(np.arange(1, 6), np.array([2, 7, 4, 2, 4])))
