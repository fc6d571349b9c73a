"""Shapes of real networks, built from the layer IR, for cost-only studies (no weights).

Conventions (so MAC totals can be checked against published figures):
- MACs count every multiply-accumulate of the dense computation, padded positions included; BatchNorm is folded
  into the preceding conv (weights + bias) as at inference, so it is not a layer.
- Non-MAC layers (ReLU, residual add, pooling, softmax, layer/RMS norm, GELU/SiLU) carry exact element counts.
- CNNs follow the torchvision layouts (ResNet v1.5: stride on the 3×3 conv; downsample 1×1 convs; final fc).
- Transformers count the dense layers and the two attention matmuls (QKᵀ and AV over the full score matrix,
  without causal skipping, as dense kernels compute it); embeddings lookups and task heads are not MACs, except
  ViT's patch-embedding conv and classification head, which are part of the published 17.56 GMACs.
- `batch` multiplies every row dimension (images, or sequences for the language models).
"""

from __future__ import annotations

import inspect
from typing import Callable

from qsim.workload.layers import (
    Conv2d, Dense, Elementwise, Layer, LayerNorm, MatMul, Pool2d, Softmax, Workload,
)


class _Builder:
    """Collects layers for one network and tracks NCHW spatial sizes for the CNNs."""

    def __init__(self, batch: int):
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self.batch = batch
        self.layers: list[Layer] = []

    def add(self, layer: Layer) -> Layer:
        self.layers.append(layer)
        return layer

    def conv(self, name, cin, cout, k, hw, stride=1, groups=1, act: str | None = "relu", padding=None) -> int:
        """Conv (BN folded; "same"-style padding k//2 unless given) plus an optional activation.

        Returns the output height (= width).
        """
        layer = self.add(Conv2d(name, in_channels=cin, out_channels=cout, kernel_size=k, input_hw=hw,
                                stride=stride, padding=k // 2 if padding is None else padding, groups=groups,
                                batch=self.batch))
        if act:
            self.eltwise(f"{name}.{act}", act, layer.output_elements)
        return layer.output_hw[0]

    def eltwise(self, name, kind, elements, operands=1):
        self.add(Elementwise(name, kind=kind, elements=elements, operands=operands))

    def dense(self, name, fin, fout, rows, bias=True):
        self.add(Dense(name, in_features=fin, out_features=fout, batch=rows * self.batch, bias=bias))


# --------------------------------------------------------------------------------------------- CNNs


def _resnet(name: str, bottleneck: bool, counts: tuple[int, ...], batch: int) -> Workload:
    b = _Builder(batch)
    hw = b.conv("conv1", 3, 64, 7, 224, stride=2)
    pool = b.add(Pool2d("maxpool", kind="max", channels=64, input_hw=hw, kernel_size=3, stride=2, padding=1,
                        batch=batch))
    hw, cin = pool.output_hw[0], 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        for i in range(blocks):
            p, stride = f"layer{stage}.{i}", (2 if stage > 1 and i == 0 else 1)
            if bottleneck:
                cout = 4 * width
                h1 = b.conv(f"{p}.conv1", cin, width, 1, hw)
                h2 = b.conv(f"{p}.conv2", width, width, 3, h1, stride=stride)
                out_hw = b.conv(f"{p}.conv3", width, cout, 1, h2, act=None)
            else:
                cout = width
                h1 = b.conv(f"{p}.conv1", cin, cout, 3, hw, stride=stride)
                out_hw = b.conv(f"{p}.conv2", cout, cout, 3, h1, act=None)
            if stride != 1 or cin != cout:
                b.conv(f"{p}.downsample.0", cin, cout, 1, hw, stride=stride, act=None)
            elements = batch * cout * out_hw * out_hw
            b.eltwise(f"{p}.add", "add", elements, operands=2)
            b.eltwise(f"{p}.relu", "relu", elements)
            hw, cin = out_hw, cout
    b.add(Pool2d("avgpool", kind="avg", channels=cin, input_hw=hw, batch=batch, global_pool=True))
    b.dense("fc", cin, 1000, rows=1)
    return Workload(name, b.layers)


def resnet18(batch: int = 1) -> Workload:
    """ResNet-18, 224×224: 20 convs (3 of them downsample 1×1) + fc, 1.814 GMACs."""
    return _resnet("resnet18", False, (2, 2, 2, 2), batch)


def resnet50(batch: int = 1) -> Workload:
    """ResNet-50 v1.5, 224×224: 53 convs (4 downsample 1×1) + fc, 4.09 GMACs."""
    return _resnet("resnet50", True, (3, 4, 6, 3), batch)


