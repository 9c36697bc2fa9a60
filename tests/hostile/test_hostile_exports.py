"""Measurement exports under failure: atomic writes, truncated tables, chunked measuring.

* A write that fails halfway (full disk) leaves the target absent or as its
  previous version, never cut short, and no temporary file behind.
* A table file cut short by other means (a copy, a download) is refused by the
  readers instead of being read as a shorter table.
* The chunked intensity statistics give exactly the one-pass numbers, and
  both agree with a straightforward per-object reference.
"""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import CorruptFileError, MicrosegError
from napari_microseg.core.labels_io import write_labels
from napari_microseg.core.measure import export as export_mod
from napari_microseg.core.measure import (
    export_tables,
    make_provenance,
    measure_objects,
    read_tables,
)
from napari_microseg.core.measure import export_xlsx as export_xlsx_mod
from napari_microseg.core.measure import objects as objects_mod
from napari_microseg.core.measure import runs as runs_mod
from napari_microseg.core.measure.export import sidecar_path

PS = PixelSize(0.5, 0.5, "user", "test")


def _grid_labels(n_side=25, cell=12, seed=0):
    """A label image with ``n_side``² small discs of random radius, one per cell."""
    rng = np.random.default_rng(seed)
    size = n_side * cell
    yy, xx = np.mgrid[0:size, 0:size]
    iy, ix = yy // cell, xx // cell
    r = rng.uniform(1.5, cell / 2 - 1, (n_side, n_side))
    cy = rng.uniform(r, cell - 1 - r)
    cx = rng.uniform(r, cell - 1 - r)
    inside = (yy % cell - cy[iy, ix]) ** 2 + (xx % cell - cx[iy, ix]) ** 2 <= r[iy, ix] ** 2
    lab = np.where(inside, iy * n_side + ix + 1, 0).astype(np.int32)
    return lab


@pytest.fixture
def tables():
    lab = _grid_labels()
    img = np.random.default_rng(1).random(lab.shape) * 1000
    t = measure_objects(lab, PS, intensity=img)
    assert len(t) > 500
    return {"objects": t, "summary": t.describe().reset_index()}


@pytest.fixture
def prov():
    return make_provenance(pixel_size=PS, settings={"edges": "include"})


