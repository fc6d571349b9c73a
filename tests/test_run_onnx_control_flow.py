"""`If` and `Size` in `qsim run-onnx` (qsim.onnxrun.control_flow).

Hand-built graphs (nested Ifs whose branches read tensors of every enclosing graph, float
and integer outputs) against ONNX Runtime and
between the prepared plan and the reference interpreter; the bad-input errors; and the
silero VAD graphs with `If` at both sample rates (16 kHz and 8 kHz take different branches)
and batch 1 and 3.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qsim.onnxrun.executor import OnnxExecutor, first_divergence, run_ort, run_ort_all
from tests.real_models import MODELS, model_path

ort = pytest.importorskip("onnxruntime")
FLOAT_ATOL = 1e-4


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(nodes, inputs, outputs, inits=(), opset=16):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _branch(name, nodes, outputs, inits=()):
    return helper.make_graph(nodes, name, [], outputs, list(inits))


def nested_if_model(opset=16):
    """y = If(a) { If(b) { If(c) { x·w + k } else { x − w } } else { Relu(x) } } else { x } and
    n = If(a) { Size(x) + q } else { Size(w) }: the innermost branch reads x and w from the top
    graph three levels up and k from the first branch; the last else-branch passes the outer x on
    (through Identity: ORT rejects a branch output that is an outer tensor); the int64 output comes
    from Size."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inner_then = _branch("inner_then", [
        helper.make_node("Mul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "k"], ["y3"])], [_vi("y3", f32, None)])
    inner_else = _branch("inner_else", [helper.make_node("Sub", ["x", "w"], ["y3e"])], [_vi("y3e", f32, None)])
    mid_then = _branch("mid_then", [
        helper.make_node("If", ["c"], ["y2"], then_branch=inner_then, else_branch=inner_else, name="if_c")],
        [_vi("y2", f32, None)])
    mid_else = _branch("mid_else", [helper.make_node("Relu", ["x"], ["y2e"])], [_vi("y2e", f32, None)])
    top_then = _branch("top_then", [
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([0.25], np.float32))),
        helper.make_node("If", ["b"], ["y1"], then_branch=mid_then, else_branch=mid_else, name="if_b"),
        helper.make_node("Size", ["x"], ["sx"]),
        helper.make_node("Add", ["sx", "q"], ["n1"])], [_vi("y1", f32, None), _vi("n1", i64, None)])
    top_else = _branch("top_else", [helper.make_node("Identity", ["x"], ["xo"]),
                                    helper.make_node("Size", ["w"], ["n2"])],
                       [_vi("xo", f32, None), _vi("n2", i64, None)])
    nodes = [helper.make_node("If", ["a"], ["y", "n"], then_branch=top_then, else_branch=top_else, name="if_a")]
    inputs = [_vi("x", f32, [2, 3]), _vi("a", TensorProto.BOOL, []), _vi("b", TensorProto.BOOL, [1]),
              _vi("c", TensorProto.BOOL, [])]
    inits = [numpy_helper.from_array(np.array([1.5, -2.0, 0.5], np.float32), "w"),
             numpy_helper.from_array(np.array(7, np.int64), "q")]
    return _model(nodes, inputs, [_vi("y", f32, None), _vi("n", i64, None)], inits, opset)


@pytest.mark.parametrize("a", [True, False])
@pytest.mark.parametrize("b", [True, False])
@pytest.mark.parametrize("c", [True, False])
def test_nested_if_matches_ort(a, b, c):
    model = nested_if_model()
    ex = OnnxExecutor(model)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    feeds = {"x": x, "a": np.array(a), "b": np.array([b]), "c": np.array(c)}
    ours = ex.run(feeds)
    ref = ex.run(feeds, prepared=False)
    theirs = run_ort(model, feeds)
    for name in ("y", "n"):
        assert ours[name].dtype == theirs[name].dtype and ours[name].shape == theirs[name].shape
        assert np.array_equal(ours[name], theirs[name]), name
        assert np.array_equal(ref[name], ours[name]) and ref[name].dtype == ours[name].dtype
    assert ours["n"].dtype == np.int64 and ours["n"].shape == ()


def test_if_outer_names_become_inputs():
    ex = OnnxExecutor(nested_if_model())
    (_, node, _, attrs, ins, _, _), = ex.steps
    assert ins[0] == "a" and set(ins[1:]) == {"x", "w", "b", "c", "q"}  # k is defined inside top_then
    then, other = attrs["_branches"]
    # the top graph's initializers are constants of the branches, the rest their inputs
    assert set(then.input_names) == {"x", "b", "c"} and set(other.input_names) == {"x"}
    assert set(then.outer_consts) == {"w", "q"} and set(other.outer_consts) == {"w"}
    inner = then.steps[1][3]["_branches"][0]  # if_b's then branch: w handed down two levels, k folded in top_then
    assert inner.outer_consts["w"] is ex.initializers["w"] and set(inner.outer_consts) == {"w", "k"}
    assert inner.input_names == ["c", "x"]