# (expansion t, output channels c, repeats n, first stride s) from the MobileNetV2 paper, table 2.
_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                  (6, 320, 1, 1))


def mobilenetv2(batch: int = 1) -> Workload:
    """MobileNetV2 1.0, 224×224: 52 convs (17 depthwise) + fc, 300.8 MMACs; ReLU6 activations."""
    b = _Builder(batch)
    hw = b.conv("features.0", 3, 32, 3, 224, stride=2, act="relu6")
    cin, idx = 32, 1
    for t, c, n, s in _MBV2_SETTINGS:
        for i in range(n):
            p, stride, hidden = f"features.{idx}", (s if i == 0 else 1), cin * t
            h = hw
            if t != 1:
                h = b.conv(f"{p}.expand", cin, hidden, 1, h, act="relu6")
            h = b.conv(f"{p}.dw", hidden, hidden, 3, h, stride=stride, groups=hidden, act="relu6")
            h = b.conv(f"{p}.project", hidden, c, 1, h, act=None)
            if stride == 1 and cin == c:
                b.eltwise(f"{p}.add", "add", batch * c * h * h, operands=2)
            hw, cin, idx = h, c, idx + 1
    hw = b.conv(f"features.{idx}", cin, 1280, 1, hw, act="relu6")
    b.add(Pool2d("avgpool", kind="avg", channels=1280, input_hw=hw, batch=batch, global_pool=True))
    b.dense("classifier", 1280, 1000, rows=1)
    return Workload("mobilenetv2", b.layers)


# ------------------------------------------------------------------------------------- transformers


def _encoder_layer(b: _Builder, p: str, hidden: int, heads: int, ffn: int, seq: int, fused_qkv: bool,
                   pre_norm: bool) -> None:
    """One encoder layer: attention (dense projections, QKᵀ, softmax, AV), FFN with GELU, two residual adds.

    `pre_norm` puts the layernorms before each sub-block (ViT) instead of after the residual add (BERT).
    """
    rows, head_dim, elems = seq, hidden // heads, b.batch * seq * hidden
    if pre_norm:
        b.add(LayerNorm(f"{p}.ln_1", rows=b.batch * seq, cols=hidden))
    if fused_qkv:
        b.dense(f"{p}.attn.qkv", hidden, 3 * hidden, rows)
    else:
        for proj in ("query", "key", "value"):
            b.dense(f"{p}.attn.{proj}", hidden, hidden, rows)
    b.add(MatMul(f"{p}.attn.qk", m=seq, n=seq, k=head_dim, batch=b.batch * heads))
    b.add(Softmax(f"{p}.attn.softmax", rows=b.batch * heads * seq, cols=seq))
    b.add(MatMul(f"{p}.attn.av", m=seq, n=head_dim, k=seq, batch=b.batch * heads))
    b.dense(f"{p}.attn.out", hidden, hidden, rows)
    b.eltwise(f"{p}.attn.add", "add", elems, operands=2)
    b.add(LayerNorm(f"{p}.ln_2" if pre_norm else f"{p}.attn.ln", rows=b.batch * seq, cols=hidden))
    b.dense(f"{p}.ffn.fc1", hidden, ffn, rows)
    b.eltwise(f"{p}.ffn.gelu", "gelu", b.batch * seq * ffn)
    b.dense(f"{p}.ffn.fc2", ffn, hidden, rows)
    b.eltwise(f"{p}.ffn.add", "add", elems, operands=2)
    if not pre_norm:
        b.add(LayerNorm(f"{p}.ffn.ln", rows=b.batch * seq, cols=hidden))


def bert_base(batch: int = 1, seq_len: int = 128) -> Workload:
    """BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072), HuggingFace layout with separate Q/K/V.

    The embeddings are lookups (one 3-operand add + layernorm); pooler and task heads are excluded, so the
    MACs are exactly 12·(12·h²·s + 2·s²·h) = 11.17 GMACs at s = 128.
    """
    b, hidden = _Builder(batch), 768
    b.eltwise("embeddings.add", "add", batch * seq_len * hidden, operands=3)
    b.add(LayerNorm("embeddings.ln", rows=batch * seq_len, cols=hidden))
    for i in range(12):
        _encoder_layer(b, f"encoder.{i}", hidden, 12, 3072, seq_len, fused_qkv=False, pre_norm=False)
    return Workload(f"bert-base-s{seq_len}", b.layers)


