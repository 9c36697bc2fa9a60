"""Architectures built from cards: tiny instances end to end on a synthetic micrograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_microseg.core.models import (
    Ensemble,
    ModelCard,
    ModelError,
    build_model,
    ensemble_card,
    load_model,
    predict_probabilities,
    register_model,
)
from napari_microseg.core.models.architectures import input_multiple
from napari_microseg.core.models.defectsegnet import DefectSegNet
from napari_microseg.core.synth import generate

# Tiny models gain nothing from threads; on a shared CPU, waits for a busy core dominate.
pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = [
    {"id": 1, "name": "<111> loop", "color": "#e6194b"},
    {"id": 3, "name": "black dot", "color": "#4363d8"},
]
TINY = {
    "defectsegnet": {"growth": 4, "depth": 2, "layers_per_block": 2},
    "unet": {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
    "unetplusplus": {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
    "fpn": {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_pyramid_channels": 32,
            "decoder_segmentation_channels": 32},
    "deeplabv3plus": {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": 32},
}


@pytest.fixture(scope="module")
def sample():
    return generate("tem-loops", shape=(128, 128), seed=2)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.mark.parametrize("arch", sorted(TINY))
def test_architecture_end_to_end(arch, sample, models_dir):
    activation = "sigmoid" if arch == "defectsegnet" else "softmax"
    card = ModelCard(name=f"tiny-{arch}", architecture=arch, params=TINY[arch], classes=CLASSES,
                     activation=activation, pixel_size_nm=sample.pixel_size.x_nm, tile=64, halo=8)
    torch.manual_seed(0)
    net = build_model(card).eval()
    x = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        assert net(x).shape == (1, card.out_channels, 64, 64)
    prob = predict_probabilities(net, card, sample.image, pixel_size=sample.pixel_size)
    assert prob.shape == (2, 128, 128) and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    if activation == "softmax":
        assert prob.sum(axis=0).max() <= 1 + 1e-5
    assert prob.std() > 0  # the network looked at the image
    # through the registry: same weights, same probabilities
    register_model(net, card)
    loaded, card2 = load_model(card.name, device="cpu")
    assert not loaded.training and card2 == card
    again = predict_probabilities(loaded, card2, sample.image, pixel_size=sample.pixel_size)
    np.testing.assert_allclose(again, prob, atol=1e-6)


def test_defectsegnet_feeds_every_encoder_map_to_every_decoder_layer():
    net = DefectSegNet(1, 1, growth=4, depth=3, layers_per_block=3, up_channels=6)
    assert input_multiple(net) == 8
    skips = [blk.out_channels for blk in net.encoder]
    assert skips == [1 + 12, 13 + 12, 25 + 12]  # dense: input + 3 x growth at every level
    for block, skip in zip(net.decoder, reversed(skips), strict=True):
        ins = [layer[0].in_channels for layer in block.layers]
        assert ins == [6 + skip + i * 4 for i in range(3)]
    assert all(isinstance(u, torch.nn.ConvTranspose2d) for u in net.ups)
    assert net.head.kernel_size == (3, 3)
    assert net(torch.zeros(2, 1, 32, 40)).shape == (2, 1, 32, 40)


def test_defectsegnet_learns_a_mask(sample):
    torch.manual_seed(0)
    net = DefectSegNet(1, 1, growth=4, depth=2, layers_per_block=2)
    img = sample.image[:32, :32].astype(np.float32)
    x = torch.from_numpy((img - img.mean()) / (img.std() + 1e-6))[None, None]
    y = torch.from_numpy((sample.labels[:32, :32] > 0).astype(np.float32))[None, None]
    assert 0 < y.mean() < 1
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ensemble_averages_member_probabilities(sample, models_dir):
    cards, nets = [], []
    for i, act in enumerate(("sigmoid", "softmax")):
        c = ModelCard(name=f"m{i}", architecture="defectsegnet", params=TINY["defectsegnet"],
                      classes=CLASSES, activation=act, tile=64, halo=8)
        torch.manual_seed(i)
        nets.append(build_model(c).eval())
        cards.append(c)
        register_model(nets[-1], c)
    ens_card = ensemble_card("ens", cards)
    ens = Ensemble(list(zip(nets, cards, strict=True))).eval()
    p = predict_probabilities(ens, ens_card, sample.image)
    p0 = predict_probabilities(nets[0], cards[0], sample.image)
    p1 = predict_probabilities(nets[1], cards[1], sample.image)
    np.testing.assert_allclose(p, (p0 + p1) / 2, atol=1e-6)
    register_model(None, ens_card)
    loaded, c = load_model("ens", device="cpu")
    np.testing.assert_allclose(predict_probabilities(loaded, c, sample.image), p, atol=1e-6)
    other = ModelCard(name="m2", architecture="defectsegnet", params=TINY["defectsegnet"],
                      classes=CLASSES[:1], activation="sigmoid")
    with pytest.raises(ModelError, match="different classes"):
        ensemble_card("bad", [cards[0], other])


def test_unknown_architecture_and_bad_params_are_clear():
    with pytest.raises(ModelError, match="unknown architecture 'resnet-magic'"):
        build_model(ModelCard(name="x", architecture="resnet-magic", classes=CLASSES))
    with pytest.raises(ModelError, match="bad parameters for architecture 'defectsegnet'"):
        build_model(ModelCard(name="x", architecture="defectsegnet", classes=CLASSES,
                              params={"widht": 3}))
    with pytest.raises(ModelError, match="in_channels"):
        build_model(ModelCard(name="x", architecture="unet", classes=CLASSES,
                              params={"in_channels": 3}))
    with pytest.raises(ModelError, match="cannot do task"):
        build_model(ModelCard(name="x", architecture="maskrcnn", classes=CLASSES))


def test_card_validation_messages():
    with pytest.raises(ModelError, match="twice the halo"):
        ModelCard(name="x", architecture="unet", classes=CLASSES, tile=64, halo=32)
    with pytest.raises(ModelError, match="no classes"):
        ModelCard(name="x", architecture="unet", classes=[])
    with pytest.raises(ModelError, match="newer"):
        ModelCard(name="x", architecture="unet", classes=CLASSES, format_version=99)
    with pytest.raises(ModelError, match="percentiles"):
        ModelCard(name="x", architecture="unet", classes=CLASSES,
                  normalization={"method": "percentiles", "percentiles": [5, 200]})
    c = ModelCard(name="x", architecture="unet", classes=CLASSES, params={"decoder_channels": (8,)},
                  thresholds={"3": 0.7})
    assert c.params == {"decoder_channels": [8]}
    assert c.threshold_list() == [0.5, 0.7] and c.class_ids == [1, 3] and c.out_channels == 3
    assert ModelCard.from_dict(c.to_dict()) == c
