"""``microseg info`` and the CLI's error contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fileformats import write_dm
from napari_microseg.cli import main
from tiff_samples import write_fei_tiff


def test_info_json_for_dm4_through_read_micrograph(tmp_path, capsys):
    p = tmp_path / "tem.dm4"
    write_dm(p, (np.arange(64 * 80).reshape(64, 80) % 4000).astype(np.uint16), 0.25, version=4, voltage_kv=200)
    assert main(["info", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pixel_size"]["x_nm"] == pytest.approx(0.25)
    assert out["pixel_size"]["source"] == "digitalmicrograph"
    assert out["metadata"]["accelerating_voltage_kv"] == pytest.approx(200)
    assert out["dtype"] == "uint16" and out["shape"] == [64, 80]


def test_info_text_for_fei_tiff(tmp_path, capsys):
    p = tmp_path / "sem.tif"
    write_fei_tiff(p, np.random.default_rng(0).integers(0, 255, (100, 120), dtype=np.uint8), pixel_m=3e-9)
    assert main(["info", str(p)]) == 0
    text = capsys.readouterr().out
    assert "3 nm/px (fei_metadata" in text and "accelerating_voltage_kv: 5.0" in text


def test_cli_error_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00\x08\x00\x00\x00junk")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("microseg info: error:") and "bad.tif" in err[0]


def test_console_script_runs(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "napari_microseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("info", "synth", "labels", "gui"):
        assert cmd in out.stdout
