"""SAM2 / SAM2.1 checkpoints: registry, where they live, download and checksums.

Where a checkpoint is looked for, first match wins:

1. an explicit path given by the caller (a file the user chose);
2. the ``MICROSEG_SAM2_CHECKPOINT`` environment variable;
3. ``weights_dir() / <official file name>`` (``MICROSEG_WEIGHTS_DIR`` or the
   per-user data folder).

Meta publishes no checksums for these files, so the registry's ``sha256`` is
None until a maintainer records verified values; :func:`download` then refuses
to run unless ``verify=False`` (``--no-verify`` on the command line).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_json_atomic
from .errors import MicrosegError
from .hashing import file_sha256

#: Environment variable naming one checkpoint file to use.
ENV_CHECKPOINT = "MICROSEG_SAM2_CHECKPOINT"
#: Environment variable overriding :func:`weights_dir`.
ENV_WEIGHTS_DIR = "MICROSEG_WEIGHTS_DIR"
#: Backend that needs no download, offered when SAM2 weights are missing.
OFFLINE_DEFAULT_MODEL = "microseg-promptable"

_BASE_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_BASE_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_CFG = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
_MB = {  # approximate file sizes, for messages only
    ("sam2.1", "tiny"): 149,
    ("sam2.1", "small"): 176,
    ("sam2.1", "base_plus"): 309,
    ("sam2.1", "large"): 857,
    ("sam2", "tiny"): 149,
    ("sam2", "small"): 176,
    ("sam2", "base_plus"): 309,
    ("sam2", "large"): 857,
}


class WeightsMissingError(MicrosegError):
    """A model's checkpoint file is not on disk (the message says where to put it)."""


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable SAM2 checkpoint.

    Attributes
    ----------
    model_id : str
        ``"<family>-<size>"``, e.g. ``"sam2.1-tiny"``.
    family : str
        ``"sam2"`` or ``"sam2.1"``.
    size : str
        ``"tiny"``, ``"small"``, ``"base_plus"`` or ``"large"``.
    config : str
        Hydra config name inside the ``sam2`` package.
    filename : str
        Official checkpoint file name.
    url : str
        Official download URL.
    sha256 : str or None
        Verified SHA-256 of the file, None when unknown.
    approx_mb : int
        Approximate size in MB.
    """

    model_id: str
    family: str
    size: str
    config: str
    filename: str
    url: str
    sha256: str | None
    approx_mb: int


def _spec(family: str, size: str) -> ModelSpec:
    if family == "sam2.1":
        cfg = f"configs/sam2.1/sam2.1_hiera_{_CFG[size]}.yaml"
        fname, base = f"sam2.1_hiera_{size}.pt", _BASE_21
    else:
        cfg = f"configs/sam2/sam2_hiera_{_CFG[size]}.yaml"
        fname, base = f"sam2_hiera_{size}.pt", _BASE_20
    return ModelSpec(
        f"{family}-{size}", family, size, cfg, fname, base + fname, None, _MB[family, size]
    )


#: Every known checkpoint by model id (SAM2.1 first).
MODELS: dict[str, ModelSpec] = {
    s.model_id: s for s in (_spec(f, z) for f in ("sam2.1", "sam2") for z in _CFG)
}
#: Model used when none is named.
DEFAULT_MODEL = "sam2.1-tiny"


def get_spec(model_id: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``model_id`` (``"sam2.1-base-plus"`` is accepted too)."""
    key = model_id.strip().lower().replace("base-plus", "base_plus").replace("b+", "base_plus")
    if key not in MODELS:
        raise MicrosegError(f"Unknown SAM2 model {model_id!r}; known: {', '.join(MODELS)}.")
    return MODELS[key]


