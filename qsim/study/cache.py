"""On-disk cache of finished design points: one small file per key, written atomically.

A study killed at any moment leaves only complete files behind (write to a temp file,
fsync, then `os.replace`), so a re-run recomputes exactly what is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


class ResultCache:
    def __init__(self, root: Path):
        self.root = Path(root)

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
        if not path.exists():
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
        if not path.exists():
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
