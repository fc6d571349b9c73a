"""Zoo shapes against published MACs/parameter counts and against exact arithmetic."""

import pytest

from qsim.workload import Conv2d, Dense, Elementwise, LayerNorm, MatMul, Pool2d, Softmax
from qsim.workload.zoo import get_workload, list_workloads

NAMES = ["resnet18", "resnet50", "mobilenetv2", "bert-base", "llama2-7b-prefill", "llama2-7b-decode", "vit-b16"]


def _count(workload, kind):
    return sum(isinstance(layer, kind) for layer in workload)


def test_names():
    assert list_workloads() == NAMES


@pytest.mark.parametrize("name, published, rel", [
    ("resnet18", 1.81e9, 0.01),      # torchvision model card: 1.81 GFLOPS (multiply-adds)
    ("resnet50", 4.09e9, 0.01),      # torchvision: 4.09
    ("mobilenetv2", 300e6, 0.01),    # MobileNetV2 paper, table 3: 300 M multiply-adds
    ("bert-base", 11.2e9, 0.01),     # 12 encoder layers at s=128 incl. attention matmuls, no pooler
    ("vit-b16", 17.56e9, 0.01),      # torchvision: 17.56
])
def test_published_macs(name, published, rel):
    assert get_workload(name).total_macs == pytest.approx(published, rel=rel)


def test_exact_cnn_macs_and_torchvision_parameter_counts():
    # Exact totals of this zoo; torchvision's parameter counts = conv/fc weights + BN (2·C, folded here) + fc bias.
    expected = {"resnet18": (1_814_073_344, 11_689_512), "resnet50": (4_089_184_256, 25_557_032),
                "mobilenetv2": (300_774_272, 3_504_872)}
    for name, (macs, params) in expected.items():
        w = get_workload(name)
        bn = sum(2 * layer.out_channels for layer in w if isinstance(layer, Conv2d))
        assert w.total_macs == macs
        assert w.total_weights + bn + 1000 == params


@pytest.mark.parametrize("name, convs, downsample, depthwise", [
    ("resnet18", 20, 3, 0), ("resnet50", 53, 4, 0), ("mobilenetv2", 52, 0, 17)])
def test_cnn_layer_counts(name, convs, downsample, depthwise):
    w = get_workload(name)
    assert _count(w, Conv2d) == convs and _count(w, Dense) == 1
    assert sum(".downsample." in layer.name for layer in w) == downsample
    assert sum(isinstance(layer, Conv2d) and layer.depthwise for layer in w) == depthwise
    fc = w.mac_layers[-1]
    assert isinstance(fc, Dense) and fc.out_features == 1000


def test_resnet18_non_mac_element_counts():
    w = get_workload("resnet18")
    assert w["conv1.relu"].elements == 64 * 112 * 112
    assert w["maxpool"].output_elements == 64 * 56 * 56
    assert w["layer4.1.add"].elements == 512 * 7 * 7 and w["layer4.1.add"].operands == 2
    assert w["avgpool"].input_elements == 512 * 7 * 7 and w["avgpool"].output_elements == 512
    assert _count(w, Pool2d) == 2 and sum(layer.name.endswith(".add") for layer in w) == 8
    assert w["layer2.0.downsample.0"].output_hw == (28, 28)


def test_mobilenetv2_structure():
    w = get_workload("mobilenetv2")
    assert sum(layer.name.endswith(".add") for layer in w) == 10  # stride-1 blocks with equal channels
    assert w["features.18"].out_channels == 1280 and w["features.18"].output_hw == (7, 7)
    assert all(e.kind in ("relu6", "add") for e in w if isinstance(e, Elementwise))


def _encoder_macs(h, s, layers):
    return layers * (12 * h * h * s + 2 * s * s * h)


def test_bert_base_exact():
    w = get_workload("bert-base")
    assert w.total_macs == _encoder_macs(768, 128, 12) == 11_173_625_856
    assert _count(w, Dense) == 12 * 6 and _count(w, MatMul) == 12 * 2
    assert _count(w, Softmax) == 12 and _count(w, LayerNorm) == 1 + 12 * 2
    assert w["encoder.0.attn.softmax"].input_elements == 12 * 128 * 128
    assert w["encoder.0.ffn.gelu"].elements == 128 * 3072
    assert get_workload("bert-base", seq_len=64).total_macs == _encoder_macs(768, 64, 12)


def test_vit_b16_exact():
    w = get_workload("vit-b16")
    patch, head = 196 * 768 * (3 * 16 * 16), 768 * 1000
    assert w.total_macs == patch + _encoder_macs(768, 197, 12) + head == 17_563_828_224
    assert w["conv_proj"].output_hw == (14, 14)
    # torchvision's 86,567,656 parameters = weights + biases + class token + position embedding.
    biases = sum(layer.out_features for layer in w if isinstance(layer, Dense)) + 768
    assert w.total_weights + biases + 768 + 197 * 768 == 86_567_656


def _llama_macs(s, kv, h=4096, f=11008):
    return s * (4 * h * h + 3 * h * f) + 2 * s * kv * h


def test_llama_block_exact():
    pre, dec = get_workload("llama2-7b-prefill"), get_workload("llama2-7b-decode")
    assert pre.total_macs == _llama_macs(512, 512) == 105_763_569_664
    assert dec.total_macs == _llama_macs(1, 512) == 206_569_472
    # Per-token dense MACs equal the block's weight count (~202 M of the 6.74 B parameters / 32 blocks).
    assert dec.total_macs - 2 * 512 * 4096 == sum(layer.weight_elements for layer in dec if isinstance(layer, Dense))
    assert dec["attn.qk"].gemm.M == 1 and dec["attn.qk"].gemm.N == 512 and dec["attn.qk"].batch == 32
    assert dec["attn.softmax"].input_elements == 32 * 512
    assert pre["mlp.silu"].elements == 512 * 11008
    assert get_workload("llama2-7b-decode", kv_len=2048).total_macs == _llama_macs(1, 2048)
    assert get_workload("llama2-7b-prefill", seq_len=128).total_macs == _llama_macs(128, 128)


@pytest.mark.parametrize("name", NAMES)
def test_batch_scales_everything(name):
    one, two = get_workload(name), get_workload(name, batch=2)
    assert two.total_macs == 2 * one.total_macs
    assert two.total_weights == one.total_weights
    assert [layer.output_elements * 2 for layer in one] == [layer.output_elements for layer in two]


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="resnet50.*vit-b16"):
        get_workload("resnet-50")
    with pytest.raises(ValueError, match="seq_len"):
        get_workload("resnet18", seq_len=3)
    with pytest.raises(ValueError, match="kv_len"):
        get_workload("llama2-7b-decode", kv_len=0)
    with pytest.raises(ValueError, match="batch"):
        get_workload("resnet18", batch=0)