class _DiskFull:
    """A file object that raises ENOSPC once ``limit`` bytes have been written."""

    def __init__(self, f, limit):
        self._f, self._left = f, limit

    def write(self, data):
        if len(data) > self._left:
            self._f.write(data[: self._left])
            self._f.flush()
            self._left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _fill_disk_after(monkeypatch, limit):
    """Make every file the export modules open for writing fail after ``limit`` bytes."""
    real = open

    def failing_open(file, mode="r", *args, **kwargs):
        f = real(file, mode, *args, **kwargs)
        return _DiskFull(f, limit) if ("w" in mode or "a" in mode) else f

    for module in (export_mod, export_xlsx_mod):
        monkeypatch.setattr(module, "open", failing_open, raising=False)


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".xlsx"])
def test_a_write_failing_halfway_keeps_the_previous_file(tables, prov, tmp_path, monkeypatch,
                                                         suffix):
    target = tmp_path / f"objects{suffix}"
    old = {"objects": tables["objects"].iloc[:50].reset_index(drop=True)}
    export_tables(target, old, prov)
    before = target.read_bytes()
    size = len(before)
    _fill_disk_after(monkeypatch, size // 2)
    with pytest.raises(OSError, match="(?i)no space left"):
        export_tables(target, tables, prov)
    monkeypatch.undo()
    assert target.read_bytes() == before  # the previous version, whole
    kept = [target.name] + ([sidecar_path(target).name] if suffix == ".csv" else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == kept  # no partial file left
    back, _ = read_tables(target)
    _same(old["objects"], back["objects"])


@pytest.mark.parametrize("suffix", [".csv", ".json", ".xlsx"])
def test_a_write_failing_halfway_leaves_no_target(tables, prov, tmp_path, monkeypatch, suffix):
    target = tmp_path / "new" / f"objects{suffix}"
    _fill_disk_after(monkeypatch, 4000)
    with pytest.raises(OSError):
        export_tables(target, tables, prov)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_cli_measure_on_a_full_disk_is_one_error_and_no_table(cli, tmp_path, monkeypatch, suffix):
    import gc

    lab = _grid_labels(n_side=30)
    img = np.random.default_rng(2).integers(0, 255, lab.shape).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", img)
    write_labels(tmp_path / "lab.tif", lab)
    out = tmp_path / "res" / f"objects{suffix}"
    _fill_disk_after(monkeypatch, 20_000)
    r = cli("measure", tmp_path / "img.tif", tmp_path / "lab.tif", "--out", out)
    gc.collect()  # nothing half-written may complain later
    assert r.rc == 1
    assert "space" in r.error_line().lower()
    assert "Exception ignored" not in r.err
    assert not out.exists()
    monkeypatch.undo()
    r = cli("measure", tmp_path / "img.tif", tmp_path / "lab.tif", "--out", out)
    assert r.rc == 0, r.err
    assert len(read_tables(out)[0]["objects"]) == int(lab.max())


def test_a_csv_cut_inside_a_row_is_refused(tables, prov, tmp_path):
    (p,) = export_tables(tmp_path / "t.csv", {"objects": tables["objects"]}, prov)
    data = p.read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[: len(data) // 2])
    shutil.copy(sidecar_path(p), sidecar_path(cut))
    with pytest.raises(CorruptFileError, match="truncated"):
        read_tables(cut)


def test_a_csv_cut_at_a_row_boundary_is_refused(tables, prov, tmp_path):
    (p,) = export_tables(tmp_path / "t.csv", {"objects": tables["objects"]}, prov)
    lines = p.read_bytes().split(b"\n")
    n = len(tables["objects"])
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b"\n".join(lines[:-11]) + b"\n")  # the last 10 rows are gone
    shutil.copy(sidecar_path(p), sidecar_path(cut))
    with pytest.raises(CorruptFileError, match=f"{n - 10} of its {n} rows"):
        read_tables(cut)


def test_a_csv_with_rows_added_is_refused(tables, prov, tmp_path):
    (p,) = export_tables(tmp_path / "t.csv", {"objects": tables["objects"]}, prov)
    text = p.read_text(encoding="utf-8")
    last = text.rstrip("\n").split("\n")[-1]
    p.write_text(text + last + "\n", encoding="utf-8")
    with pytest.raises(CorruptFileError, match="rows"):
        read_tables(p)


def test_a_json_table_missing_rows_is_refused(tables, prov, tmp_path):
    (p,) = export_tables(tmp_path / "t.json", tables, prov)
    doc = json.loads(p.read_text(encoding="utf-8"))
    doc["tables"]["objects"]["data"] = doc["tables"]["objects"]["data"][:100]
    p.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CorruptFileError, match="100 of its"):
        read_tables(p)


@pytest.mark.parametrize("suffix", [".json", ".xlsx"])
def test_a_cut_json_or_xlsx_is_one_clear_error(tables, prov, tmp_path, suffix):
    (p,) = export_tables(tmp_path / f"t{suffix}", tables, prov)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(MicrosegError):
        read_tables(p)


def test_files_written_in_chunks_read_back_equal(tables, prov, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "CHUNK_ROWS", 37)
    monkeypatch.setattr(export_xlsx_mod, "_XLSX_PROGRESS_ROWS", 41)
    n = len(tables["objects"]) + len(tables["summary"])
    for suffix in (".csv", ".json", ".xlsx"):
        seen = []
        files = export_tables(tmp_path / f"c{suffix}", tables, prov, progress=seen.append)
        assert sum(seen) == n and len(seen) > 2
        for f in files:
            for name, df in read_tables(f)[0].items():
                _same(tables[name], df)


def _reference_intensity(lab, img):
    """Mean/min/max of ``img`` under each label, one boolean mask at a time."""
    ids = np.unique(lab[lab > 0])
    rows = []
    for k in ids:
        m = lab == k
        v = img[m]
        yy, xx = np.nonzero(m)
        rows.append((v.mean(dtype=np.float64), float(v.min()), float(v.max()), yy.mean(), xx.mean()))
    return ids, np.array(rows)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_chunked_measurement_matches_the_one_pass_and_the_reference(monkeypatch, dtype):
    lab = _grid_labels(n_side=40, cell=14, seed=3)  # 1,600 objects on 560 x 560
    rng = np.random.default_rng(4)
    img = (rng.random(lab.shape) * 4000).astype(dtype)
    whole = measure_objects(lab, PS, intensity=img)
    monkeypatch.setattr(objects_mod, "INTENSITY_CHUNK_PX", 97)  # many chunks, cut anywhere
    monkeypatch.setattr(runs_mod, "RUN_BLOCK_PX", 1500)  # runs found 2 rows at a time
    chunked = measure_objects(lab, PS, intensity=img)
    _same(whole, chunked)
    ids, ref = _reference_intensity(lab, img)
    np.testing.assert_array_equal(chunked["label"].to_numpy(), ids)
    np.testing.assert_allclose(chunked["intensity_mean"], ref[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(chunked["intensity_min"], ref[:, 1])
    np.testing.assert_array_equal(chunked["intensity_max"], ref[:, 2])
    np.testing.assert_allclose(chunked["centroid_y_px"], ref[:, 3], rtol=0, atol=1e-9)
    np.testing.assert_allclose(chunked["centroid_x_px"], ref[:, 4], rtol=0, atol=1e-9)
    area = np.bincount(lab.ravel())[ids]
    np.testing.assert_array_equal(chunked["area_nm2"], area * 0.25)


@pytest.mark.parametrize("block_px", [1, 7, 64, 1000, 10**9])
def test_runs_found_by_blocks_of_rows_are_the_one_pass_runs(block_px):
    rng = np.random.default_rng(5)
    lab = rng.integers(0, 6, (37, 23)).astype(np.uint16)  # many runs, labels across rows
    lab[:, 0] = 3  # a label in every block
    one = runs_mod.find_runs(lab, block_px=10**9)
    got = runs_mod.find_runs(lab, block_px=block_px)
    for f in ("labels", "group", "row", "c0", "c1", "start", "first"):
        np.testing.assert_array_equal(getattr(got, f), getattr(one, f), err_msg=f)
        assert getattr(got, f).dtype == getattr(one, f).dtype, f
    # and both are the runs themselves
    for r, c0, c1, g in zip(got.row, got.c0, got.c1, got.group, strict=True):
        k = got.labels[g]
        assert (lab[r, c0 : c1 + 1] == k).all()
        assert c0 == 0 or lab[r, c0 - 1] != k
        assert c1 == lab.shape[1] - 1 or lab[r, c1 + 1] != k
    assert int(got.length.sum()) == int((lab > 0).sum())


def test_an_xlsx_failing_while_rows_are_streamed_leaves_nothing_behind(tables, prov, tmp_path,
                                                                     monkeypatch):
    """openpyxl streams rows to temporary files first: a full disk there fails cleanly too."""
    import gc
    import tempfile

    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    real_append, calls = WriteOnlyWorksheet.append, [0]

    def append(self, row):
        calls[0] += 1
        if calls[0] == 300:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, row)

    monkeypatch.setattr(WriteOnlyWorksheet, "append", append)
    target = tmp_path / "out" / "t.xlsx"
    unraisable = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    with pytest.raises(OSError, match="(?i)no space left"):
        export_tables(target, tables, prov)
    gc.collect()
    assert unraisable == []
    assert not target.exists()
    assert list(spool.iterdir()) == []  # openpyxl's temporary sheet files are gone
