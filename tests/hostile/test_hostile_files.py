"""Odd files: zip bombs, TIFF headers that lie, mixed-size pages, absurd FEI calibration,
an embedding cache that cannot be written. Each is refused or warned about in one line;
nothing is allocated or extracted first.
"""

from __future__ import annotations

import errno
import struct
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_microseg.core.errors import InvalidImageError
from napari_microseg.core.models import ModelError
from napari_microseg.core.reading import read_micrograph

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# -- model zip files ------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_is_refused_before_extracting(tiny_model, tmp_path, cli):
    from napari_microseg.core.models import import_model

    bomb = _zip(tmp_path / "bomb.zip", {"model_card.json": tiny_model.to_json().encode(),
                                        "weights.pt": bytes(16 * 2**20)})
    assert bomb.stat().st_size < 100_000  # 16 MiB of zeros compress ~1000x
    before = sorted(p.name for p in (tmp_path / "models").iterdir())
    with pytest.raises(ModelError, match="expands") as e:
        import_model(bomb)
    assert "\n" not in str(e.value) and "weights.pt" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == before  # nothing left
    r = cli("predict", tmp_path / "a.tif", "--model", bomb, "--out", tmp_path / "out")
    assert r.rc == 1 and "expands" in r.error_line()


def test_zip_total_size_is_bounded(tiny_model, tmp_path, monkeypatch):
    from napari_microseg.core.models import export_model, import_model, registry

    exported = export_model("tiny-seg", tmp_path / "tiny.zip")
    card = import_model(exported, name="tiny-copy")  # a real export passes the checks
    assert card.name == "tiny-copy"
    monkeypatch.setattr(registry, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ModelError, match="would expand to .* GiB"):
        import_model(exported, name="tiny-again")
    assert not (tmp_path / "models" / "tiny-again").exists()


def test_zip_path_traversal_still_refused(tiny_model, tmp_path):
    from napari_microseg.core.models import import_model

    evil = _zip(tmp_path / "evil.zip", {
        "model_card.json": tiny_model.to_json().encode(),
        "../evil.txt": b"x", "members/../../evil2.txt": b"x", "/abs-evil.txt": b"x",
        "members/../model_card.json": b"{}",
    })
    with pytest.raises(ModelError):  # no weights: refused, but never written outside
        import_model(evil)
    assert not list(tmp_path.rglob("*evil*.txt")) and not Path("/abs-evil.txt").exists()


# -- TIFF headers that declare too much ---------------------------------------------------------


