"""The prepared integer elementwise ops of the plan (`qsim.onnxrun.plan`): QLinearGlobalAveragePool,
the 256-entry table ops (QLinearSigmoid / QLinearLeakyRelu), QLinearAdd / QLinearMul and
QLinearConcat, each fused into one Numba pass from its constant scales and zero points.

Split from `plan` by topic; `plan.SPECIALIZERS` says which op each specialiser serves.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.f32gemm import _fma32
from qsim.onnxrun.specbase import _QDTYPES, F32, _scalar_scale, _scalar_zp


@njit(cache=True, nogil=True)
def qgap_rows(x, zx, scale, zy, lo, hi, out):
    """`contrib.qlinear_global_average_pool` per row of x (rows, n): exact sum − zx·n, then
    rne(clamp(fl32(fl32(sum) · scale), lo − zy, hi − zy)) + zy."""
    r_, n_ = x.shape
    flo = np.float32(lo - zy)
    fhi = np.float32(hi - zy)
    for r in range(r_):
        acc = np.int64(0)
        for i in range(n_):
            acc += np.int64(x[r, i])
        acc -= zx * n_
        v = np.float32(acc) * scale
        v = min(max(v, flo), fhi)
        out[r] = np.int64(np.rint(v)) + zy
    return out


def _spec_qlinear_gap(generic, node, attrs, consts, ex):
    from qsim.onnxrun.ops import int_range

    consts = consts + [None] * (5 - len(consts))
    _, xs, xz, ys, yz = consts[:5]
    if int(attrs.get("channels_last", 0)):
        return None
    sx, sy = _scalar_scale(xs), _scalar_scale(ys)
    zx, zy = _scalar_zp(xz), _scalar_zp(yz)
    if sx is None or sy is None or zx is None or zy is None or zx[1] is None or zx[1] != zy[1] \
            or zx[1] not in _QDTYPES[:2]:
        return None
    dt = zx[1]
    lo, hi = int_range(dt)

    def fast(ctx, args, attrs_):
        x = args[0]
        if x.dtype != dt or x.ndim < 3:
            return generic(ctx, args, attrs_)
        n = int(np.prod(x.shape[2:]))
        scale = F32(sx / F32(sy * F32(n)))
        rows = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], n)
        out = np.empty(rows.shape[0], dt)
        qgap_rows(rows, zx[0], scale, zy[0], lo, hi, out)
        ctx.integer_node = True
        return [out.reshape(x.shape[:2] + (1,) * (x.ndim - 2))]

    return fast


def _spec_qlinear_table(fn_of_attrs):
    """QLinearSigmoid / QLinearLeakyRelu: ORT's 256-entry table built once from the constant scales."""
    def maker(generic, node, attrs, consts, ex):
        from qsim.onnxrun.contrib import _lookup, _table

        consts_ = consts + [None] * (5 - len(consts))
        _, xs, xz, ys, yz = consts_[:5]
        sx, sy = _scalar_scale(xs), _scalar_scale(ys)
        zx, zy = _scalar_zp(xz), _scalar_zp(yz)
        if sx is None or sy is None or zx is None or zy is None or zx[1] is None or zx[1] != zy[1] \
                or zx[1] not in _QDTYPES[:2]:
            return None
        dt = zx[1]
        table = _table(sx, zx[0], sy, zy[0], dt, fn_of_attrs(attrs))

        def fast(ctx, args, attrs_):
            x = args[0]
            if x.dtype != dt:
                return generic(ctx, args, attrs_)
            ctx.integer_node = True
            return [_lookup(x, table)]

        return fast

    return maker


# -- QLinearAdd / QLinearMul (same-shape operands) -----------------------------------------------------------
@njit(cache=True, nogil=True)
def qadd_codes(a, b, ra, rb, fixed, lo, hi, out):
    """`qsim.onnxrun.contrib._add_kernel` mode 0 reading the 8-bit codes directly (no float32 copies)."""
    for i in range(out.size):
        v = _fma32(np.float32(a[i]), ra, _fma32(np.float32(b[i]), rb, fixed))
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out



