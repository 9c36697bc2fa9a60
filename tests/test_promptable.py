"""The built-in promptable model: shipped weights, crop logic, fine-tuning, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_microseg.core.promptable import CropConfig, PromptableBackend, PromptUNet
from napari_microseg.core.promptable.backend import CARD_FILE, RESOURCE, WEIGHTS_FILE
from napari_microseg.core.promptable.crops import CropLogits, Window, square_window
from napari_microseg.core.promptable.data import Augment
from napari_microseg.core.promptable.training import train_promptable
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.baselines import OtsuFloodBackend
from napari_microseg.core.prompting.eval_data import Sample
from napari_microseg.core.prompting.evaluation import evaluate_clicks
from napari_microseg.core.prompting.registry import make_backend


class Channel(torch.nn.Module):
    """A stand-in network: logits = ``scale * (input channel - offset)``."""

    def __init__(self, channel: int, offset: float = 0.5, scale: float = 10.0):
        super().__init__()
        self.channel, self.offset, self.scale = channel, offset, scale

    def forward(self, x):
        return self.scale * (x[:, self.channel : self.channel + 1] - self.offset)


def _backend(channel, offset=0.5, **kw):
    return PromptableBackend(Channel(channel, offset), CropConfig(), **kw)


# -- the shipped model -------------------------------------------------------------


def test_shipped_model_loads_and_segments_a_dark_disc():
    from importlib import resources

    folder = resources.files("napari_microseg").joinpath(*RESOURCE)
    weights = folder.joinpath(WEIGHTS_FILE)
    assert weights.is_file()
    assert weights.stat().st_size <= 20 * 2**20
    card = json.loads(folder.joinpath(CARD_FILE).read_text())
    for key in ("training_data", "recipe", "command", "git_commit", "validation", "crop",
                "normalisation"):
        assert key in card, key
    be = make_backend("microseg-promptable")
    assert isinstance(be, PromptableBackend) and not be.needs_embedding
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:200, :300]
    disc = np.hypot(rr - 90, cc - 140) <= 9
    image = np.clip(0.6 - 0.3 * disc + rng.normal(0, 0.05, disc.shape), 0, 1).astype(np.float32)
    be.set_image(image)
    pred = be.predict(Prompts([[90, 140]], [1]))
    assert pred.mask.shape == image.shape and 0 <= pred.score <= 1
    inter, union = (pred.mask & disc).sum(), (pred.mask | disc).sum()
    assert inter / union > 0.7


# -- crops at image borders (identity-scale stand-in networks) -----------------------


@pytest.mark.parametrize(
    "click", [(0, 0), (0, 299), (199, 0), (199, 299), (100, 0), (0, 150), (5, 297), (120, 150)]
)
def test_click_disc_is_placed_exactly_at_corners_and_edges(click):
    """The positive-click channel, thresholded, comes back as a disc centred on the click."""
    be = _backend(channel=2)
    be.set_image(np.zeros((200, 300), np.float32))
    pred = be.predict(Prompts([click], [1]))
    win = be.last_windows[-1]
    assert win.side == 64 and be.last_input_shapes == [(1, 6, 64, 64)]
    assert 0 <= win.r0 <= 200 - 64 and 0 <= win.c0 <= 300 - 64  # shifted inside
    rr, cc = np.mgrid[:200, :300]
    sigma = be.crop.click_sigma
    expected = np.exp(-((rr - click[0]) ** 2 + (cc - click[1]) ** 2) / (2 * sigma**2)) > 0.5
    np.testing.assert_array_equal(pred.mask, expected)


def test_window_larger_than_image_is_padded_and_cut_back():
    """Validity channel as the mask: exactly the image, however small."""
    be = _backend(channel=1)
    be.set_image(np.zeros((40, 50), np.float32))
    pred = be.predict(Prompts([[39, 0]], [1]))
    assert pred.mask.shape == (40, 50) and pred.mask.all()
    win = be.last_windows[-1]
    assert win.r0 < 0 and win.c0 < 0 and win.side >= 64


@pytest.mark.parametrize(
    "box", [(-5, -7, 20, 30), (180, 250, 199, 299), (10, 280, 60, 320), (50, 60, 51, 62)]
)
def test_box_is_clipped_to_the_image(box):
    """An all-object network gives exactly the box, clipped to the image."""
    be = _backend(channel=1, offset=-1.0)  # logits > 0 everywhere
    be.set_image(np.zeros((200, 300), np.float32))
    pred = be.predict(Prompts(box=np.asarray(box, float)))
    expected = np.zeros((200, 300), bool)
    expected[max(box[0], 0) : box[2] + 1, max(box[1], 0) : box[3] + 1] = True
    np.testing.assert_array_equal(pred.mask, expected)
    assert len(be.last_windows) == 1  # a box window never grows


def test_click_window_grows_while_the_mask_runs_into_its_edge():
    be = _backend(channel=1, offset=-1.0)
    be.set_image(np.zeros((1000, 1000), np.float32))
    be.predict(Prompts([[500, 500]], [1]))
    assert [w.side for w in be.last_windows] == [64, 128, 256, 512]
    assert all(s == (1, 6, 64, 64) for s in be.last_input_shapes)
    be.set_image(np.zeros((100, 100), np.float32))
    be.predict(Prompts([[50, 50]], [1]))
    assert [w.side for w in be.last_windows] == [64, 128]  # stops once it holds the image


def test_previous_logits_follow_the_object_into_a_new_window():
    """Previous-mask channel as the mask: the old mask comes back in the new window."""
    be = _backend(channel=5)
    be.set_image(np.zeros((300, 300), np.float32))
    old = Window(100, 100, 64)
    logits = np.full((64, 64), -20.0, np.float32)
    logits[20:30, 25:40] = 20.0
    prompts = Prompts([[125, 130], [180, 180]], [1, 0], mask_logits=CropLogits(old, logits))
    pred = be.predict(prompts)
    assert be.last_windows[-1] != old
    expected = np.zeros((300, 300), bool)
    expected[120:130, 125:140] = True
    assert (pred.mask ^ expected).sum() <= 0.1 * expected.sum()


def test_square_window_is_shifted_inside():
    assert square_window((0, 0), 64, (512, 512)) == Window(0, 0, 64)
    assert square_window((511, 511), 64, (512, 512)) == Window(448, 448, 64)
    assert square_window((10, 10), 64, (20, 30)).side == 64


# -- cost does not depend on the image size -------------------------------------------


def test_network_input_is_the_same_for_512_and_8192_images():
    be = PromptableBackend(PromptUNet(widths=(8, 16, 32)))
    shapes = {}
    for n in (512, 8192):
        be.set_image(np.zeros((n, n), np.float32))  # calloc'd: no page is touched
        runs = []
        for prompts in (Prompts([[300, 200]], [1]), Prompts(box=[280, 190, 320, 215])):
            be.predict(prompts)
            runs.append((be.last_input_shapes, [w.side for w in be.last_windows]))
        shapes[n] = runs
    assert shapes[512] == shapes[8192]
    assert all(s == (1, 6, 64, 64) for s in shapes[512][0][0])


# -- training --------------------------------------------------------------------------


def _discs(seed: int, size: int = 160, n: int = 10):
    """Noisy dark discs on an uneven background with dark streaks (not objects)."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:size, :size]
    img = 0.6 + 0.15 * np.sin(rr / 23.0 + seed) * np.cos(cc / 31.0)
    lab = np.zeros((size, size), np.int32)
    k = 0
    for _ in range(60):
        r0, c0, rad = rng.uniform(12, size - 12), rng.uniform(12, size - 12), rng.uniform(4, 10)
        d = np.hypot(rr - r0, cc - c0)
        if (lab[d <= rad + 3] > 0).any():
            continue
        k += 1
        lab[d <= rad] = k
        img -= 0.25 * (d <= rad)
        if k == n:
            break
    for _ in range(3):
        r = int(rng.integers(0, size))
        img[max(r - 1, 0) : r + 2, :] -= 0.2
    img = ndi.gaussian_filter(img, 1.0) + rng.normal(0, 0.12, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), lab


