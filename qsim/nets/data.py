"""Real data sets for the networks, loaded offline and cached in-process.

* `mnist`: 10,000 real MNIST digits shipped in `qsim/data/mnist/` (see its README for
  provenance and licence). The file is sorted by class, so a seeded permutation
  gives the fixed 8,000 train / 2,000 test split.
* `digits`: scikit-learn's `load_digits()` (1,797 8×8 digits, UCI optdigits), seeded
  1,437 / 360 split.
* `mnist1d`: regenerated bit for bit with `mnist1d.data.make_dataset(get_dataset_args())`
  (never `get_dataset()`, which downloads): the official 4,000 / 1,000 split. Generation
  takes seconds, so the arrays are cached in `cache_dir()` keyed by package version and
  arguments.

* `fashion_mnist`: a class-balanced 10,000 train / 3,000 test subset of Fashion-MNIST
  shipped in `qsim/data/fashion_mnist/` (see its README for provenance and licence).

Images are float32 NCHW in [0, 1]; 1-D signals are (N, 1, 1, L).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "digits", "mnist1d", "fashion_mnist")
SPLIT_SEED = 0


class MissingDependency(ImportError):
    """An optional package is not installed; the message carries the install command."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int = 10

    def calibration(self, size: int) -> np.ndarray:
        """The first `size` training samples of a fixed seeded permutation (never test data)."""
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"calib_size must be a positive integer, got {size!r}")
        order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(self.x_train))
        return self.x_train[np.sort(order[: min(int(size), len(order))])]


def _freeze(*arrays):
    for a in arrays:
        a.setflags(write=False)


def _split(x, y, n_test, seed=SPLIT_SEED):
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return x[train], y[train], x[test], y[test]


def _mnist() -> Dataset:
    path = resources.files("qsim") / "data" / "mnist" / "mnist10k.npz"
    with resources.as_file(path) as p, np.load(p) as d:
        x = (d["x"].astype(np.float32) / np.float32(255.0))[:, None, :, :]
        y = d["y"].astype(np.int64)
    return Dataset("mnist", *_split(x, y, 2000))


def _fashion_mnist() -> Dataset:
    import io
    import lzma

    path = resources.files("qsim") / "data" / "fashion_mnist" / "fashion_mnist_13k.npz.xz"
    with resources.as_file(path) as p, np.load(io.BytesIO(lzma.decompress(p.read_bytes()))) as d:
        img = lambda a: (a.astype(np.float32) / np.float32(255.0))[:, None, :, :]  # noqa: E731
        return Dataset("fashion_mnist", img(d["x_train"]), d["y_train"].astype(np.int64), img(d["x_test"]),
                       d["y_test"].astype(np.int64))


def _digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependency("data set 'digits' needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = (d.data.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    return Dataset("digits", *_split(x, d.target.astype(np.int64), 360))


def cache_dir() -> Path:
    """Where regenerated data sets are cached: $QSIM_CACHE_DIR or ~/.cache/qsim."""
    return Path(os.environ.get("QSIM_CACHE_DIR") or Path.home() / ".cache" / "qsim")


def _mnist1d() -> Dataset:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise MissingDependency("data set 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    try:
        from importlib.metadata import version

        tag = version("mnist1d")
    except Exception:  # noqa: BLE001 - any metadata problem only disables the cache key's version
        tag = "unknown"
    key = hashlib.sha256(json.dumps([tag, vars(args)], sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    names = ("x", "y", "x_test", "y_test")
    d = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                d = {k: f[k] for k in names}
        except Exception:  # noqa: BLE001 - a damaged cache file is regenerated
            d = None
    if d is None:
        # Offline and deterministic (a few seconds); get_dataset() would download.
        full = make_dataset(args)
        d = {k: np.asarray(full[k]) for k in names}
        save_npz_atomic(path, d)
    as_signal = lambda a: np.asarray(a, dtype=np.float32).reshape(len(a), 1, 1, -1)  # noqa: E731
    return Dataset("mnist1d", as_signal(d["x"]), np.asarray(d["y"], np.int64), as_signal(d["x_test"]),
                   np.asarray(d["y_test"], np.int64))


def save_npz_atomic(path: Path, arrays: dict) -> None:
    """Atomic .npz write (temp file + rename); an unwritable cache directory just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass


@functools.lru_cache(maxsize=None)
def load_dataset(name: str) -> Dataset:
    """Load (once per process) one of `DATASETS`; arrays are read-only."""
    loaders = {"mnist": _mnist, "digits": _digits, "mnist1d": _mnist1d, "fashion_mnist": _fashion_mnist}
    if name not in loaders:
        raise ValueError(f"data set must be one of {list(DATASETS)}, got {name!r}")
    ds = loaders[name]()
    _freeze(ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    return ds
