"""Canonical Huffman coding of small integer alphabets (Deep Compression's last stage).

A canonical code is fully described by one code length per symbol, so the stored table is
`alphabet_size × LENGTH_FIELD_BITS` bits (length 0 = symbol absent). Codes are assigned in
order of (length, symbol): the first code of each length is the previous code + 1, shifted
left by the length increase (DEFLATE's rule, RFC 1951 §3.2.2).

    lengths = code_lengths(counts)          # counts[s] = occurrences of symbol s
    bits = encode(symbols, lengths)         # np.uint8 array of 0/1, MSB first per code
    assert (decode(bits, lengths, len(symbols)) == symbols).all()
"""

from __future__ import annotations

import heapq

import numpy as np

LENGTH_FIELD_BITS = 5          # one code length 0..31 per alphabet symbol in the stored table
MAX_CODE_LENGTH = (1 << LENGTH_FIELD_BITS) - 1


def code_lengths(counts) -> np.ndarray:
    """Huffman code length per symbol (0 for symbols that never occur).

    Ties are broken deterministically (by count, then by the smallest symbol in a subtree).
    A single used symbol gets length 1 (one bit per occurrence: a decoder still needs to
    count). Raises if a length would exceed the table's 5-bit field (needs > 2 M symbols
    with Fibonacci-like counts; never reached by these networks)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or np.any(counts < 0):
        raise ValueError(f"counts must be a 1-D array of non-negative integers, got shape {counts.shape}")
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    # heap items: (count, smallest symbol, tie counter, symbols in the subtree)
    heap = [(int(counts[s]), int(s), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    tie = len(counts)
    while len(heap) > 1:
        c1, m1, _, s1 = heapq.heappop(heap)
        c2, m2, _, s2 = heapq.heappop(heap)
        for s in s1:
            lengths[s] += 1
        for s in s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, min(m1, m2), tie, s1 + s2))
        tie += 1
    if lengths.max() > MAX_CODE_LENGTH:
        raise ValueError(f"Huffman code length {int(lengths.max())} exceeds the table's {LENGTH_FIELD_BITS}-bit field")
    return lengths


def canonical_codes(lengths) -> dict[int, tuple[int, int]]:
    """{symbol: (code, length)} of the canonical code with these lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = sorted((int(n), int(s)) for s, n in enumerate(lengths) if n > 0)
    kraft = sum(2.0 ** -n for n, _ in order)
    if kraft > 1.0 + 1e-12:
        raise ValueError(f"code lengths violate the Kraft inequality (sum 2^-l = {kraft})")
    codes, code, prev = {}, 0, None
    for n, s in order:
        if prev is not None:
            code = (code + 1) << (n - prev)
        codes[s] = (code, n)
        prev = n
    return codes


def encoded_bits(counts, lengths) -> int:
    """Σ count·length: the size of the coded stream in bits."""
    return int(np.dot(np.asarray(counts, np.int64), np.asarray(lengths, np.int64)))


def table_bits(alphabet_size: int) -> int:
    """Bits of a stored canonical table: one length field per alphabet symbol."""
    return int(alphabet_size) * LENGTH_FIELD_BITS


def encode(symbols, lengths) -> np.ndarray:
    """Bit stream (np.uint8 0/1, most significant bit of each code first)."""
    codes = canonical_codes(lengths)
    out = []
    for s in np.asarray(symbols, dtype=np.int64).ravel():
        if int(s) not in codes:
            raise ValueError(f"symbol {int(s)} has no code (length 0)")
        code, n = codes[int(s)]
        out.extend((code >> (n - 1 - i)) & 1 for i in range(n))
    return np.asarray(out, dtype=np.uint8)


def decode(bits, lengths, count: int) -> np.ndarray:
    """The first `count` symbols of a canonical-Huffman bit stream."""
    codes = canonical_codes(lengths)
    lookup = {(code, n): s for s, (code, n) in codes.items()}
    max_len = max((n for _, n in codes.values()), default=0)
    bits = np.asarray(bits, dtype=np.uint8).ravel()
    out = np.empty(int(count), dtype=np.int64)
    pos = 0
    for i in range(int(count)):
        code, n = 0, 0
        while True:
            if pos >= len(bits) or n >= max_len:
                raise ValueError(f"bit stream ends or holds an invalid code at symbol {i}")
            code = (code << 1) | int(bits[pos])
            pos += 1
            n += 1
            if (code, n) in lookup:
                out[i] = lookup[(code, n)]
                break
    return out
