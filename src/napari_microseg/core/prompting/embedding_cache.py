"""On-disk cache of image embeddings (zarr), so reopening an image costs no encoder pass.

Layout under :func:`cache_dir` (``$MICROSEG_CACHE_DIR`` or the per-user cache
folder ``.../napari-microseg/embeddings``)::

    <image hash[:24]>/<signature key>.zarr/      group; attrs: format, signature
    <image hash[:24]>/<signature key>.zarr/<tile>/  group per tile; attrs: arrays' crc32

The signature (image content hash, backend model id and weights checksum,
normalisation, tiling) is hashed into the key *and* stored in the attrs; on
load it is compared again, and each array's CRC-32 is checked, so a stale,
mismatched or damaged entry is reported with a reason and recomputed, never
used. Entries and tiles are written to a temporary folder and renamed into
place, so a crash leaves either a complete tile or none.

A cache folder that cannot be written (read-only, disk full, no permission)
is not an error: the cache warns once and embeddings are computed without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
import warnings
import zlib
from pathlib import Path

import numpy as np

#: Environment variable overriding the cache folder.
ENV_CACHE_DIR = "MICROSEG_CACHE_DIR"
#: Bump when the on-disk layout changes (older entries are then recomputed).
FORMAT = 1
#: Cache folders already warned about in this process (one warning each).
_WARNED: set[str] = set()


def cache_dir() -> Path:
    """Default cache folder: ``$MICROSEG_CACHE_DIR`` or user cache dir/embeddings."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-microseg")) / "embeddings"


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def signature_key(signature: dict) -> str:
    """Short stable hash of a signature dict."""
    return hashlib.sha256(_canonical(signature).encode()).hexdigest()[:32]


def _flatten(d, prefix="") -> dict:
    out = {}
    for k, v in d.items() if isinstance(d, dict) else ():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def signature_diff(old: dict, new: dict) -> str:
    """Human-readable list of the fields in which two signatures differ."""
    a, b = _flatten(old), _flatten(new)
    parts = [
        f"{k} ({a.get(k)!r} vs {b.get(k)!r})"
        for k in sorted(set(a) | set(b))
        if _canonical(a.get(k)) != _canonical(b.get(k))
    ]
    return ", ".join(parts) if parts else "nothing visible"


def _create_array(group, name: str, data: np.ndarray):
    if hasattr(group, "create_array"):  # zarr 3
        arr = group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=data.shape,
            compressors=None,
            filters=None,
        )
    else:  # pragma: no cover - zarr 2
        arr = group.create_dataset(
            name, shape=data.shape, dtype=data.dtype, chunks=data.shape, compressor=None
        )
    arr[...] = data


