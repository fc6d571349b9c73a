"""Exact storage of a pruned, quantized weight matrix in the formats hardware and papers use.

Every function counts bits of one layer's weight matrix viewed as (out, K), row-major
(K = in/groups · kh · kw in OIHW order). `code_bits` is the width of one stored value.

* **dense**: n · code_bits.
* **bitmask**: one bit per position + the kept values: n + nnz · code_bits.
* **CSR with relative indices** (Deep Compression §2, as EIE stores it): the kept values in
  row-major order over the whole flattened matrix, each with the number of zeros skipped
  since the previous stored entry in `index_bits` bits. A gap above 2^index_bits − 1 is
  bridged by *filler zeros*: an entry with gap 2^index_bits − 1 whose value is zero (it
  occupies the next zero position). A gap g therefore costs g // 2^b fillers and its entry
  stores g % 2^b. Zeros after the last entry cost nothing (the shape is known).
  Bits: (nnz + fillers) · (code_bits + index_bits). No row pointers: the relative index
  runs across rows, as in the paper.
* **N:M** (sparse tensor cores): the N kept values of every M-group along K plus
  ceil(log2 M) bits of position per kept value (2 bits for 2:4 — NVIDIA's metadata —,
  3 bits for 4:8): nnz · (code_bits + ceil(log2 M)).
* **channel**: whole output rows removed: kept rows dense + one bit per output row.
* **Huffman CSR** (Deep Compression's final stage): the CSR value stream (codebook
  indices, with one extra symbol for filler zeros) and the gap stream each canonical-
  Huffman coded; each stream adds its table (`huffman.table_bits`).

`metadata_bits` (scales, zero points, codebooks) is added by the caller to whichever format
it picks; `LayerStorage` keeps the parts separate so a report can show them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from qsim.prune import huffman

MAX_INDEX_BITS = 16


@dataclass(frozen=True)
class LayerStorage:
    """One layer in one format: bit counts per part and the total."""

    layer: str
    format: str
    n: int                      # positions of the (out, K) matrix
    nnz: int                    # kept values (mask ones)
    parts: dict = field(default_factory=dict)   # name → bits
    detail: dict = field(default_factory=dict)  # e.g. index_bits, fillers

    @property
    def bits(self) -> int:
        return int(sum(self.parts.values()))

    @property
    def bytes(self) -> float:
        return self.bits / 8.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["bits"] = self.bits
        d["bytes"] = self.bytes
        return d


def _flat_mask(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
    return m.reshape(m.shape[0], -1).ravel() if m.ndim > 1 else m.ravel()


def gaps(mask, index_bits: int) -> tuple[np.ndarray, int]:
    """Stored gap per entry of the relative-index CSR (fillers included, in stream order),
    and the number of filler zeros."""
    if not 1 <= int(index_bits) <= MAX_INDEX_BITS:
        raise ValueError(f"index_bits must be in 1..{MAX_INDEX_BITS}, got {index_bits!r}")
    pos = np.flatnonzero(_flat_mask(mask))
    g = np.diff(np.concatenate([[-1], pos])) - 1          # zeros skipped before each kept value
    span = 1 << int(index_bits)
    fill = g // span
    last = g % span
    n_fill = int(fill.sum())
    # entry i is preceded by fill[i] fillers (each storing gap span − 1), then stores last[i]
    out = np.full(len(g) + n_fill, span - 1, np.int64)
    out[np.cumsum(fill + 1) - 1] = last
    return out, n_fill


def count_fillers(mask, index_bits: int) -> int:
    pos = np.flatnonzero(_flat_mask(mask))
    g = np.diff(np.concatenate([[-1], pos])) - 1
    return int((g >> int(index_bits)).sum())


def dense(layer: str, n: int, code_bits: int, metadata_bits: int = 0) -> LayerStorage:
    return LayerStorage(layer, "dense", int(n), int(n), {"values": int(n) * int(code_bits),
                                                         "metadata": int(metadata_bits)})


def bitmask(layer: str, mask, code_bits: int, metadata_bits: int = 0) -> LayerStorage:
    m = _flat_mask(mask)
    nnz = int(m.sum())
    return LayerStorage(layer, "bitmask", m.size, nnz, {"values": nnz * int(code_bits), "bitmask": m.size,
                                                        "metadata": int(metadata_bits)})


def csr_relative(layer: str, mask, code_bits: int, index_bits: int, metadata_bits: int = 0) -> LayerStorage:
    m = _flat_mask(mask)
    nnz = int(m.sum())
    fill = count_fillers(m, index_bits)
    entries = nnz + fill
    return LayerStorage(layer, "csr_relative", m.size, nnz,
                        {"values": entries * int(code_bits), "relative_indices": entries * int(index_bits),
                         "metadata": int(metadata_bits)},
                        {"index_bits": int(index_bits), "fillers": fill})


def best_csr_relative(layer: str, mask, code_bits: int, metadata_bits: int = 0) -> LayerStorage:
    """The relative-index CSR at the index width (1..16 bits) that stores this mask smallest."""
    cands = [csr_relative(layer, mask, code_bits, b, metadata_bits) for b in range(1, MAX_INDEX_BITS + 1)]
    return min(cands, key=lambda s: (s.bits, s.detail["index_bits"]))


def n_m(layer: str, mask, code_bits: int, n: int, m: int, metadata_bits: int = 0) -> LayerStorage:
    """N:M format; the mask must keep exactly n of every m consecutive positions along K."""
    mk = np.asarray(mask)
    rows = mk.reshape(mk.shape[0], -1)
    if rows.shape[1] % m:
        raise ValueError(f"layer {layer!r}: reduction dimension {rows.shape[1]} is not a multiple of {m}")
    per_group = rows.reshape(rows.shape[0], -1, m).sum(axis=2)
    if np.any(per_group != n):
        raise ValueError(f"layer {layer!r}: the mask does not keep exactly {n} of every {m} along K")
    nnz = int(rows.sum())
    meta = math.ceil(math.log2(m))
    return LayerStorage(layer, f"{n}:{m}", rows.size, nnz, {"values": nnz * int(code_bits),
                                                            "nm_metadata": nnz * meta,
                                                            "metadata": int(metadata_bits)},
                        {"position_bits": meta})


def channel(layer: str, mask, code_bits: int, metadata_bits: int = 0) -> LayerStorage:
    """Rows (output channels) that keep any weight are stored dense, plus one bit per row."""
    mk = np.asarray(mask)
    rows = mk.reshape(mk.shape[0], -1)
    kept_rows = int(rows.any(axis=1).sum())
    # columns that are zero in every row (inputs of a removed channel upstream) are dropped too
    kept_cols = int(rows.any(axis=0).sum())
    return LayerStorage(layer, "channel", rows.size, int(rows.sum()),
                        {"values": kept_rows * kept_cols * int(code_bits),
                         "row_mask": rows.shape[0], "column_mask": rows.shape[1] if kept_cols < rows.shape[1] else 0,
                         "metadata": int(metadata_bits)},
                        {"kept_rows": kept_rows, "kept_columns": kept_cols})


def huffman_csr(layer: str, mask, symbols, alphabet_size: int, index_bits: int,
                metadata_bits: int = 0) -> LayerStorage:
    """Deep Compression's format: relative-index CSR whose value symbols (0..alphabet_size−1,
    in row-major order of the kept positions) and gaps are both canonical-Huffman coded.
    Filler zeros use one extra value symbol (`alphabet_size`)."""
    m = _flat_mask(mask)
    sym = np.asarray(symbols, np.int64).ravel()
    nnz = int(m.sum())
    if sym.size != nnz:
        raise ValueError(f"layer {layer!r}: {sym.size} value symbols for {nnz} kept positions")
    if nnz and (sym.min() < 0 or sym.max() >= alphabet_size):
        raise ValueError(f"layer {layer!r}: value symbols must lie in 0..{alphabet_size - 1}")
    g, fill = gaps(m, index_bits)
    filler = alphabet_size
    vcounts = np.bincount(sym, minlength=alphabet_size + 1).astype(np.int64)
    vcounts[filler] += fill
    v_alpha = alphabet_size + (1 if fill else 0)
    vcounts = vcounts[:v_alpha]
    gcounts = np.bincount(g, minlength=1 << index_bits).astype(np.int64)
    vlen, glen = huffman.code_lengths(vcounts), huffman.code_lengths(gcounts)
    parts = {"values_huffman": huffman.encoded_bits(vcounts, vlen),
             "relative_indices_huffman": huffman.encoded_bits(gcounts, glen),
             "huffman_tables": huffman.table_bits(v_alpha) + huffman.table_bits(1 << index_bits),
             "metadata": int(metadata_bits)}
    return LayerStorage(layer, "csr_relative_huffman", m.size, nnz, parts,
                        {"index_bits": int(index_bits), "fillers": fill, "value_alphabet": v_alpha})


def best_huffman_csr(layer: str, mask, symbols, alphabet_size: int, metadata_bits: int = 0,
                     widths=range(1, 11)) -> LayerStorage:
    cands = [huffman_csr(layer, mask, symbols, alphabet_size, b, metadata_bits) for b in widths]
    return min(cands, key=lambda s: (s.bits, s.detail["index_bits"]))


def fp32_bytes(n_weights: int) -> int:
    return 4 * int(n_weights)
