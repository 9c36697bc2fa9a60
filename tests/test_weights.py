"""SAM2 checkpoint registry, lookup order, verified download (local HTTP server only), CLI."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import threading
from pathlib import Path

import pytest

from napari_microseg.cli import main
from napari_microseg.core import weights as W
from napari_microseg.core.errors import MicrosegError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path / "weights"))
    monkeypatch.delenv(W.ENV_CHECKPOINT, raising=False)
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """A bounded HTTP server on 127.0.0.1 serving ``tmp_path / 'srv'``."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    httpd.timeout = 5
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_registry_has_both_families_all_sizes_and_official_urls():
    assert set(W.MODELS) == {
        f"{f}-{s}" for f in ("sam2", "sam2.1") for s in ("tiny", "small", "base_plus", "large")
    }
    t = W.MODELS["sam2.1-tiny"]
    assert t.url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"
    assert W.MODELS["sam2-large"].url.endswith("/072824/sam2_hiera_large.pt")
    assert W.get_spec("SAM2.1-base-plus").filename == "sam2.1_hiera_base_plus.pt"
    with pytest.raises(MicrosegError, match="Unknown SAM2 model"):
        W.get_spec("sam3-huge")
    pkg = (
        Path(importlib.util.find_spec("sam2").submodule_search_locations[0])
        if importlib.util.find_spec("sam2")
        else None
    )
    if pkg is not None:
        for spec in W.MODELS.values():
            assert (pkg / spec.config).is_file(), spec.config


def test_lookup_order_explicit_then_env_then_weights_dir(monkeypatch, tmp_path):
    assert W.find_weights("sam2.1-tiny") is None
    in_dir = W.default_path("sam2.1-tiny")
    in_dir.parent.mkdir(parents=True)
    in_dir.write_bytes(b"d")
    assert W.find_weights("sam2.1-tiny") == in_dir
    env_file = tmp_path / "env.pt"
    env_file.write_bytes(b"e")
    monkeypatch.setenv(W.ENV_CHECKPOINT, str(env_file))
    assert W.find_weights("sam2.1-tiny") == env_file
    chosen = tmp_path / "chosen.pt"
    chosen.write_bytes(b"c")
    assert W.find_weights("sam2.1-tiny", chosen) == chosen
    with pytest.raises(W.WeightsMissingError, match="does not exist"):
        W.find_weights("sam2.1-tiny", tmp_path / "nope.pt")
    monkeypatch.setenv(W.ENV_CHECKPOINT, str(tmp_path / "gone.pt"))
    with pytest.raises(W.WeightsMissingError, match=W.ENV_CHECKPOINT):
        W.find_weights("sam2.1-tiny")


def test_missing_weights_message_names_file_and_place(tmp_path):
    msg = W.missing_weights_message("sam2.1-small")
    assert str(tmp_path / "weights" / "sam2.1_hiera_small.pt") in msg
    assert W.MODELS["sam2.1-small"].url in msg and "microseg weights download sam2.1-small" in msg
    with pytest.raises(W.WeightsMissingError) as e:
        W.resolve_weights("sam2.1-small")
    assert str(e.value) == msg


def test_download_rejects_checksum_mismatch_and_leaves_no_file(server, tmp_path):
    root, url = server
    (root / "ckpt.pt").write_bytes(b"x" * 100_000)
    dest = tmp_path / "dl"
    with pytest.raises(MicrosegError, match="verification"):
        W.download("sam2.1-tiny", dest=dest, url=f"{url}/ckpt.pt", sha256="0" * 64, progress=False)
    assert list(dest.iterdir()) == []


def test_download_with_right_checksum_and_refusal_without_one(server, tmp_path):
    root, url = server
    payload = b"weights" * 5000
    (root / "ckpt.pt").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    with pytest.raises(MicrosegError, match="--no-verify"):
        W.download("sam2.1-tiny", url=f"{url}/ckpt.pt", progress=False)
    assert not W.default_path("sam2.1-tiny").exists()
    out = W.download("sam2.1-tiny", url=f"{url}/ckpt.pt", sha256=f"sha256:{digest}", progress=False)
    assert out == W.default_path("sam2.1-tiny") and out.read_bytes() == payload
    out.unlink()
    out = W.download("sam2.1-tiny", url=f"{url}/ckpt.pt", verify=False, progress=False)
    assert out.read_bytes() == payload
    with pytest.raises(MicrosegError, match="failed"):
        W.download("sam2.1-small", url=f"{url}/missing.pt", verify=False, progress=False)
    assert not W.default_path("sam2.1-small").exists()


def test_weights_checksum_is_hashed_once(monkeypatch, tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"abc")
    assert W.weights_checksum(f) == hashlib.sha256(b"abc").hexdigest()
    monkeypatch.setattr(W, "sha256_file", lambda p: pytest.fail("re-hashed"))
    assert W.weights_checksum(f) == hashlib.sha256(b"abc").hexdigest()
    f.write_bytes(b"abcd")  # new size -> new hash
    monkeypatch.setattr(W, "sha256_file", lambda p: "new")
    assert W.weights_checksum(f) == "new"


def test_cli_list_path_download(capsys, server, tmp_path):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert all(m in out for m in W.MODELS) and "missing" in out
    assert main(["weights", "path", "sam2.1-tiny"]) == 1
    cap = capsys.readouterr()
    assert cap.out.strip() == str(W.default_path("sam2.1-tiny")) and "Place the file" in cap.err
    assert main(["weights", "download", "sam2.1-tiny", "--quiet"]) == 1
    assert "--no-verify" in capsys.readouterr().err
    root, url = server
    (root / "c.pt").write_bytes(b"ok")
    assert (
        main(
            ["weights", "download", "sam2.1-tiny", "--quiet", "--no-verify", "--url", f"{url}/c.pt"]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert "unverified" in cap.err and hashlib.sha256(b"ok").hexdigest() in cap.err
    assert main(["weights", "path", "sam2.1-tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(W.default_path("sam2.1-tiny"))