class CacheEntry:
    """The cached embeddings of one image under one signature (one tile per group)."""

    def __init__(self, path: Path, signature: dict, tmp_root: Path, owner=None):
        self.path = Path(path)
        self.signature = signature
        self._tmp = tmp_root
        self._owner = owner

    def tiles(self) -> list[str]:
        """Names of the tiles stored (complete) in this entry."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir())

    def load(self, tile: str) -> tuple[dict | None, str | None]:
        """``(arrays, None)`` if good, ``(None, None)`` if absent, ``(None, reason)`` if bad.

        A bad tile (unreadable, wrong shape, checksum mismatch) is deleted.
        """
        import zarr

        path = self.path / tile
        if not path.is_dir():
            return None, None
        try:
            g = zarr.open_group(str(path), mode="r")
            spec = dict(g.attrs).get("arrays")
            if not isinstance(spec, dict) or not spec:
                raise ValueError("no array list in its attributes")
            out = {}
            for name, meta in spec.items():
                arr = np.asarray(g[name][...])
                if list(arr.shape) != list(meta["shape"]) or str(arr.dtype) != meta["dtype"]:
                    raise ValueError(
                        f"{name} has shape {arr.shape} {arr.dtype}, expected "
                        f"{tuple(meta['shape'])} {meta['dtype']}"
                    )
                if zlib.crc32(np.ascontiguousarray(arr)) != int(meta["crc32"]):
                    raise ValueError(f"{name} fails its checksum")
                out[name] = arr
        except Exception as e:  # any damage means: do not use, recompute
            self.discard(tile)
            return None, f"cached tile {tile} is corrupt ({type(e).__name__}: {e})"
        return out, None

    def save(self, tile: str, arrays: dict[str, np.ndarray]) -> Path | None:
        """Store one tile's arrays atomically (temporary folder, then rename).

        Returns the tile's folder, or ``None`` when the cache cannot be written
        (the owning :class:`EmbeddingCache` then warns once and stops writing).
        """
        if self._owner is not None and self._owner.disabled:
            return None
        try:
            return self._save(tile, arrays)
        except OSError as e:
            if self._owner is None:
                raise
            self._owner.disable(e)
            return None

    def _save(self, tile: str, arrays: dict[str, np.ndarray]) -> Path:
        import zarr

        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.zarr"
        try:
            g = zarr.open_group(str(tmp), mode="w")
            meta = {}
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                _create_array(g, name, arr)
                meta[name] = {
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "crc32": int(zlib.crc32(arr)),
                }
            g.attrs.update({"arrays": meta})
            self.path.mkdir(parents=True, exist_ok=True)
            self.discard(tile)
            os.replace(tmp, self.path / tile)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.path / tile

    def discard(self, tile: str) -> None:
        """Remove one tile (if present)."""
        shutil.rmtree(self.path / tile, ignore_errors=True)


class EmbeddingCache:
    """Embeddings on disk, keyed by a signature dict.

    Parameters
    ----------
    root : path-like, optional
        Cache folder; default :func:`cache_dir`.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else cache_dir()
        self._tmp = self.root / ".tmp"
        #: Why the cache stopped writing (``None`` while it works).
        self.disabled: str | None = None

    def disable(self, error: OSError) -> None:
        """Stop writing to this cache after ``error``; warn once per cache folder and process."""
        if self.disabled is None:
            self.disabled = error.strerror or str(error) or type(error).__name__
        key = str(self.root)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(
                f"The embedding cache {self.root} cannot be written ({self.disabled}); "
                "embeddings are computed without it (set MICROSEG_CACHE_DIR to a writable folder).",
                stacklevel=2,
            )

    def entry_path(self, signature: dict) -> Path:
        image = str(signature.get("image", "unknown"))[:24]
        return self.root / image / f"{signature_key(signature)}.zarr"

    @staticmethod
    def _read_attrs(path: Path) -> dict:
        import zarr

        return dict(zarr.open_group(str(path), mode="r").attrs)

    def open(self, signature: dict) -> tuple[CacheEntry, str]:
        """The entry for ``signature`` and what was found.

        Returns
        -------
        entry : CacheEntry
            Always usable (created empty when needed).
        found : str
            ``"hit"`` (a valid entry exists), ``"new"`` (nothing cached for this
            image), or a reason why cached data cannot be used (stale or
            mismatched signature, damaged entry, or an embedding of this image
            made with another model/normalisation/tiling).
        """
        path = self.entry_path(signature)
        reason = None
        if path.is_dir():
            try:
                attrs = self._read_attrs(path)
                if attrs.get("format") != FORMAT:
                    reason = f"cache format {attrs.get('format')!r} is not {FORMAT}"
                elif _canonical(attrs.get("signature")) != _canonical(signature):
                    reason = "stored signature does not match, differs in " + signature_diff(
                        attrs.get("signature") or {}, signature
                    )
                else:
                    return CacheEntry(path, signature, self._tmp, self), "hit"
            except Exception as e:
                reason = f"cache entry is corrupt ({type(e).__name__}: {e})"
            shutil.rmtree(path, ignore_errors=True)
        else:
            reason = self._sibling_reason(path.parent, signature)
        if not self.disabled:
            try:
                self._create(path, signature)
            except OSError as e:
                self.disable(e)
        return CacheEntry(path, signature, self._tmp, self), reason or "new"

    def _sibling_reason(self, folder: Path, signature: dict) -> str | None:
        """Why other entries of the same image do not fit, or None if there are none."""
        if not folder.is_dir():
            return None
        for other in sorted(folder.glob("*.zarr")):
            with contextlib.suppress(Exception):
                sig = self._read_attrs(other).get("signature")
                if isinstance(sig, dict):
                    return "cached embedding of this image differs in " + signature_diff(
                        sig, signature
                    )
        return None

    def _create(self, path: Path, signature: dict) -> None:
        import zarr

        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.zarr"
        try:
            g = zarr.open_group(str(tmp), mode="w")
            g.attrs.update({"format": FORMAT, "signature": json.loads(_canonical(signature))})
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another process won the race: keep theirs
                os.rename(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def size_bytes(self) -> int:
        """Total size of the cache folder."""
        return (
            sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
            if self.root.is_dir()
            else 0
        )

    def clear(self) -> None:
        """Delete every cached embedding."""
        shutil.rmtree(self.root, ignore_errors=True)