def test_fine_tuning_runs_and_resumes(tmp_path):
    samples = [_discs(s, size=96, n=4) for s in range(2)]
    kw = dict(steps_per_epoch=2, batch_size=4, out_dir=tmp_path, init="default", log=None,
              threads=None)
    path = train_promptable(samples, epochs=1, **kw)
    be = PromptableBackend.from_checkpoint(path)
    assert be.crop == PromptableBackend.load_default().crop
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2]
    train_promptable(samples, epochs=2, resume=True, **kw)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]


def test_a_model_trained_here_beats_otsu_after_one_click(tmp_path):
    """CI-sized: 100 batches of 8 (about 15 s on 2 cores) already beat the baseline.

    (About 0.75 against 0.37 for seeds 0-2; a tinier net or a higher learning rate
    sometimes collapses to an empty mask in so few steps.)
    """
    torch.manual_seed(0)
    train = [_discs(s) for s in range(12)]
    val = [Sample(str(s), *_discs(100 + s)) for s in range(4)]
    path = train_promptable(
        train, epochs=1, steps_per_epoch=100, batch_size=8, out_dir=tmp_path,
        widths=(16, 32, 64), lr=1e-3, p_box=0.2, threads=None, log=None, seed=0,
        crop=CropConfig(max_side=128),
        augment=Augment(scale=(0.8, 1.25), noise=0.03, invert=0.0),
    )
    ours = evaluate_clicks(PromptableBackend.from_checkpoint(path), val, "point", 0)
    otsu = evaluate_clicks(OtsuFloodBackend(), val, "point", 0)
    assert ours["n_objects"] == otsu["n_objects"] == 40
    assert ours["mean_iou"][0] > otsu["mean_iou"][0] + 0.05, (ours["mean_iou"], otsu["mean_iou"])