def test_overridden_initializer_reaches_the_branches():
    ex = OnnxExecutor(nested_if_model())
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    w = np.array([3.0, 0.5, -1.0], np.float32)
    feeds = {"x": x, "a": np.array(True), "b": np.array([True]), "c": np.array(False)}
    assert np.array_equal(ex.run(feeds)["y"], x - ex.initializers["w"])
    assert np.array_equal(ex.run(feeds | {"w": w})["y"], x - w)
    assert ex.run(feeds | {"q": np.array(1, np.int64)})["n"] == 7


def test_size_scalar_int64():
    model = _model([helper.make_node("Size", ["x"], ["n"])], [_vi("x", TensorProto.FLOAT, [None, 4])],
                   [_vi("n", TensorProto.INT64, [])])
    for rows in (0, 3):
        x = np.zeros((rows, 4), np.float32)
        got = OnnxExecutor(model).run({"x": x})["n"]
        want = run_ort(model, {"x": x})["n"]
        assert got.dtype == want.dtype == np.int64 and got.shape == want.shape == () and got == want == 4 * rows


def _simple_if(then_outputs=1, cond_type=TensorProto.BOOL, cond_shape=()):
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Neg", ["x"], [f"t{i}"]) for i in range(then_outputs)],
                   [_vi(f"t{i}", f32, None) for i in range(then_outputs)])
    other = _branch("else", [helper.make_node("Abs", ["x"], ["e"])], [_vi("e", f32, None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if")
    return _model([node], [_vi("x", f32, [3]), _vi("cond", cond_type, list(cond_shape))], [_vi("y", f32, None)])


@pytest.mark.parametrize(("dtype", "value"), [(TensorProto.INT64, np.array(1, np.int64)),
                                              (TensorProto.BOOL, np.array([True, False])),
                                              (TensorProto.BOOL, np.zeros((0,), bool))])
@pytest.mark.parametrize("prepared", [True, False])
def test_if_bad_condition_names_the_node(dtype, value, prepared):
    ex = OnnxExecutor(_simple_if(cond_type=dtype, cond_shape=value.shape))
    with pytest.raises(ValueError, match=r"node 'the_if' \(If\): the condition must be a 1-element bool tensor, got"):
        ex.run({"x": np.ones(3, np.float32), "cond": value}, prepared=prepared)


def test_if_branch_output_count_mismatch_names_the_node():
    with pytest.raises(ValueError, match=r"node 'the_if' \(If\): then_branch has 2 output\(s\), the node 1"):
        OnnxExecutor(_simple_if(then_outputs=2))


def test_unsupported_op_inside_a_branch_is_named():
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Det", ["x"], ["t"], name="det")], [_vi("t", f32, None)])
    other = _branch("else", [helper.make_node("Abs", ["x"], ["e"])], [_vi("e", f32, None)])
    model = _model([helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if")],
                   [_vi("x", f32, [2, 2]), _vi("cond", TensorProto.BOOL, [])], [_vi("y", f32, None)])
    with pytest.raises(ValueError, match=r"unsupported op Det \(ai.onnx opset 16\) at node 'the_if/then_branch/det'"):
        OnnxExecutor(model)


def test_error_inside_a_branch_names_the_branch_node():
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Add", ["x", "z"], ["t"], name="add")], [_vi("t", f32, None)])
    other = _branch("else", [helper.make_node("Abs", ["x"], ["e"])], [_vi("e", f32, None)])
    model = _model([helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if")],
                   [_vi("x", f32, [2]), _vi("z", f32, [3]), _vi("cond", TensorProto.BOOL, [])],
                   [_vi("y", f32, None)])
    ex = OnnxExecutor(model)
    feeds = {"x": np.ones(2, np.float32), "z": np.ones(3, np.float32), "cond": np.array(True)}
    for prepared in (True, False):
        with pytest.raises(ValueError, match=r"node 'the_if/then_branch/add' \(Add\)"):
            ex.run(feeds, prepared=prepared)
    assert ex.run(feeds | {"cond": np.array(False)})["y"].tolist() == [1.0, 1.0]


def test_if_before_the_producer_of_what_its_branch_reads():
    """onnxruntime.quantization may write an If before the node producing a tensor its branch
    reads by name; the executor orders by dependencies, as ORT does."""
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Neg", ["h"], ["t"])], [_vi("t", f32, None)])
    other = _branch("else", [helper.make_node("Abs", ["h"], ["e"])], [_vi("e", f32, None)])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if"),
             helper.make_node("Mul", ["x", "x"], ["h"])]
    model = _model(nodes, [_vi("x", f32, [3]), _vi("cond", TensorProto.BOOL, [])], [_vi("y", f32, None)])
    feeds = {"x": np.array([1.0, -2.0, 3.0], np.float32), "cond": np.array(True)}
    ex = OnnxExecutor(model)
    assert np.array_equal(ex.run(feeds)["y"], run_ort(model, feeds)["y"])
    assert np.array_equal(ex.run(feeds, prepared=False)["y"], [-1.0, -4.0, -9.0])


VAD_IF = ["silero_vad_if", "silero_vad_half", "silero_vad_op15", "silero_vad_ifless"]


@pytest.mark.parametrize("name", VAD_IF)
def test_silero_if_graphs_both_rates(name):
    path = model_path(name)
    if path is None:
        pytest.skip("install the wheel: pip install --no-deps silero-vad==6.2.3")
    ex = OnnxExecutor(path)
    rates = [(16000, 576), (8000, 288)] if "sr" in ex.input_names else [(16000, 576)]
    for sr, n in rates:
        for batch in (1, 3):
            rng = np.random.default_rng(batch + sr)
            x = {"input": rng.uniform(-1, 1, (batch, n)).astype(np.float32),
                 "state": rng.uniform(-1, 1, (2, batch, 128)).astype(np.float32), "sr": np.array(sr, np.int64)}
            x = {k: v for k, v in x.items() if k in ex.input_names}
            ours = ex.run(x, keep_all=True)
            ref = ex.run(x, keep_all=True, prepared=False)
            for t, v in ref.items():
                assert v.dtype == ours[t].dtype and np.array_equal(v, ours[t], equal_nan=True), (name, sr, batch, t)
            theirs = run_ort_all(path, x)
            assert not [r for r in first_divergence(ex.model, ours, theirs) if r["integer"]]
            for out in ex.output_names:
                assert ours[out].shape == theirs[out].shape and ours[out].dtype == theirs[out].dtype
                np.testing.assert_allclose(ours[out], theirs[out], rtol=0, atol=FLOAT_ATOL, err_msg=f"{name} {sr} {out}")


def test_silero_if_cli_compare_ort(tmp_path, capsys):
    from qsim.cli import main

    path = model_path("silero_vad_if")
    if path is None:
        pytest.skip("install the wheel: pip install --no-deps silero-vad==6.2.3")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", input=rng.uniform(-1, 1, (2, 288)).astype(np.float32),
             state=np.zeros((2, 2, 128), np.float32), sr=np.array(8000, np.int64))
    rc = main(["run-onnx", str(path), "--inputs", str(tmp_path / "in.npz"), "--compare-ort"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "mismatches: 0" in out


assert all(n in MODELS for n in VAD_IF)


def test_fuse_qdq_keeps_tensors_a_branch_reads():
    """--fuse-qdq must not fuse away a float tensor that an If branch reads from outer scope."""
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Neg", ["m"], ["t"])], [_vi("t", f32, None)])
    other = _branch("else", [helper.make_node("Abs", ["m"], ["e"])], [_vi("e", f32, None)])
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z"),
             numpy_helper.from_array(np.arange(-6, 6, dtype=np.int8).reshape(4, 3), "w"),
             numpy_helper.from_array(np.array(0.02, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "wz")]
    nodes = [helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"]),
             helper.make_node("MatMul", ["x", "wf"], ["m"], name="mm"),
             helper.make_node("QuantizeLinear", ["m", "s", "z"], ["yq"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if")]
    model = _model(nodes, [_vi("xq", TensorProto.UINT8, [2, 4]), _vi("cond", TensorProto.BOOL, [])],
                   [_vi("yq", TensorProto.UINT8, None), _vi("y", f32, None)], inits, opset=13)
    feeds = {"xq": np.arange(8, dtype=np.uint8).reshape(2, 4) * 30, "cond": np.array(True)}
    ex = OnnxExecutor(model, fuse_qdq=True)
    assert ex.fused == []  # m has a second reader: the If's branch
    ours, theirs = ex.run(feeds), run_ort(model, feeds)
    for k in ("yq", "y"):
        assert ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]), k


def test_branch_nodes_out_of_order():
    """A branch whose nodes are not sorted still reads its own tensors, not outer ones."""
    f32 = TensorProto.FLOAT
    then = _branch("then", [helper.make_node("Neg", ["h"], ["t"]), helper.make_node("Mul", ["x", "x"], ["h"])],
                   [_vi("t", f32, None)])
    other = _branch("else", [helper.make_node("Abs", ["x"], ["e"])], [_vi("e", f32, None)])
    model = _model([helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="the_if")],
                   [_vi("x", f32, [3]), _vi("cond", TensorProto.BOOL, [])], [_vi("y", f32, None)])
    ex = OnnxExecutor(model)
    assert ex.steps[0][4] == ["cond", "x"]
    feeds = {"x": np.array([1.0, -2.0, 3.0], np.float32), "cond": np.array(True)}
    for prepared in (True, False):
        assert ex.run(feeds, prepared=prepared)["y"].tolist() == [-1.0, -4.0, -9.0]
