"""Float outputs as TF Serving writes them in JSON.

TF Serving (``json_tensor.cc``, ``WriteDecimal``) writes a 32-bit float with six significant
digits (``printf("%g")``) when that text reads back as the same float, and with nine
otherwise: the float32 ``0.1`` is written ``0.1``, not ``0.10000000149011612``, and ``1/3`` is
``0.333333343``. :func:`tf_serving_values` gives, for a float32 array, the float64 values of
exactly those decimal texts, so that any JSON writer (orjson writes the shortest text of a
float64) produces numbers that read back as TF Serving's. 64-bit floats need nothing: TF
Serving's text for them reads back as the value itself.

The rounding is vectorised: each value is scaled by a power of ten that is exact in float64,
rounded to an integer of six (or nine) digits and scaled back by one correctly rounded division
or multiplication. Values where that could differ from ``printf`` (a scaled value within
1e-6 of a rounding tie, or a power of ten beyond 1e22) are formatted one by one.
"""

from __future__ import annotations

import struct

import numpy as np

#: Arrays this small are formatted value by value: quicker than the vectorised path.
_SMALL = 32
_FLOAT32 = struct.Struct("<f")
#: Exact float64 powers of ten, 10**0 .. 10**22.
_POW10 = np.array([10.0**k for k in range(23)])


def _round_significant(v: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """``v`` (finite, nonzero float64) rounded to ``digits`` significant digits, and a mask of
    the values that must be done one by one instead."""
    a = np.abs(v)
    e = np.floor(np.log10(a)).astype(np.int64)
    top, bottom = 10.0**digits, 10.0 ** (digits - 1)
    for _ in range(3):  # log10 may be one off next to a power of ten: correct and redo
        k = digits - 1 - e
        slow = np.abs(k) > 22
        kk = np.where(slow, 0, k)
        scale = _POW10[np.abs(kk)]
        up = kk >= 0
        scaled = np.where(up, a * scale, a / scale)
        m = np.rint(scaled)
        high = ~slow & (m >= top)
        low = ~slow & (m < bottom)
        if not (high.any() or low.any()):
            break
        e = e + high - low
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    out = np.where(up, m / scale, m * scale)
    return np.copysign(out, v), slow | high | low | near_tie


def _one(value: float) -> float:
    """TF Serving's decimal for one finite float32 value, formatted as ``printf`` does."""
    back = float(f"{value:.6g}")
    if _FLOAT32.pack(back) != _FLOAT32.pack(value):
        back = float(f"{value:.9g}")
    return back


def tf_serving_values(arr: np.ndarray) -> np.ndarray:
    """The float64 values of the decimal texts TF Serving writes for float32 array ``arr``."""
    v32 = np.asarray(arr, dtype=np.float32)
    v: np.ndarray = v32.astype(np.float64)
    if v.size <= _SMALL:
        flat = [_one(x) if x == x and abs(x) != np.inf else x for x in v.ravel().tolist()]
        return np.array(flat, dtype=np.float64).reshape(v.shape)
    out: np.ndarray = v.copy()
    regular = np.isfinite(v) & (v != 0)
    if not regular.any():
        return out
    values = v[regular]
    d6, slow6 = _round_significant(values, 6)
    d9, slow9 = _round_significant(values, 9)
    exact6 = d6.astype(np.float32) == v32[regular]
    chosen = np.where(exact6, d6, d9)
    slow = np.where(exact6, slow6, slow6 | slow9)
    if slow.any():
        chosen[slow] = [_one(x) for x in values[slow].tolist()]
    out[regular] = chosen
    return out
