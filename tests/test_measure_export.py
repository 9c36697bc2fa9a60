"""CSV / XLSX / JSON exports re-read to the same tables and provenance."""

import hashlib
import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from napari_microseg import __version__
from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.measure import (
    export_tables,
    make_provenance,
    measure_objects,
    read_csv,
    read_json,
    read_tables,
    read_xlsx,
    summarize,
    write_csv,
    write_json,
    write_xlsx,
)

PS = PixelSize(0.3917, 0.3917, "fei_metadata", "Scan/PixelWidth")


@pytest.fixture
def tables():
    lab = np.zeros((120, 160), np.int32)
    lab[disk((40, 40), 12.3)] = 1
    lab[60:70, 100:103] = 2
    lab[110:120, 0:30] = 3
    lab[5, 150] = 4  # single pixel
    img = np.random.default_rng(0).random(lab.shape) * 1000
    t = measure_objects(lab, PS, intensity=img, instance_classes={1: 1, 2: 3})
    t.loc[0, "aspect_ratio"] = np.inf  # exercise non-finite values
    s = summarize(t, edges="guard", guard=3.0, thickness_nm=75.0)
    return {"objects": t, "summary": s}


@pytest.fixture
def prov(tmp_path):
    img = tmp_path / "µ image.tif"
    img.write_bytes(b"not really a tiff \x00\x01" * 100)
    return make_provenance(
        image_path=img,
        pixel_size=PS,
        model={"name": "sam2.1_hiera_tiny", "sha256": "ab" * 32},
        prompts=[{"type": "box", "yxyx": [1, 2, 3, 4]}],
        settings={"edges": "guard", "guard_nm": 3.0},
        timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs == json.loads(json.dumps(a.attrs)) == b.attrs


def test_provenance_contents(prov, tmp_path):
    img = tmp_path / "µ image.tif"
    assert prov["plugin_version"] == __version__
    assert prov["image_sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()
    assert prov["image_file"].endswith("µ image.tif")
    assert prov["pixel_size"]["x_nm"] == 0.3917 and prov["pixel_size_source"] == "fei_metadata"
    assert prov["created_utc"] == "2025-01-02T03:04:05Z"
    assert prov["model"]["name"] == "sam2.1_hiera_tiny"
    assert make_provenance()["unit"] == "px" and make_provenance()["image_sha256"] is None


def test_csv_round_trip(tables, prov, tmp_path):
    for name, df in tables.items():
        p = write_csv(tmp_path / f"{name}.csv", df, prov, name=name)
        # a plain table that pandas reads without options; provenance in the sidecar
        plain = pd.read_csv(p)
        assert list(plain.columns) == [str(c) for c in df.columns] and len(plain) == len(df)
        side = json.loads((tmp_path / f"{name}.csv.json").read_text(encoding="utf-8"))
        assert side["provenance"]["image_sha256"] == prov["image_sha256"]
        assert side["rows"] == len(df) and side["table"] == name
        back, prov2 = read_csv(p)
        _same(df, back)
        assert prov2 == prov
        ((key, again),) = read_tables(p)[0].items()
        assert key == name
        _same(df, again)


def test_xlsx_round_trip(tables, prov, tmp_path):
    p = write_xlsx(tmp_path / "m.xlsx", tables, prov)
    back, prov2 = read_xlsx(p)
    assert list(back) == ["objects", "summary"]
    for name in tables:
        _same(tables[name], back[name])
    assert prov2 == prov


def test_json_round_trip(tables, prov, tmp_path):
    p = write_json(tmp_path / "m.json", tables, prov)
    json.loads(p.read_text(encoding="utf-8"))  # strict JSON (no NaN literals)
    assert "NaN" not in p.read_text(encoding="utf-8")
    back, prov2 = read_json(p)
    for name in tables:
        _same(tables[name], back[name])
    assert prov2 == prov


def test_export_dispatch(tables, prov, tmp_path):
    files = export_tables(tmp_path / "out.csv", tables, prov)
    assert [f.name for f in files] == ["out.csv", "out_summary.csv"]
    back, _ = read_tables(files[1])
    _same(tables["summary"], back["summary"])
    for suffix in (".xlsx", ".json"):
        (f,) = export_tables(tmp_path / f"out{suffix}", tables, prov)
        back, p2 = read_tables(f)
        _same(tables["objects"], back["objects"])
        assert p2 == prov
    with pytest.raises(MicrosegError, match="csv"):
        export_tables(tmp_path / "out.txt", tables, prov)


def test_empty_table_round_trips(prov, tmp_path):
    t = measure_objects(np.zeros((20, 20), np.uint8), PS)
    for suffix in (".csv", ".json", ".xlsx"):
        (f,) = export_tables(tmp_path / f"e{suffix}", {"objects": t}, prov)
        back, _ = read_tables(f)
        _same(t, back["objects"])


def test_legacy_csv_with_comment_header_still_reads(tables, prov, tmp_path):
    """Files written before the sidecar (``# key: value`` lines first) are still read."""
    df = tables["summary"]
    p = write_csv(tmp_path / "new.csv", df, prov, name="summary")
    side = json.loads((tmp_path / "new.csv.json").read_text(encoding="utf-8"))
    head = [f"# {k}: {json.dumps(v)}" for k, v in side["provenance"].items()]
    head += [f"# _table: {json.dumps('summary')}", f"# _dtypes: {json.dumps(side['dtypes'])}",
             f"# _attrs: {json.dumps(side['attrs'])}", f"# _rows: {side['rows']}"]
    old = tmp_path / "old.csv"
    old.write_text("\n".join(head) + "\n" + p.read_text(encoding="utf-8"), encoding="utf-8")
    back, prov2 = read_csv(old)
    _same(df, back)
    assert prov2 == prov and list(read_tables(old)[0]) == ["summary"]


def test_not_a_table_file(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(MicrosegError, match="not a napari-microseg"):
        read_csv(p)
