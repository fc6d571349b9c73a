"""Pruning schedules, Deep Compression, and their on-disk cache.

`pruned_model(net, sparsity, pattern, seed, fine_tune_epochs, steps=1)`:
  one-shot (steps = 1): masks from the committed fp32 weights, then `fine_tune_epochs`
  epochs of masked fine-tuning (0 = no fine-tuning). Iterative (steps > 1): the sparsity
  rises as S·(1 − (1 − i/steps)³) (Zhu & Gupta 2017) for i = 1..steps, each step pruning
  the current weights and fine-tuning `fine_tune_epochs` epochs. N:M fixes its sparsity,
  so it always prunes in one step.

`deep_compressed(net, sparsity, pattern, bits, seed, fine_tune_epochs, steps=1)`:
  Deep Compression (Han et al., ICLR 2016): the pruned model above, then per layer k-means
  weight sharing over the kept weights (2^bits centroids, linear initialisation between
  the smallest and largest kept weight, Lloyd iterations), then `fine_tune_epochs` epochs
  of centroid fine-tuning (gradients summed per centroid). The centroids are stored as
  int8 levels on one scale per layer (`CODEBOOK_BITS`), so the shared weights run through
  the integer kernels unchanged; storage is `storage.huffman_csr`.

Results are cached in `qsim.nets.data.cache_dir()/prune/` under a key of everything that
determines them: the network's weights file, the arguments, the training recipe, the
fine-tuning constants, the source of the modules that compute them (`masks`, `finetune`, `pipeline`
and the trainer), and NumPy's version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsim.prune import finetune, masks as masks_mod
from qsim.nets.data import save_npz_atomic

CODEBOOK_BITS = 8            # shared values are stored as int8 levels × one fp32 scale per layer
KMEANS_ITERS = 50


@dataclass(frozen=True)
class PrunedModel:
    params: dict                 # float32 weights and biases, pruned entries exactly 0
    masks: dict                  # layer → bool mask (True = kept), weight-shaped
    sparsity: float              # achieved fraction of MAC weights pruned
    pattern: str


@dataclass(frozen=True)
class DeepCompressed:
    params: dict                 # float32 shared weights (s · code[index] · mask) and biases
    masks: dict
    indices: dict                # layer → cluster index per weight (int), weight-shaped
    codebook_codes: dict         # layer → int8 levels of the k centroids
    codebook_scales: dict        # layer → float scale of those levels
    sparsity: float
    pattern: str
    bits: int


# -- cache ------------------------------------------------------------------------------
def _source_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for p in (here / "masks.py", here / "finetune.py", here / "pipeline.py"):   # what determines the weights
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(inspect.getsource(inspect.getmodule(finetune.trainer_grads())).encode())
    return h.hexdigest()


def _weights_hash(net) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.weights().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def cache_key(net, kind: str, **args) -> str:
    from dataclasses import asdict

    payload = {"kind": kind, "network": net.name, "weights": _weights_hash(net), "args": args,
               "train_config": asdict(net.train_config) if net.train_config else None,
               "lr_factor": finetune.FINE_TUNE_LR_FACTOR, "source": _source_hash(), "numpy": np.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _cache_path(net, kind: str, key: str) -> Path:
    from qsim.nets.data import cache_dir

    return cache_dir() / "prune" / f"{net.name}-{kind}-{key}.npz"


def _load(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
        return None


def _save(path: Path, arrays: dict) -> None:
    save_npz_atomic(path, arrays)


# -- checks -------------------------------------------------------------------------------
def resolve_sparsity(net, sparsity, pattern, layers=None) -> tuple[float, str]:
    """(sparsity, pattern) after the up-front checks; N:M implies its own sparsity 1 − N/M."""
    if net.arch is None:
        raise ValueError(f"network {net.name!r} has no sequential architecture; pruning supports "
                         f"the qsim-trained networks")
    pattern = "unstructured" if pattern is None else pattern
    masks_mod.check_pattern(pattern)
    nm = masks_mod.parse_nm(pattern)
    if nm is not None:
        implied = 1.0 - nm[0] / nm[1]
        if sparsity is not None and abs(masks_mod.check_sparsity(sparsity) - implied) > 1e-9:
            raise ValueError(f"sparsity pattern {pattern} keeps {nm[0]} of every {nm[1]} weights: sparsity is "
                             f"{implied}, got {sparsity!r}")
        masks_mod.check_nm_layers(net.arch, pattern, layers)
        return implied, pattern
    if sparsity is None:
        raise ValueError(f"sparsity pattern {pattern!r} needs a sparsity in [0, 1)")
    return masks_mod.check_sparsity(sparsity), pattern


def _check_int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


# -- pruning --------------------------------------------------------------------------------
def _schedule(sparsity: float, pattern: str, steps: int) -> list[float]:
    if masks_mod.parse_nm(pattern) is not None or steps == 1:
        return [sparsity]
    return [sparsity * (1.0 - (1.0 - i / steps) ** 3) for i in range(1, steps + 1)]


def _bias_masks(arch, masks: dict, pattern: str) -> dict:
    if pattern != "channel":
        return {}
    rem = masks_mod.removed_channels(arch, masks)
    out = {}
    for op in arch.mac_ops:
        keep = np.ones(op.weight_shape[0], dtype=bool)
        keep[rem[op.name]] = False
        out[op.name] = keep
    return out


def _fit_data(net):
    from qsim.nets.data import load_dataset

    ds = load_dataset(net.dataset)
    return ds.x_train, ds.y_train


def pruned_model(net, sparsity, pattern="unstructured", seed: int = 0, fine_tune_epochs: int = 0, *,
                 steps: int = 1, layers=None, log=None) -> PrunedModel:
    """The pruned (and optionally fine-tuned) network; cached on disk. See the module doc."""
    from qsim.nets import get_network

    net = get_network(net)
    sparsity, pattern = resolve_sparsity(net, sparsity, pattern, layers)
    seed = _check_int(seed, "seed", 0)
    fine_tune_epochs = _check_int(fine_tune_epochs, "fine_tune_epochs", 0)
    steps = _check_int(steps, "steps", 1)
    if fine_tune_epochs and net.train_config is None:
        raise ValueError(f"network {net.name!r} has no training recipe in qsim; fine_tune_epochs must be 0")
    layers = None if layers is None else sorted(layers)
    args = dict(sparsity=sparsity, pattern=pattern, seed=seed, fine_tune_epochs=fine_tune_epochs, steps=steps,
                layers=layers)
    path = _cache_path(net, "prune", cache_key(net, "prune", **args))
    arch = net.arch
    hit = _load(path)
    if hit is not None:
        params = {k[2:]: v for k, v in hit.items() if k.startswith("p:")}
        masks = {k[2:]: v.astype(bool) for k, v in hit.items() if k.startswith("m:")}
        return PrunedModel(params, masks, masks_mod.sparsity_of(arch, masks), pattern)
    params = {k: np.array(v, dtype=np.float32) for k, v in net.weights().items()}
    masks = None
    for s in _schedule(sparsity, pattern, steps):
        masks = masks_mod.compute_masks(arch, params, s, pattern, seed, layers)
        params = masks_mod.apply_masks(arch, params, masks, pattern)
        if fine_tune_epochs:
            x, y = _fit_data(net)
            cfg = net.train_config
            params = finetune.fine_tune_masked(arch, params, masks, _bias_masks(arch, masks, pattern), x, y,
                                               epochs=fine_tune_epochs, batch_size=cfg.batch_size,
                                               lr=cfg.lr * finetune.FINE_TUNE_LR_FACTOR, seed=seed, log=log)
    _save(path, {**{f"p:{k}": v for k, v in params.items()}, **{f"m:{k}": v for k, v in masks.items()}})
    return PrunedModel(params, masks, masks_mod.sparsity_of(arch, masks), pattern)


def prune_for_config(net, sparsity, pattern="unstructured", seed: int = 0, fine_tune_epochs: int = 0,
                     **kwargs) -> dict:
    """Pruned float32 weights {"layer.w": …, "layer.b": …} of network `net` (name or Network);
    pruned weights are exactly 0. Deterministic and cached on disk (see the module doc):
    a study runner may call it once per design point."""
    return pruned_model(net, sparsity, pattern, seed, fine_tune_epochs, **kwargs).params


# -- Deep Compression ---------------------------------------------------------------------
def kmeans_1d(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, index per value): linear initialisation over [min, max] (Han et al. §3.1
    found it best), Lloyd iterations; empty clusters keep their centroid."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        return np.zeros(k), np.zeros(0, np.int64)
    cent = np.linspace(v.min(), v.max(), k)
    idx = None
    for _ in range(KMEANS_ITERS):
        order = np.argsort(cent, kind="stable")
        cent = cent[order]
        mids = (cent[1:] + cent[:-1]) / 2.0
        new_idx = np.searchsorted(mids, v, side="left")
        if idx is not None and np.array_equal(new_idx, idx):
            break
        idx = new_idx
        sums = np.bincount(idx, weights=v, minlength=k)
        counts = np.bincount(idx, minlength=k)
        cent = np.where(counts > 0, sums / np.maximum(counts, 1), cent)
    mids = (cent[1:] + cent[:-1]) / 2.0
    return cent, np.searchsorted(mids, v, side="left").astype(np.int64)


def codebook_levels(centroids: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, float]:
    """int8 levels of the centroids on one scale set by the largest used centroid."""
    qmax = (1 << (CODEBOOK_BITS - 1)) - 1
    amax = float(np.max(np.abs(centroids[used]))) if used.any() else 0.0
    scale = amax / qmax if amax > 0 else 1.0
    codes = np.clip(np.rint(centroids / scale), -qmax, qmax).astype(np.int8)
    return codes, scale


def deep_compressed(net, sparsity, pattern="unstructured", bits: int = 5, seed: int = 0, fine_tune_epochs: int = 0,
                    *, steps: int = 1, layers=None, log=None) -> DeepCompressed:
    """Prune → share (k-means, 2^bits centroids per layer) → fine-tune centroids; cached."""
    from qsim.nets import get_network

    net = get_network(net)
    sparsity, pattern = resolve_sparsity(net, sparsity, pattern, layers)
    bits = _check_int(bits, "bits (index bits of Deep Compression)", 1)
    if bits > CODEBOOK_BITS:
        raise ValueError(f"Deep Compression shares at most 2^{CODEBOOK_BITS} values per layer (they run as "
                         f"int{CODEBOOK_BITS} levels); bits must be <= {CODEBOOK_BITS}, got {bits}")
    pm = pruned_model(net, sparsity, pattern, seed, fine_tune_epochs, steps=steps, layers=layers, log=log)
    arch = net.arch
    args = dict(sparsity=sparsity, pattern=pattern, seed=seed, fine_tune_epochs=fine_tune_epochs, steps=steps,
                layers=None if layers is None else sorted(layers), bits=bits, kmeans_iters=KMEANS_ITERS,
                codebook_bits=CODEBOOK_BITS)
    path = _cache_path(net, "deep", cache_key(net, "deep", **args))
    hit = _load(path)
    k = 1 << bits
    if hit is None:
        indices, codebooks = {}, {}
        for op in arch.mac_ops:
            w, mk = pm.params[f"{op.name}.w"], pm.masks[op.name]
            cent, idx_kept = kmeans_1d(w[mk], k)
            idx = np.zeros(w.shape, np.int64)
            idx[mk] = idx_kept
            indices[op.name], codebooks[op.name] = idx, cent
        biases = {op.name: pm.params[f"{op.name}.b"] for op in arch.mac_ops}
        if fine_tune_epochs:
            x, y = _fit_data(net)
            cfg = net.train_config
            codebooks, biases = finetune.fine_tune_centroids(
                arch, pm.params, pm.masks, indices, codebooks, x, y, epochs=fine_tune_epochs,
                batch_size=cfg.batch_size, lr=cfg.lr * finetune.FINE_TUNE_LR_FACTOR, seed=seed, log=log)
        hit = {}
        for op in arch.mac_ops:
            hit[f"i:{op.name}"] = indices[op.name].astype(np.int16)
            hit[f"c:{op.name}"] = np.asarray(codebooks[op.name], np.float64)
            hit[f"b:{op.name}"] = np.asarray(biases[op.name], np.float32)
        _save(path, hit)
    params, indices, codes, scales = {}, {}, {}, {}
    for op in arch.mac_ops:
        name, mk = op.name, pm.masks[op.name]
        idx = hit[f"i:{name}"].astype(np.int64)
        used = np.zeros(k, dtype=bool)
        used[idx[mk]] = True
        c, s = codebook_levels(hit[f"c:{name}"], used)
        w = (np.float32(s) * c.astype(np.float32))[idx] * mk
        params[f"{name}.w"] = w.astype(np.float32)
        params[f"{name}.b"] = hit[f"b:{name}"]
        indices[name], codes[name], scales[name] = idx, c, s
    return DeepCompressed(params, pm.masks, indices, codes, scales, pm.sparsity, pattern, bits)
