"""A small on-disk JSON cache for sensitivities and re-evaluations.

Why its own: `qsim.study` owns the study cache and nothing below it may import it (see
DESIGN.md). Entries are one file per key, written atomically (temp file + `os.replace`), so
an interrupted search keeps everything it finished. A key hashes everything an entry
depends on: the network's weights, the samples, the settings, and the source of the code
that computes the numbers (`code_hash`: qsim/kernels, qsim/quant, the executors in qsim/nets and the search modules
that build their inputs),
so an edit to the executor never serves a stale sensitivity.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

QSIM_ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("kernels", "quant")
# the executors and what feeds them (not every network module: another network's edit changes no number here)
CODE_FILES = ("nets/quant_exec.py", "nets/float_exec.py", "nets/models.py", "nets/data.py", "nets/metrics.py",
              "nets/registry.py", "nets/train.py", "nets/minilm.py", "nets/tokenizer.py",
              "search/assign.py", "search/sensitivity.py", "search/transformer.py")
DEFAULT_DIR = Path("results") / ".search_cache"


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
    """Hash of the .py files that produce sensitivities and metrics (executor, kernels, quantizers,
    and the search modules that build the executor's inputs)."""
    h = hashlib.sha256()
    paths = [p for d in CODE_DIRS for p in sorted((QSIM_ROOT / d).rglob("*.py"))]
    for path in paths + [QSIM_ROOT / f for f in CODE_FILES]:
        if "__pycache__" not in path.parts and path.name != "commands.py":
            h.update(path.relative_to(QSIM_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def arrays_hash(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def weights_hash(network: str) -> str:
    """Content hash of a network's fp32 weights (names and values)."""
    from qsim.nets import get_network
    from qsim.search import transformer

    if transformer.is_transformer(network):
        from qsim.nets.minilm import load_weights

        w = load_weights()
    else:
        w = get_network(network).weights()
    return arrays_hash([np.frombuffer(k.encode(), np.uint8) for k in sorted(w)] + [w[k] for k in sorted(w)])


class JsonCache:
    """get/put JSON records by (kind, key); `read=False` recomputes and rewrites everything."""

    def __init__(self, root=DEFAULT_DIR, read: bool = True):
        self.root = Path(root)
        self.read = read
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.json"

    def get(self, kind: str, key: str):
        path = self._path(kind, key)
        if self.read and path.exists():
            try:
                rec = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                rec = None
            if rec is not None:
                self.hits += 1
                return rec
        self.misses += 1
        return None

    def put(self, kind: str, key: str, record) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class NoCache(JsonCache):
    """Compute everything, keep nothing."""

    def __init__(self):
        super().__init__(Path(os.devnull), read=False)

    def put(self, kind, key, record) -> None:
        return None