def weights_dir() -> Path:
    """Folder for downloaded checkpoints (``$MICROSEG_WEIGHTS_DIR`` or user data dir/weights)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-microseg")) / "weights"


def default_path(model_id: str) -> Path:
    """Where :func:`download` puts ``model_id`` and where it is looked for by default."""
    return weights_dir() / get_spec(model_id).filename


def find_weights(model_id: str, path: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint file to use for ``model_id``, or None if there is none.

    Parameters
    ----------
    model_id : str
        A key of :data:`MODELS`.
    path : path-like, optional
        A file the user chose; it must exist.

    Raises
    ------
    WeightsMissingError
        If ``path`` or ``$MICROSEG_SAM2_CHECKPOINT`` names a missing file (an
        explicit choice is never silently replaced by another file).
    """
    spec = get_spec(model_id)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"The chosen SAM2 checkpoint {p} does not exist.")
        return p
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise WeightsMissingError(
                f"{ENV_CHECKPOINT} is set to {p}, which does not exist. Fix or unset it."
            )
        return p
    p = weights_dir() / spec.filename
    return p if p.is_file() else None


def missing_weights_message(model_id: str) -> str:
    """Exactly which file to place where for ``model_id``, and the alternatives."""
    spec = get_spec(model_id)
    target = default_path(model_id)
    return (
        f"SAM2 weights for '{spec.model_id}' are not installed. Place the file "
        f"{spec.filename} (about {spec.approx_mb} MB, from {spec.url}) at {target}, "
        f"or run `microseg weights download {spec.model_id}`, or set {ENV_CHECKPOINT} "
        f"to the checkpoint's path. Without it, use the offline default model "
        f"'{OFFLINE_DEFAULT_MODEL}', which needs no download."
    )


def resolve_weights(model_id: str, path: str | os.PathLike | None = None) -> Path:
    """Like :func:`find_weights` but raise :class:`WeightsMissingError` when absent."""
    found = find_weights(model_id, path)
    if found is None:
        raise WeightsMissingError(missing_weights_message(model_id))
    return found


#: Hex SHA-256 of a file, streamed (see :func:`~napari_microseg.core.hashing.file_sha256`).
sha256_file = file_sha256


def _checksum_memo_path() -> Path:
    return weights_dir() / ".checksums.json"


def weights_checksum(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint, remembered per (path, size, mtime) so it is hashed once."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = _checksum_memo_path()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(key), str):
        return memo[key]
    digest = sha256_file(p)
    memo = {
        k: v
        for k, v in (memo.items() if isinstance(memo, dict) else ())
        if not k.startswith(f"{p}|")
    }
    memo[key] = digest
    try:
        write_json_atomic(memo_path, memo)
    except OSError:  # a read-only cache folder only costs re-hashing next time
        pass
    return digest


def download(
    model_id: str,
    *,
    dest: str | os.PathLike | None = None,
    url: str | None = None,
    sha256: str | None = None,
    verify: bool = True,
    progress: bool = True,
) -> Path:
    """Download ``model_id``'s checkpoint with pooch; return its path.

    Parameters
    ----------
    model_id : str
        A key of :data:`MODELS`.
    dest : path-like, optional
        Folder to put the file in (default :func:`weights_dir`).
    url, sha256 : str, optional
        A mirror and its file's SHA-256, overriding the registry.
    verify : bool
        Refuse to download without a known SHA-256 (default). With False, an
        unverified file is accepted (its hash is printed by the CLI).
    progress : bool
        Show a progress bar (needs tqdm).

    Raises
    ------
    MicrosegError
        No known checksum and ``verify`` is True, the checksum does not match
        (no file is left behind), or the download failed.
    """
    import pooch

    spec = get_spec(model_id)
    url = url or spec.url
    digest = (sha256 or spec.sha256 or "").lower().removeprefix("sha256:") or None
    if digest is None and verify:
        raise MicrosegError(
            f"No verified SHA-256 is recorded for {spec.filename}; refusing to download it "
            f"unverified. Re-run with --no-verify (verify=False) to accept it anyway."
        )
    folder = Path(dest).expanduser() if dest is not None else weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            progress = False
    try:
        out = pooch.retrieve(
            url,
            known_hash=f"sha256:{digest}" if digest else None,
            fname=spec.filename,
            path=folder,
            progressbar=progress,
        )
    except ValueError as e:  # pooch: hash mismatch (the temporary file is already removed)
        raise MicrosegError(
            f"Download of {spec.filename} from {url} failed verification: {e}"
        ) from e
    except Exception as e:  # requests / OS errors
        raise MicrosegError(f"Download of {spec.filename} from {url} failed: {e}") from e
    return Path(out)
