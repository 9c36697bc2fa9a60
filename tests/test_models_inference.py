"""Tiled inference: stitching, tiled vs untiled, TTA, resampling, cancel, instance merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from torch import nn

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.models import (
    InferenceCancelled,
    ModelCard,
    build_model,
    predict_instances,
    predict_probabilities,
    to_probabilities,
)
from napari_microseg.core.models.tiles import axis_windows, tile_grid
from napari_microseg.core.prompting.normalize import normalize_image
from napari_microseg.core.synth import generate

# Tiny models gain nothing from threads; on a shared CPU, waits for a busy core dominate.
pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = [{"id": 1, "name": "loop", "color": "#ff0000"}]


def card(activation="none", classes=CLASSES, **kw):
    kw.setdefault("tile", 64)
    kw.setdefault("halo", 8)
    return ModelCard(name="t", architecture="defectsegnet", classes=classes, activation=activation, **kw)


class Constant(nn.Module):
    def __init__(self, value=0.3, k=1):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.value, self.k = value, k

    def forward(self, x):
        return torch.full((x.shape[0], self.k, *x.shape[2:]), self.value) + 0 * self.w


class Identity(nn.Module):
    def __init__(self, multiple=1):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.input_multiple = multiple
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return x * self.w


class Conv(nn.Module):
    """One fixed 3x3 convolution (zero padding), one channel in and out."""

    def __init__(self, kernel):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.as_tensor(kernel, dtype=torch.float32)[None, None])

    def forward(self, x):
        return self.conv(x)


def local_net(seed=0):
    """Three 3x3 convs, no pooling: receptive field radius 3 px."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()


@pytest.fixture(scope="module")
def micrograph():
    return generate("tem-loops", shape=(128, 128), seed=1).image


def test_axis_windows_cover_every_pixel_once_with_halo_margin():
    for length, tile, halo in [(700, 64, 8), (900, 100, 13), (65, 64, 8), (64, 64, 8), (30, 64, 8)]:
        wins = axis_windows(length, tile, halo)
        owner = np.zeros(length, int)
        for s, e, k0, k1 in wins:
            assert e - s == min(tile, length) and 0 <= s and e <= length
            owner[k0:k1] += 1
            if s > 0:
                assert k0 - s >= halo
            if e < length:
                assert e - k1 >= halo
        assert np.all(owner == 1)


def test_constant_model_gives_exactly_constant_map_without_seams():
    image = np.random.default_rng(0).integers(0, 255, (700, 900), dtype=np.uint8)
    for tile, halo, bs in [(64, 8, 4), (100, 13, 3)]:
        prob = predict_probabilities(Constant(0.3), card(), image, tile=tile, halo=halo, batch_size=bs)
        assert prob.shape == (1, 700, 900) and prob.dtype == np.float32
        assert np.all(prob == np.float32(0.3))


def test_identity_model_stitches_every_tile_in_place():
    image = np.random.default_rng(1).integers(0, 60000, (257, 190), dtype=np.uint16)
    c = card(normalization={"method": "fixed", "range": [0, 65535]})
    prob = predict_probabilities(Identity(multiple=8), c, image, tile=64, halo=8)
    np.testing.assert_allclose(prob[0], image / 65535.0, atol=1e-6)


def test_tiled_agrees_with_untiled_on_an_image_that_fits_one_tile(micrograph):
    net = build_model(card("sigmoid", params={"growth": 4, "depth": 2, "layers_per_block": 2},
                           tile=128, halo=16)).eval()
    c = card("sigmoid", params={"growth": 4, "depth": 2, "layers_per_block": 2}, tile=128, halo=16)
    tiled = predict_probabilities(net, c, micrograph)
    x = torch.from_numpy(normalize_image(micrograph))[None, None]
    with torch.no_grad():
        direct = torch.sigmoid(net(x))[0].numpy()
    np.testing.assert_allclose(tiled, direct, atol=1e-5)


def test_small_tiles_with_enough_halo_match_one_tile():
    image = np.random.default_rng(2).normal(size=(100, 120)).astype(np.float32)
    net = local_net()
    c = card("softmax", normalization={"method": "fixed", "range": [-3, 3]}, tile=128, halo=0)
    whole = predict_probabilities(net, c, image)
    tiled = predict_probabilities(net, c, image, tile=32, halo=4, batch_size=3)
    assert len(tile_grid(image.shape, 32, 4)) > 9
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    one = predict_probabilities(net, c, image, tile=32, halo=4, batch_size=1)
    np.testing.assert_allclose(one, tiled, atol=1e-6)