def vit_b16(batch: int = 1) -> Workload:
    """ViT-B/16 at 224×224 (torchvision layout: fused QKV projection, pre-norm), 197 tokens, 17.56 GMACs.

    MACs = patch conv 196·768·768 + 12·(12·h²·197 + 2·197²·h) + head 768·1000 (class token only).
    """
    b, hidden, seq = _Builder(batch), 768, 197
    b.conv("conv_proj", 3, hidden, 16, 224, stride=16, act=None, padding=0)
    b.eltwise("pos_embedding.add", "add", batch * seq * hidden, operands=2)
    for i in range(12):
        _encoder_layer(b, f"encoder.{i}", hidden, 12, 4 * hidden, seq, fused_qkv=True, pre_norm=True)
    b.add(LayerNorm("encoder.ln", rows=batch * seq, cols=hidden))
    b.dense("head", hidden, 1000, rows=1)
    return Workload("vit-b16", b.layers)


def _llama_block(name: str, batch: int, seq: int, kv_len: int) -> Workload:
    """One Llama-2-7B decoder block: hidden 4096, 32 heads of 128 (no GQA at 7B), SwiGLU FFN 11008, RMSNorm.

    `seq` new tokens attend to `kv_len` keys/values (the KV cache after appending them). RMSNorm is modelled
    as `LayerNorm` (same traffic; its weight count overstates RMSNorm's single gain vector by `hidden`). RoPE
    is an elementwise op on Q and K reading the activations and the cos/sin table. Projections have no bias.
    MACs = seq·(4h² + 3·h·f) + 2·seq·kv_len·h.
    """
    b, h, heads, f = _Builder(batch), 4096, 32, 11008
    hd, elems = h // heads, batch * seq * h
    b.add(LayerNorm("input_rmsnorm", rows=batch * seq, cols=h))
    for proj in ("q_proj", "k_proj", "v_proj"):
        b.dense(f"attn.{proj}", h, h, seq, bias=False)
    b.eltwise("attn.rope_q", "mul", elems, operands=2)
    b.eltwise("attn.rope_k", "mul", elems, operands=2)
    b.add(MatMul("attn.qk", m=seq, n=kv_len, k=hd, batch=batch * heads))
    b.add(Softmax("attn.softmax", rows=batch * heads * seq, cols=kv_len))
    b.add(MatMul("attn.av", m=seq, n=hd, k=kv_len, batch=batch * heads))
    b.dense("attn.o_proj", h, h, seq, bias=False)
    b.eltwise("attn.add", "add", elems, operands=2)
    b.add(LayerNorm("post_attention_rmsnorm", rows=batch * seq, cols=h))
    b.dense("mlp.gate_proj", h, f, seq, bias=False)
    b.dense("mlp.up_proj", h, f, seq, bias=False)
    b.eltwise("mlp.silu", "silu", batch * seq * f)
    b.eltwise("mlp.mul", "mul", batch * seq * f, operands=2)
    b.dense("mlp.down_proj", f, h, seq, bias=False)
    b.eltwise("mlp.add", "add", elems, operands=2)
    return Workload(name, b.layers)


def llama2_7b_prefill(batch: int = 1, seq_len: int = 512) -> Workload:
    """Prefill of `seq_len` tokens (default 512) through one block: 105.76 GMACs at 512."""
    return _llama_block(f"llama2-7b-prefill-s{seq_len}", batch, seq_len, seq_len)


def llama2_7b_decode(batch: int = 1, kv_len: int = 512) -> Workload:
    """One new token per sequence attending to a KV cache of `kv_len` (default 512, incl. the new token)."""
    return _llama_block(f"llama2-7b-decode-kv{kv_len}", batch, 1, kv_len)


_ZOO: dict[str, Callable[..., Workload]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "bert-base": bert_base,
    "llama2-7b-prefill": llama2_7b_prefill,
    "llama2-7b-decode": llama2_7b_decode,
    "vit-b16": vit_b16,
}


def list_workloads() -> list[str]:
    """Names accepted by `get_workload`."""
    return list(_ZOO)


def get_workload(name: str, batch: int = 1, **kwargs) -> Workload:
    """Build a zoo network by name; extra keyword arguments (e.g. `seq_len`, `kv_len`) go to its builder."""
    if name not in _ZOO:
        raise ValueError(f"unknown workload {name!r}; available: {', '.join(_ZOO)}")
    builder = _ZOO[name]
    allowed = [p for p in inspect.signature(builder).parameters if p != "batch"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"workload {name!r} does not take {', '.join(unknown)}; "
                         f"options: {', '.join(allowed) or 'none besides batch'}")
    for key, value in kwargs.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return builder(batch=batch, **kwargs)