def huge_tiff(path: Path, ny: int = 100_000, nx: int = 100_000) -> Path:
    """A 16 x 16 TIFF whose ImageWidth/ImageLength tags are patched to ``nx``/``ny`` (LONG)."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), photometric="minisblack")
    b = bytearray(path.read_bytes())
    assert b[:2] == b"II"
    ifd = struct.unpack_from("<I", b, 4)[0]
    for k in range(struct.unpack_from("<H", b, ifd)[0]):
        off = ifd + 2 + 12 * k
        tag = struct.unpack_from("<H", b, off)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", b, off, tag, 4, 1, nx if tag == 256 else ny)
    path.write_bytes(bytes(b))
    return path


def test_tiff_declaring_100000_squared_is_refused_before_allocating(tmp_path):
    p = huge_tiff(tmp_path / "liar.tif")
    t0 = time.perf_counter()
    with pytest.raises(InvalidImageError, match="100000 x 100000") as e:
        read_micrograph(p)
    assert time.perf_counter() - t0 < 5
    assert "\n" not in str(e.value) and "liar.tif" in str(e.value)
    with pytest.raises(InvalidImageError):
        read_micrograph(p, lazy=True)


def test_eager_read_beyond_a_quarter_of_memory_is_refused_or_lazy(tmp_path, monkeypatch):
    from napari_microseg.core import micrograph

    p = tmp_path / "img.tif"
    tifffile.imwrite(p, np.zeros((64, 64), np.uint16))
    monkeypatch.setattr(micrograph, "memory_budget_bytes", lambda fraction=0.25: 1000)
    with pytest.raises(InvalidImageError, match="quarter of the available memory"):
        read_micrograph(p, lazy=False)
    mg = read_micrograph(p)  # default: opened lazily instead
    assert not isinstance(mg.data, np.ndarray) and any("lazily" in w for w in mg.warnings)


def test_predict_reports_the_lying_tiff_and_runs_the_others(tiny_model, tmp_path, cli):
    good = []
    for name in ("a.tif", "c.tif"):
        tifffile.imwrite(tmp_path / name, np.full((40, 48), 100, np.uint8))
        good.append(tmp_path / name)
    liar = huge_tiff(tmp_path / "b.tif")
    r = cli("predict", good[0], liar, good[1], "--model", "tiny-seg", "--out", tmp_path / "out")
    assert r.rc == 1
    assert "Traceback" not in r.err
    line = [ln for ln in r.err.splitlines() if "b.tif" in ln]
    assert len(line) == 1 and "declares 100000 x 100000 px" in line[0], r.err
    assert (tmp_path / "out" / "a_labels.tif").exists() and (tmp_path / "out" / "c_labels.tif").exists()
    assert "tifffile" not in r.err  # tifffile's own log lines are not printed


# -- multi-page TIFF of mixed sizes ------------------------------------------------------------


def test_mixed_page_sizes_warn_and_use_page_0(tmp_path, cli):
    p = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(p) as t:
        t.write(np.full((64, 48), 7, np.uint8))
        t.write(np.ones((32, 32), np.uint8))
        t.write(np.ones((20, 30), np.uint8))
    mg = read_micrograph(p)
    assert mg.shape == (64, 48) and int(np.asarray(mg.data).max()) == 7
    notes = [w for w in mg.warnings if "different sizes" in w]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "3 pages" in notes[0] and "64 x 48" in notes[0] and "32 x 32" in notes[0]
    assert "page 0" in notes[0]
    r = cli("info", p)
    assert r.rc == 0 and "3 pages of different sizes" in r.out


def test_same_size_pages_and_single_pages_do_not_warn(tmp_path):
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, np.zeros((32, 32), np.uint8))
    assert not [w for w in read_micrograph(p).warnings if "different sizes" in w]


# -- FEI calibration values ----------------------------------------------------------------


def _fei(path: Path, pixel_width: str, pixel_height: str | None = None) -> Path:
    text = "\r\n".join([
        "[System]", "SystemType=Helios G4 UX", "[Beam]", "HV=5000", "[Scan]",
        f"PixelWidth={pixel_width}", f"PixelHeight={pixel_height or pixel_width}",
        "[Detectors]", "Name=TLD", "Mode=SE",
    ]) + "\r\n"
    data = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    tifffile.imwrite(path, data, extratags=[(34682, "s", 0, text, True)])
    return path


@pytest.mark.parametrize("value", ["0", "-3.9e-10", "nan", "1e10", "abc", "inf"])
def test_absurd_fei_pixel_width_is_ignored_with_a_warning(tmp_path, value):
    mg = read_micrograph(_fei(tmp_path / "fei.tif", value))
    assert not mg.pixel_size.calibrated
    notes = [w for w in mg.warnings if "PixelWidth" in w]
    shown = value if value == "abc" else f"{float(value):g}"
    assert len(notes) == 1 and shown in notes[0] and "ignored" in notes[0], mg.warnings


def test_absurd_fei_pixel_height_is_named(tmp_path):
    mg = read_micrograph(_fei(tmp_path / "fei.tif", "3.9e-10", "-1"))
    assert not mg.pixel_size.calibrated
    assert any("PixelHeight" in w and "ignored" in w for w in mg.warnings)


def test_plausible_fei_pixel_width_still_calibrates(tmp_path):
    mg = read_micrograph(_fei(tmp_path / "fei.tif", "3.9e-10"))
    assert mg.pixel_size.x_nm == pytest.approx(0.39)
    assert not [w for w in mg.warnings if "PixelWidth" in w]


# -- embedding cache on a read-only or full disk -----------------------------------------------


class _Backend:
    """Minimal embedding backend: counts encoder passes."""

    needs_embedding = True

    def __init__(self):
        self.n_embed, self.emb = 0, None

    def signature(self):
        return {"backend": "fake", "model": "m", "weights": "w"}

    def set_image(self, image, *, progress=None):
        self.n_embed += 1
        self.emb = {"feat": np.asarray(image[::8, ::8], np.float32)}

    def get_embedding(self):
        return self.emb

    def load_embedding(self, emb):
        self.emb = emb


def _embed_twice(cache, image):
    from napari_microseg.core.prompting.session import PromptSession

    statuses = []
    for _ in range(2):
        be = _Backend()
        statuses.append(PromptSession(be, cache).set_image(image))
        assert be.n_embed == 1 and be.emb is not None
    return statuses


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_unwritable_embedding_cache_runs_without_it_and_warns_once(tmp_path, monkeypatch, code):
    from napari_microseg.core.prompting import embedding_cache as ec

    root = tmp_path / "cache"
    if code == errno.ENOSPC:  # the disk fills up while a tile is written
        def full(*a, **k):
            raise OSError(code, "No space left on device")

        monkeypatch.setattr(ec, "_create_array", full)
    else:  # a read-only folder: nothing can be created under it (tests run as root: no chmod)
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **k):
            if str(self).startswith(str(root)):
                raise OSError(code, "Read-only file system", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    image = np.random.default_rng(1).integers(0, 4000, (120, 160)).astype(np.uint16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        statuses = _embed_twice(ec.EmbeddingCache(root), image)
        statuses += _embed_twice(ec.EmbeddingCache(root), image)  # another cache, same folder
    assert statuses == ["computed"] * 4
    notes = [str(w.message) for w in caught if "embedding cache" in str(w.message)]
    assert len(notes) == 1, notes
    assert str(root) in notes[0] and ("No space" in notes[0] or "Read-only" in notes[0])
    tmp = root / ".tmp"
    assert not tmp.exists() or not list(tmp.iterdir())  # no half-written tile left behind


def test_predict_prints_the_image_warnings_and_says_when_it_is_uncalibrated(
    tiny_model, tmp_path, cli
):
    p = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(p) as t:
        t.write(np.full((64, 48), 7, np.uint8))
        t.write(np.ones((32, 32), np.uint8))
    r = cli("predict", p, "--model", "tiny-seg", "--out", tmp_path / "out")
    assert r.rc == 0, r.err
    warned = [ln for ln in r.err.splitlines() if ": warning:" in ln]
    assert any("different sizes" in ln for ln in warned), r.err
    assert any("no pixel size" in ln and "sizes in px" in ln for ln in warned), r.err
    r = cli("predict", p, "--model", "tiny-seg", "--out", tmp_path / "out2", "--pixel-size", "0.5")
    assert r.rc == 0 and "no pixel size" not in r.err