def test_tta_of_a_symmetric_op_changes_nothing():
    image = np.random.default_rng(3).random((60, 50)).astype(np.float32)
    c = card(normalization={"method": "fixed", "range": [0, 1]}, tile=64, halo=8)
    sym = Conv([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_allclose(
        predict_probabilities(sym, c, image, tta=True), predict_probabilities(sym, c, image),
        atol=1e-5)


def test_tta_averages_the_eight_flips_and_rotations():
    image = np.random.default_rng(4).random((48, 48)).astype(np.float32)
    c = card(normalization={"method": "fixed", "range": [0, 1]}, tile=64, halo=8)
    k = np.array([[0, 1, 0], [0, 0, 5], [0, 0, 0]], np.float32)
    views = [np.rot90(f, r) for f in (k, k[:, ::-1]) for r in range(4)]
    symmetrised = np.mean(views, axis=0)
    plain = predict_probabilities(Conv(k), c, image)
    tta = predict_probabilities(Conv(k), c, image, tta=True)
    want = predict_probabilities(Conv(symmetrised), c, image)
    np.testing.assert_allclose(tta, want, atol=1e-5)
    assert np.abs(plain - want).max() > 0.1


def test_resampling_to_the_cards_scale_and_back():
    image = np.tile(np.linspace(0, 255, 150, dtype=np.float32), (100, 1))
    net = Identity(multiple=4)
    c = card(normalization={"method": "fixed", "range": [0, 255]}, pixel_size_nm=1.0, tile=256,
             halo=8)
    prob = predict_probabilities(net, c, image, pixel_size=PixelSize.isotropic(0.5, "user"))
    assert prob.shape == (1, 100, 150)
    assert net.seen[0][2:] == (52, 76)  # 50 x 75 rows/cols, padded to multiples of 4
    np.testing.assert_allclose(prob[0, :, 5:-5], image[:, 5:-5] / 255.0, atol=0.01)
    net.seen.clear()
    predict_probabilities(net, c, image, pixel_size=PixelSize.isotropic(1.004, "user"))
    assert net.seen[0][2:] == (100, 152)  # within 1 %: not resampled
    net.seen.clear()
    predict_probabilities(net, c, image, pixel_size=PixelSize.uncalibrated())
    assert net.seen[0][2:] == (100, 152)


def test_cancel_between_batches_and_progress():
    image = np.zeros((200, 200), np.uint8)
    calls = []

    def cancel():
        return len(calls) >= 2

    with pytest.raises(InferenceCancelled, match="cancelled"):
        predict_probabilities(Constant(), card(), image, tile=64, halo=8, batch_size=2,
                              progress=lambda d, t: calls.append((d, t)), cancel=cancel)
    assert calls == [(2, 16), (4, 16)]


def test_grey_model_refuses_colour_image_and_instance_card_is_refused():
    with pytest.raises(MicrosegError, match="grey"):
        predict_probabilities(Constant(), card(), np.zeros((64, 64, 3), np.uint8))
    inst = ModelCard(name="m", architecture="maskrcnn", classes=CLASSES, task="instance")
    with pytest.raises(MicrosegError, match="predict_instances"):
        predict_probabilities(Constant(), inst, np.zeros((64, 64), np.uint8))


def test_wrong_output_channels_raise_clearly():
    with pytest.raises(MicrosegError, match="returned shape"):
        predict_probabilities(Constant(k=3), card(), np.zeros((64, 64), np.uint8))


# -- instances ---------------------------------------------------------------------------


class BlobDetector(nn.Module):
    """A perfect 'detector': every bright connected blob of the tile is one detection."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = []
        for im in x.numpy():
            lab, n = ndi.label(im[0] > 0.5)
            boxes, masks = [], []
            for i, sl in enumerate(ndi.find_objects(lab), start=1):
                boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
                masks.append((lab == i)[None])
            masks = np.array(masks, np.float32).reshape(n, 1, *im.shape[1:])
            out.append({
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                "labels": torch.full((n,), 2, dtype=torch.int64),
                "scores": torch.linspace(0.9, 0.8, n),
                "masks": torch.from_numpy(masks),
            })
        return out


def test_instances_cut_by_tile_borders_come_out_whole_and_once():
    yy, xx = np.mgrid[:300, :300]
    centres = [(40, 40, 10), (150, 150, 30), (60, 88, 8), (250, 100, 20), (100, 260, 25),
               (200, 228, 12)]
    truth = np.zeros((300, 300), np.int32)
    for i, (r, c, rad) in enumerate(centres, start=1):
        truth[(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = i
    image = (truth > 0).astype(np.uint8) * 200
    classes = CLASSES + [{"id": 4, "name": "void", "color": "#00ff00"}]
    c = ModelCard(name="m", architecture="maskrcnn", classes=classes, task="instance",
                  normalization={"method": "fixed", "range": [0, 255]}, tile=96, halo=16)
    pred = predict_instances(BlobDetector(), c, image, batch_size=3)
    assert pred.labels.max() == len(centres)
    for i in range(1, len(centres) + 1):
        ids = np.unique(pred.labels[truth == i])
        assert len(ids) == 1 and ids[0] > 0
        assert np.array_equal(pred.labels == ids[0], truth == i)
    assert set(pred.instance_classes.values()) == {4}
    assert set(pred.scores) == set(range(1, len(centres) + 1))


def test_maskrcnn_end_to_end_on_a_synthetic_micrograph(micrograph):
    c = ModelCard(name="m", architecture="maskrcnn", task="instance", classes=CLASSES,
                  params={"backbone": "resnet18", "min_size": 64, "max_size": 64,
                          "fpn_channels": 16, "representation_size": 32, "mask_channels": 8,
                          "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10,
                          "box_detections_per_img": 5}, tile=64, halo=8)
    torch.manual_seed(0)
    net = build_model(c).eval()
    pred = predict_instances(net, c, micrograph, score_threshold=0.0)
    assert pred.labels.shape == micrograph.shape and pred.labels.dtype == np.int32
    ids = set(np.unique(pred.labels).tolist()) - {0}
    assert ids == set(pred.instance_classes) == set(pred.scores)
    assert ids == set(range(1, len(ids) + 1))
    assert set(pred.instance_classes.values()) <= {1}
    # training mode gives the losses the training code will optimise
    net.train()
    x = torch.from_numpy(normalize_image(micrograph[:64, :64]))[None, None]
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, 10:30, 12:28] = 1
    target = [{"boxes": torch.tensor([[12.0, 10.0, 28.0, 30.0]]), "labels": torch.tensor([1]),
               "masks": mask}]
    losses = net(x, target)
    assert {"loss_classifier", "loss_mask", "loss_box_reg"} <= set(losses)
    sum(losses.values()).backward()
    assert to_probabilities(torch.zeros(1, 2, 4, 4), "softmax").shape == (1, 1, 4, 4)
