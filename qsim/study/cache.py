"""On-disk cache of finished design points: one small file per key, written atomically.

A study killed at any moment leaves only complete files behind (write to a temp file,
fsync, then `os.replace`), so a re-run recomputes exactly what is missing.

A key is the hash of everything the entry depends on (see `qsim.study.runner`): the
config, the qsim source (`source_hash`: every ``qsim/**/*.py`` file), and for accuracy
the network's weights and data set (`network_fingerprint`), for cost the profile's
content. Change any of them and the entry is recomputed, never served stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

QSIM_ROOT = Path(__file__).resolve().parent.parent


def _sha() -> "hashlib._Hash":
    return hashlib.sha256()


@functools.lru_cache(maxsize=None)
def source_hash(root: Path = QSIM_ROOT) -> str:
    """Hash of every ``*.py`` file of the qsim package under `root` (path + content), once per process.

    Deliberately the whole tree: an edit anywhere in the code that computes a number
    (kernels, quantizers, executors, cost models) invalidates the cached numbers."""
    h = _sha()
    for path in sorted(Path(root).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_FILE_HASHES: dict = {}


def file_hash(path: Path) -> str:
    """Content hash of a file (re-read whenever its size or modification time changes)."""
    path = Path(path)
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if stamp not in _FILE_HASHES:
        h = _sha()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[stamp] = h.hexdigest()[:16]
    return _FILE_HASHES[stamp]


def arrays_hash(arrays) -> str:
    """Hash of arrays (dtype, shape and bytes), in the order given."""
    h = _sha()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _dataset_hash(dataset: str) -> str:
    from qsim.nets.data import load_dataset

    ds = load_dataset(dataset)
    return arrays_hash([ds.x_train, ds.y_train, ds.x_test, ds.y_test])


def _tree_hash(root: Path) -> str:
    h = _sha()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + file_hash(path).encode())
    return h.hexdigest()[:16]


def network_fingerprint(name: str) -> dict:
    """What an accuracy evaluation of network `name` reads besides the code: its weights and data.

    Sequential networks: the weights file (or in-memory weights) and the loaded data set
    arrays (train split included: calibration samples come from it). MiniLM: the
    safetensors file of the installed weights package and the bundled similarity data."""
    from qsim.nets import get_network

    net = get_network(name)
    if net.params is not None:
        weights = arrays_hash([net.params[k] for k in sorted(net.params)])
    elif net.arch is not None:
        weights = file_hash(net.weights_path) if net.weights_path.exists() else "missing"
    elif net.name == "minilm":
        from qsim.nets import minilm

        return {"weights": file_hash(minilm.model_dir() / "model.safetensors"), "data": _tree_hash(minilm.DATA)}
    else:
        raise ValueError(f"network {name!r} has its own evaluator: the study cache cannot fingerprint its weights "
                         f"and data; run it outside a study or give it an arch")
    return {"weights": weights, "data": _dataset_hash(net.dataset)}


class ResultCache:
    """`read=False` (``qsim study run --fresh``): every lookup misses, every result is rewritten."""

    def __init__(self, root: Path, read: bool = True):
        self.root = Path(root)
        self.read = read

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def _atomic_write(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- JSON records (one accuracy evaluation each) --------------------------------
    def get_json(self, kind: str, key: str) -> dict | None:
        path = self._path(kind, key, ".json")
        if not self.read or not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return None  # unreadable leftovers are recomputed, never trusted

    def put_json(self, kind: str, key: str, record: dict) -> None:
        data = json.dumps(record, sort_keys=True, default=_json_default).encode()
        self._atomic_write(self._path(kind, key, ".json"), lambda fh: fh.write(data))

    # -- tables (a batch of cost rows each) ------------------------------------------
    def get_frame(self, kind: str, key: str) -> pd.DataFrame | None:
        path = self._path(kind, key, ".parquet")
        if not self.read or not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - a torn file from an old crash is recomputed
            return None

    def put_frame(self, kind: str, key: str, frame: pd.DataFrame) -> None:
        self._atomic_write(self._path(kind, key, ".parquet"), lambda fh: frame.to_parquet(fh, index=False))


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in the result cache")
