"""The constant-operand checks and dtypes every prepared-plan specialiser shares.

Its own module so that the plan core (`qsim.onnxrun.plan`) and the specialiser modules
(`qconv`, `qelementwise`, `floatplan`, `exactconv`, ...) import them without importing each other.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
_F32 = np.dtype(np.float32)
_QDTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16"))


def _scalar_scale(s) -> F32 | None:
    """A constant per-tensor float32 scale, finite and > 0, else None."""
    if s is None or not isinstance(s, np.ndarray) or s.dtype != _F32 or s.size != 1 or s.ndim > 1:
        return None
    v = F32(s.reshape(()))
    return v if np.isfinite(v) and v > 0 else None


def _scalar_zp(z):
    """(int value, dtype) of a constant scalar zero point; (0, None) when absent; None if not usable."""
    if z is None:
        return 0, None
    if not isinstance(z, np.ndarray) or z.size != 1 or z.ndim > 1 or z.dtype.kind not in "iu":
        return None
    return int(z.reshape(())), z.dtype
