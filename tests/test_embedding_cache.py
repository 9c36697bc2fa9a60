"""On-disk embedding cache: hit, miss, mismatch, corruption, atomic writes.

Most tests use a fake embedding backend (fast); the last ones run SAM2.1-tiny
with random weights (test switch ``allow_random_weights=True``) to prove that a
cache hit restores SAM2's features exactly without an encoder pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_microseg.core.prompting.base import Prediction, PromptBackend
from napari_microseg.core.prompting.embedding_cache import (
    ENV_CACHE_DIR,
    EmbeddingCache,
    cache_dir,
    signature_key,
)
from napari_microseg.core.prompting.session import PromptSession


class CountingBackend(PromptBackend):
    """Fake embedding backend whose 'embedding' is a deterministic function of the image."""

    needs_embedding = True

    def __init__(self, name="fake-model"):
        self.name = name
        self.n_embed = 0
        self.emb = None

    def signature(self):
        return {"backend": "fake", "model": self.name, "weights": "w1"}

    def set_image(self, image, *, progress=None):
        self.n_embed += 1
        self.emb = {
            "feat": (image[::8, ::8] * 2).astype(np.float32),
            "orig_hw": np.array(image.shape, np.int64),
        }

    def get_embedding(self):
        return self.emb

    def load_embedding(self, emb):
        self.emb = emb

    def predict(self, prompts):
        return Prediction(
            mask=np.zeros(tuple(self.emb["orig_hw"]), bool), score=float(self.emb["feat"].sum())
        )


@pytest.fixture
def image():
    return np.random.default_rng(3).integers(0, 4000, (300, 400)).astype(np.uint16)


@pytest.fixture
def cache(tmp_path):
    return EmbeddingCache(tmp_path / "cache")


def _session(backend, cache, image, **kw):
    s = PromptSession(backend, cache)
    return s, s.set_image(image, **kw)


def test_cache_dir_env_override_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert EmbeddingCache().root == tmp_path / "c"
    monkeypatch.delenv(ENV_CACHE_DIR)
    assert cache_dir().parts[-2:] == ("napari-microseg", "embeddings") or "napari-microseg" in str(
        cache_dir()
    )
    assert EmbeddingCache(tmp_path / "x").root == tmp_path / "x"


def test_miss_then_hit_without_recomputation(cache, image):
    be = CountingBackend()
    s, status = _session(be, cache, image)
    assert status == "computed" and be.n_embed == 1
    expected = be.emb["feat"].copy()
    be2 = CountingBackend()
    s2, status2 = _session(be2, cache, image)
    assert status2 == "cache hit" and be2.n_embed == 0
    s2.predict([[10, 10]], [1])
    np.testing.assert_array_equal(be2.emb["feat"], expected)
    entry = cache.entry_path(s.signature)
    attrs = json.loads((entry / "zarr.json").read_text())["attributes"]
    assert attrs["signature"]["backend"]["model"] == "fake-model"
    assert attrs["signature"]["image"] == s.signature["image"]


def test_other_model_or_normalisation_recomputes_with_reason(cache, image):
    _session(CountingBackend("model-a"), cache, image)
    be = CountingBackend("model-b")
    _, status = _session(be, cache, image)
    assert status.startswith("recomputed: ") and "backend.model" in status and "model-a" in status
    assert be.n_embed == 1
    be = CountingBackend("model-a")
    _, status = _session(be, cache, image, contrast_limits=(0, 1000))
    assert status.startswith("recomputed: ") and "normalisation" in status
    assert be.n_embed == 1
    # both variants stay cached side by side
    be = CountingBackend("model-b")
    assert _session(be, cache, image)[1] == "cache hit" and be.n_embed == 0


def test_different_image_is_a_plain_miss(cache, image):
    _session(CountingBackend(), cache, image)
    be = CountingBackend()
    assert _session(be, cache, image + 1)[1] == "computed" and be.n_embed == 1


def test_stale_signature_in_attrs_is_detected(cache, image):
    s, _ = _session(CountingBackend(), cache, image)
    meta_path = cache.entry_path(s.signature) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["signature"]["backend"]["weights"] = "w0"  # e.g. written by an older build
    meta_path.write_text(json.dumps(meta))
    be = CountingBackend()
    _, status = _session(be, cache, image)
    assert status.startswith("recomputed: stored signature does not match") and "weights" in status
    assert be.n_embed == 1
    assert _session(CountingBackend(), cache, image)[1] == "cache hit"


def _chunk_files(tile_dir: Path):
    return sorted(
        p for p in tile_dir.rglob("*") if p.is_file() and "c" in p.relative_to(tile_dir).parts
    )


@pytest.mark.parametrize("damage", ["truncate", "flip", "metadata"])
def test_corrupt_tile_is_recomputed(cache, image, damage):
    s, _ = _session(CountingBackend(), cache, image)
    tile_dir = cache.entry_path(s.signature) / s.grid.tiles[0].name
    chunk = [p for p in _chunk_files(tile_dir) if "feat" in p.parts][0]
    data = bytearray(chunk.read_bytes())
    if damage == "truncate":
        chunk.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    else:
        (tile_dir / "zarr.json").write_text("{not json")
    be = CountingBackend()
    _, status = _session(be, cache, image)
    assert status.startswith("recomputed: cached tile") and "corrupt" in status
    assert be.n_embed == 1
    assert _session(CountingBackend(), cache, image)[1] == "cache hit"


def test_corrupt_entry_metadata_is_recomputed(cache, image):
    s, _ = _session(CountingBackend(), cache, image)
    (cache.entry_path(s.signature) / "zarr.json").write_text("garbage")
    be = CountingBackend()
    _, status = _session(be, cache, image)
    assert status.startswith("recomputed: ") and "corrupt" in status and be.n_embed == 1


def test_failed_write_leaves_no_partial_tile(cache):
    sig = {"image": "abc", "backend": {"model": "m"}}
    entry, found = cache.open(sig)
    assert found == "new"

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        entry.save("t0", {"a": np.ones(10, np.float32), "b": Boom()})
    assert entry.tiles() == []
    assert not any((cache.root / ".tmp").iterdir())
    entry.save("t0", {"a": np.ones(10, np.float32)})
    arrays, reason = entry.load("t0")
    assert reason is None and arrays["a"].tolist() == [1.0] * 10
    assert signature_key(sig) == signature_key(dict(reversed(list(sig.items()))))


# -- real SAM2 (random weights through the explicit test switch) ------------------------


@pytest.fixture(scope="module")
def sam2_backend():
    pytest.importorskip("sam2")
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend

    be = Sam2Backend("sam2.1-tiny", device="cpu", allow_random_weights=True)
    calls = {"n": 0}
    original = be.model.forward_image

    def counted(x):
        calls["n"] += 1
        return original(x)

    be.model.forward_image = counted
    be.encoder_calls = calls
    return be


@pytest.fixture(scope="module")
def sam2_cache(tmp_path_factory):
    return EmbeddingCache(tmp_path_factory.mktemp("sam2-cache"))


@pytest.fixture(scope="module")
def tem_image():
    rng = np.random.default_rng(0)
    img = rng.normal(1000, 50, (1024, 1024))
    rr, cc = np.mgrid[:1024, :1024]
    img[(rr - 300) ** 2 + (cc - 700) ** 2 < 40**2] -= 400
    return img.astype(np.uint16)


def test_sam2_cache_hit_restores_features_without_encoder(sam2_backend, sam2_cache, tem_image):
    be = sam2_backend
    s = PromptSession(be, sam2_cache)
    assert s.set_image(tem_image) == "computed"
    assert be.encoder_calls["n"] == 1
    first = s.predict([[300, 700]], [1])
    s2 = PromptSession(be, sam2_cache)
    assert s2.set_image(tem_image) == "cache hit"
    again = s2.predict([[300, 700]], [1])
    assert be.encoder_calls["n"] == 1
    np.testing.assert_array_equal(again.mask, first.mask)
    np.testing.assert_allclose(again.logits, first.logits, rtol=0, atol=1e-5)
    assert again.score == pytest.approx(first.score, abs=1e-6)


@pytest.mark.slow
def test_sam2_corrupt_cached_tile_is_recomputed(sam2_backend, sam2_cache, tem_image):
    be = sam2_backend
    s = PromptSession(be, sam2_cache)
    s.set_image(tem_image)  # hit or computed, depending on test order
    before = be.encoder_calls["n"]
    tile_dir = sam2_cache.entry_path(s.signature) / s.grid.tiles[0].name
    chunk = [p for p in _chunk_files(tile_dir) if "image_embed" in p.parts][0]
    chunk.write_bytes(chunk.read_bytes()[:100])
    s2 = PromptSession(be, sam2_cache)
    status = s2.set_image(tem_image)
    assert status.startswith("recomputed: cached tile") and "corrupt" in status
    assert be.encoder_calls["n"] == before + 1
    assert s2.predict([[300, 700]], [1]).mask.shape == tem_image.shape