@njit(cache=True, nogil=True)
def qadd_scalar(x, rx, fixed2, lo, hi, out):
    """`contrib._add_kernel` mode 1/2 (the other side one constant code, pre-added to fixed2)."""
    for i in range(out.size):
        v = _fma32(np.float32(x[i]), rx, fixed2)
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qmul_scalar(x, zx, term, ratio, zc, lo, hi, out):
    """`contrib._mul_kernel` with the other side one constant code (term = code − its zero point)."""
    for i in range(out.size):
        p = (np.int64(x[i]) - zx) * term
        v = np.float32(p) * ratio + zc
        q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
        out[i] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qmul_channel(x, zx, y, zy, mid, inner, ratio, zc, lo, hi, out):
    """`contrib._mul_kernel` on x times y broadcast: y[(i // inner) % mid] (one value per channel span)."""
    for r in range(out.size // inner):
        t = np.int64(y[r % mid]) - zy
        xs, os_ = x[r * inner:(r + 1) * inner], out[r * inner:(r + 1) * inner]  # slices: the loop vectorises
        for j in range(inner):
            p = (np.int64(xs[j]) - zx) * t
            v = np.float32(p) * ratio + zc
            q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
            os_[j] = min(max(np.int64(q), lo), hi)
    return out


@njit(cache=True, nogil=True)
def qadd_channel(x, rx, y, ry, fixed, mid, inner, lo, hi, out):
    """`contrib._add_kernel` mode 1/2 (y one value per innermost span, y[(i // inner) % mid])."""
    for r in range(out.size // inner):
        f = fixed + np.float32(y[r % mid]) * ry
        xs, os_ = x[r * inner:(r + 1) * inner], out[r * inner:(r + 1) * inner]
        for j in range(inner):
            v = _fma32(np.float32(xs[j]), rx, f)
            q = min(max(np.rint(v), np.float32(-32768.0)), np.float32(32767.0))
            os_[j] = min(max(np.int64(q), lo), hi)
    return out


def channel_span(full: tuple, small: tuple):
    """(mid, inner) when `small` broadcasts to `full` as one contiguous block of full's dims
    (e.g. (1, C, 1, 1) against (N, C, H, W): mid = C, inner = H·W), else None."""
    if len(small) > len(full):
        return None
    small = (1,) * (len(full) - len(small)) + tuple(small)
    keep = [d for d, n in enumerate(small) if n != 1]
    if not keep or keep[-1] - keep[0] + 1 != len(keep) or any(small[d] != full[d] for d in keep):
        return None
    return int(np.prod(full[keep[0]:keep[-1] + 1])), int(np.prod(full[keep[-1] + 1:]))


def _spec_qlinear_binary(kind):
    def maker(generic, node, attrs, consts, ex):
        from qsim.onnxrun.contrib import _fma, _mul_kernel
        from qsim.onnxrun.ops import int_range

        consts = consts + [None] * (8 - len(consts))
        _, as_, az, _, bs, bz, cs, cz = consts[:8]
        sa, sb, sc = _scalar_scale(as_), _scalar_scale(bs), _scalar_scale(cs)
        za, zb, zc = _scalar_zp(az), _scalar_zp(bz), _scalar_zp(cz)
        if None in (sa, sb, sc, za, zb, zc):
            return None
        dts = {d for d in (za[1], zb[1], zc[1]) if d is not None}
        if len(dts) != 1 or next(iter(dts)) not in _QDTYPES[:2]:
            return None
        dt = next(iter(dts))
        lo, hi = int_range(dt)
        if kind == "add":
            r_a, r_b = F32(sa / sc), F32(sb / sc)
            fixed = F32(F32(zc[0]) - _fma(r_a, F32(za[0]), F32(r_b * F32(zb[0]))))
        else:
            ratio = F32(F32(sa * sb) / sc)

        # one side a constant scalar (x·0.2 + 0.5 of HardSigmoid, ...): ORT's scalar-span kernel
        side = None
        for i_const, i_vec in ((0, 3), (3, 0)):
            cval = consts[i_const]
            if cval is not None and isinstance(cval, np.ndarray) and cval.size == 1 and cval.dtype == dt:
                side = (i_const, i_vec, int(cval.reshape(-1)[0]), cval.ndim)
                break
        if side is not None:
            i_const, i_vec, code, c_ndim = side
            if kind == "add":  # mode 1 (a scalar) / 2 (b scalar): fixed' = fl(fixed + fl(code·r_const))
                r_vec = r_b if i_vec == 3 else r_a
                r_const = r_a if i_const == 0 else r_b
                fixed2 = F32(fixed + F32(F32(code) * r_const))
            else:
                z_vec = (zb if i_vec == 3 else za)[0]
                term = code - (za if i_const == 0 else zb)[0]

            c_arr, zcf = consts[i_const], F32(zc[0])

            def fast_scalar(ctx, args, attrs_):
                x = args[i_vec]
                if args[i_const] is not c_arr or x.dtype != dt or x.size <= 1 or x.ndim < c_ndim \
                        or not x.flags.c_contiguous:
                    return generic(ctx, args, attrs_)
                ctx.integer_node = True
                out = np.empty_like(x)
                if kind == "add":
                    qadd_scalar(x.reshape(-1), r_vec, fixed2, lo, hi, out.reshape(-1))
                else:
                    qmul_scalar(x.reshape(-1), z_vec, term, ratio, zcf, lo, hi, out.reshape(-1))
                return [out]

            return fast_scalar

        spans: dict = {}
        zcf = F32(zc[0])

        def one_code(ctx, x, s_, vec_is_b):
            """One side a single code computed at run time: the scalar-span kernel (mode 1 / 2)."""
            code = int(s_.reshape(-1)[0])
            ctx.integer_node = True
            out = np.empty_like(x)
            if kind == "add":
                r_vec, r_s = (r_b, r_a) if vec_is_b else (r_a, r_b)
                qadd_scalar(x.reshape(-1), r_vec, F32(fixed + F32(F32(code) * r_s)), lo, hi, out.reshape(-1))
            else:
                z_vec, z_s = (zb[0], za[0]) if vec_is_b else (za[0], zb[0])
                qmul_scalar(x.reshape(-1), z_vec, code - z_s, ratio, zcf, lo, hi, out.reshape(-1))
            return [out]

        def fast(ctx, args, attrs_):
            a, b = args[0], args[3]
            if (a.size == 1) != (b.size == 1):
                x, s_ = (b, a) if a.size == 1 else (a, b)
                if x.dtype != dt or s_.dtype != dt or x.size <= 1 or s_.ndim > x.ndim or not x.flags.c_contiguous:
                    return generic(ctx, args, attrs_)
                return one_code(ctx, x, s_, a.size == 1)
            if a.dtype != dt or b.dtype != dt or a.size <= 1 or b.size <= 1 \
                    or not a.flags.c_contiguous or not b.flags.c_contiguous:
                return generic(ctx, args, attrs_)
            if a.shape != b.shape:  # one side one value per channel span (SE blocks' x·gate, biases)
                key = (a.shape, b.shape)
                span = spans.get(key, 0)
                if span == 0:
                    span = None
                    for i_full, full, small in ((0, a, b), (3, b, a)):
                        cs = channel_span(full.shape, small.shape) if full.size > small.size else None
                        # add: the generic op's mode 1/2 only where the span's last dim is broadcast
                        if cs is not None and cs[1] > 1 and (kind == "mul" or full.shape[-1] != 1):
                            span = (i_full, cs[0], cs[1])
                    spans[key] = span
                if span is None:
                    return generic(ctx, args, attrs_)
                i_full, mid, inner = span
                full, small = (a, b) if i_full == 0 else (b, a)
                ctx.integer_node = True
                out = np.empty(full.shape, dt)
                if kind == "add":
                    rf, rs = (r_a, r_b) if i_full == 0 else (r_b, r_a)
                    qadd_channel(full.reshape(-1), rf, small.reshape(-1), rs, fixed, mid, inner, lo, hi,
                                 out.reshape(-1))
                else:
                    zf, zs = (za[0], zb[0]) if i_full == 0 else (zb[0], za[0])
                    qmul_channel(full.reshape(-1), zf, small.reshape(-1), zs, mid, inner, ratio, zcf,
                                 lo, hi, out.reshape(-1))
                return [out]
            ctx.integer_node = True
            out = np.empty_like(a)
            if kind == "add":
                qadd_codes(a.reshape(-1), b.reshape(-1), r_a, r_b, fixed, lo, hi, out.reshape(-1))
            else:
                _mul_kernel(a.reshape(-1), b.reshape(-1), za[0], zb[0], ratio, zcf, lo, hi, out.reshape(-1))
            return [out]

        return fast

    return maker


# -- QLinearConcat ------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def table_rows(x, table, off, out):
    """out[r, off + j] = table[x[r, j]] (bytes: the codes of one QLinearConcat input requantized)."""
    for r in range(x.shape[0]):
        src = x[r]
        dst = out[r, off:off + x.shape[1]]
        for j in range(x.shape[1]):
            dst[j] = table[src[j]]


def _spec_qlinear_concat(generic, node, attrs, consts, ex):
    """Constant scales / zero points: each input's requantization table (`contrib._table` with the
    identity) built once, inputs whose scale and zero point equal the output's copied as they are."""
    from qsim.onnxrun.contrib import _table

    if len(consts) < 5 or (len(consts) - 2) % 3 or "axis" not in attrs:
        return None
    ys, yz = _scalar_scale(consts[0]), _scalar_zp(consts[1])
    if ys is None or yz is None or yz[1] not in _QDTYPES[:2]:
        return None
    dt = yz[1]
    tables = []
    for i in range(2, len(consts), 3):
        xs, xz = _scalar_scale(consts[i + 1]), _scalar_zp(consts[i + 2])
        if xs is None or xz is None or xz[1] is None:
            return None
        tables.append(None if (xs == ys and xz[0] == yz[0]) else _table(xs, xz[0], ys, yz[0], dt, lambda v: v))
    axis = int(attrs["axis"])
    n = len(tables)
    identity = np.arange(256, dtype=np.uint8).view(dt)
    copies = [t is None for t in tables]
    tables = [identity if t is None else t for t in tables]

    layouts: dict = {}

    def fast(ctx, args, attrs_):
        xs = args[2::3]
        if len(xs) != n or any(x is None or x.dtype != dt or not x.flags.c_contiguous for x in xs):
            return generic(ctx, args, attrs_)
        key = tuple(x.shape for x in xs)
        lay = layouts.get(key)
        if lay is None:  # output shape, rows and each input's width, once per input shapes
            nd = xs[0].ndim
            ax = axis + nd if axis < 0 else axis
            if not 0 <= ax < nd or any(x.ndim != nd or x.shape[:ax] != xs[0].shape[:ax]
                                       or x.shape[ax + 1:] != xs[0].shape[ax + 1:] for x in xs):
                return generic(ctx, args, attrs_)
            shape = list(xs[0].shape)
            shape[ax] = sum(x.shape[ax] for x in xs)
            outer = int(np.prod(shape[:ax]))
            lay = layouts[key] = (tuple(shape), outer, [x.size // outer if outer else 0 for x in xs])
        shape, outer, widths = lay
        y = np.empty(shape, dt)
        y2 = y.reshape(outer, -1).view(np.uint8) if outer else y.reshape(0, 0).view(np.uint8)
        off = 0
        for x, t, width, same in zip(xs, tables, widths, copies):
            if same:  # the output's scale and zero point: the codes as they are
                y2[:, off:off + width] = x.reshape(outer, width).view(np.uint8)
            else:
                table_rows(x.reshape(outer, width).view(np.uint8), t.view(np.uint8), off, y2)
            off += width
        ctx.integer_node = True
        return [y]

    return fast
