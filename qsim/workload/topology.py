"""Read SCALE-Sim topology CSVs into a qsim `Workload`.

SCALE-Sim users describe networks in two CSV formats, told apart by the header:

* conv: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width,
  Channels, Num Filter, Strides,`` — one stride for both axes, no padding; SCALE-Sim
  computes ``ofmap = ceil((H - R + stride) / stride)``, i.e. ``(H - R) // stride + 1``,
  which is `Conv2d` with ``padding=0``. A name containing ``DP`` is depthwise in
  SCALE-Sim (it simulates one single-channel layer per channel, each with
  ``Num Filter`` filters): here one `Conv2d` with ``groups = Channels`` and
  ``Channels · Num Filter`` outputs, the same MACs.
* GEMM (``-i gemm``): ``Layer, M, N, K,``. SCALE-Sim maps a row to a convolution
  with ifmap M × K, filter 1 × K, 1 channel and N filters, so M is the number of
  output rows, N the output columns and K the reduction: `Dense(batch=M,
  in_features=K, out_features=N)` whose GEMM view is exactly (M, N, K).

A 1×1 convolution over a 1×1 input (a fully connected layer written in conv form)
becomes `Dense`. Rows end with a trailing comma in SCALE-Sim's files (its parser
drops the last field); the comma is optional here, and text after it (SCALE-Sim
files carry ``#dw`` remarks there) is ignored. An optional sparsity column
(``N:M``) is accepted only as ``1:1`` because qsim layers are dense.
"""

from __future__ import annotations

import re
from pathlib import Path

from qsim.workload.layers import Conv2d, Dense, Layer, Workload

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                "Channels", "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer", "M", "N", "K")
_SPARSITY_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def _norm(cell: str) -> str:
    return re.sub(r"[\s_]+", " ", cell.strip().lower())


def _fields(line: str) -> list[str]:
    """Split a row, dropping a trailing comma and a remark cell starting with '#' (and all after it)."""
    cells = [c.strip() for c in line.split(",")]
    for i, cell in enumerate(cells):
        if cell.startswith("#"):
            cells = cells[:i]
            break
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _detect(header: list[str], where: str) -> str:
    names = [_norm(c) for c in header]
    if len(names) >= 4 and names[1:4] == ["m", "n", "k"]:
        return "gemm"
    if len(names) >= 8 and names[1:7] == [_norm(c) for c in CONV_COLUMNS[1:7]] and names[7].startswith("stride"):
        return "conv"
    raise ValueError(
        f"{where}: cannot tell the topology format from the header {', '.join(header)!r}; expected the conv "
        f"header '{', '.join(CONV_COLUMNS)},' or the GEMM header '{', '.join(GEMM_COLUMNS)},'"
    )


def _int(cell: str, where: str, column: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        raise ValueError(f"{where}, column {column!r}: expected a positive integer, got {cell!r}") from None
    if value < 1:
        raise ValueError(f"{where}, column {column!r}: expected a positive integer, got {cell!r}")
    return value


def _check_sparsity(extra: list[str], where: str, ncols: int) -> None:
    if not extra:
        return
    m = _SPARSITY_RE.match(extra[0])
    if len(extra) > 1 or not m:
        raise ValueError(f"{where}: expected {ncols} values (plus an optional sparsity 'N:M'), "
                         f"got extra {', '.join(extra)!r}")
    if m.group(1) != m.group(2):
        raise ValueError(f"{where}, column 'Sparsity': {extra[0]!r} — qsim layers are dense; only '1:1' is allowed")


def _conv_row(cells: list[str], where: str) -> Layer:
    name = cells[0]
    h, w, r, s, c, n, stride = (_int(v, where, col) for v, col in zip(cells[1:8], CONV_COLUMNS[1:8]))
    if r > h or s > w:
        raise ValueError(f"{where}: filter {r}x{s} is larger than the ifmap {h}x{w} (SCALE-Sim pads nothing)")
    if "DP" in name:  # SCALE-Sim's depthwise marker
        return Conv2d(name=name, in_channels=c, out_channels=c * n, kernel_size=(r, s), input_hw=(h, w),
                      stride=stride, padding=0, groups=c, bias=False)
    if (h, w, r, s) == (1, 1, 1, 1):
        return Dense(name=name, in_features=c, out_features=n, batch=1, bias=False)
    return Conv2d(name=name, in_channels=c, out_channels=n, kernel_size=(r, s), input_hw=(h, w),
                  stride=stride, padding=0, bias=False)


def _gemm_row(cells: list[str], where: str) -> Layer:
    m, n, k = (_int(v, where, col) for v, col in zip(cells[1:4], GEMM_COLUMNS[1:4]))
    return Dense(name=cells[0], in_features=k, out_features=n, batch=m, bias=False)


def read_topology(path: str | Path, name: str | None = None) -> Workload:
    """Read a SCALE-Sim conv or GEMM topology CSV (format detected from the header).

    Raises FileNotFoundError for a missing file and ValueError naming the file, line
    and column for a bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"topology file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")]
    if not numbered:
        raise ValueError(f"{path}: empty topology file (no header)")
    head_no, head = numbered[0]
    kind = _detect(_fields(head), f"{path}, line {head_no}")
    columns = CONV_COLUMNS if kind == "conv" else GEMM_COLUMNS
    parse = _conv_row if kind == "conv" else _gemm_row
    layers: list[Layer] = []
    seen: dict[str, int] = {}
    for line_no, line in numbered[1:]:
        where = f"{path}, line {line_no}"
        cells = _fields(line)
        if len(cells) < len(columns):
            raise ValueError(f"{where}: expected {len(columns)} values ({', '.join(columns)}), "
                             f"got {len(cells)}: {line.strip()!r}")
        _check_sparsity(cells[len(columns):], where, len(columns))
        if not cells[0]:
            raise ValueError(f"{where}, column {columns[0]!r}: the layer name is empty")
        if cells[0] in seen:
            raise ValueError(f"{where}, column {columns[0]!r}: layer name {cells[0]!r} already used on line "
                             f"{seen[cells[0]]}")
        seen[cells[0]] = line_no
        layers.append(parse(cells, where))
    if not layers:
        raise ValueError(f"{path}: the topology has a header but no layers")
    return Workload(name=name or path.stem, layers=tuple(layers))
