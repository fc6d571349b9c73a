"""Real float models from pip wheels, quantized with onnxruntime.quantization (issue 11).

The models come from `pip install --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3`
(PP-OCRv4 det/rec, PP-OCR mobile v2 cls, silero VAD: the 16 kHz sequence graph and the four
graphs with `If`); nothing here imports those packages
(their own dependencies are not installed), the .onnx files are located through the
import system only. Each model is converted to opset 13 when older, pre-processed with
`quant_pre_process`, then quantized four ways: QDQ per tensor, QDQ per channel, QOperator
(static, u8 activations / s8 weights, calibrated on 3 seeded random batches) and dynamic
(`MODEL_FORMS` names the forms the quantizer leaves float, which are left out).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

# name -> (package, path inside the package, {input: shape at batch 1, or a fixed array}, batch axis per input)
_VAD_IO = {"input": (1, 576), "state": (2, 1, 128), "sr": np.array(16000, np.int64)}
MODELS = {
    "ppocr_cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                  {"x": (1, 3, 48, 192)}, {"x": 0}),
    "ppocrv4_det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", {"x": (1, 3, 64, 64)}, {"x": 0}),
    "ppocrv4_rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", {"x": (1, 3, 48, 80)}, {"x": 0}),
    "silero_vad": ("silero_vad", "data/silero_vad_16k_sequence.onnx",
                   {"input": (1, 576), "h": (1, 1, 128), "c": (1, 1, 128)}, {"input": 0}),
    # the wheel's other VAD graphs: `If` on the sample rate (nested up to 4 levels, branches reading
    # outer-scope tensors), `Size`; one 16 kHz chunk of 512 samples + 64 of context
    "silero_vad_if": ("silero_vad", "data/silero_vad.onnx", _VAD_IO, {"input": 0, "state": 1}),
    "silero_vad_half": ("silero_vad", "data/silero_vad_half.onnx", {k: v for k, v in _VAD_IO.items() if k != "sr"},
                        {"input": 0, "state": 1}),
    "silero_vad_op15": ("silero_vad", "data/silero_vad_16k_op15.onnx", _VAD_IO, {"input": 0, "state": 1}),
    "silero_vad_ifless": ("silero_vad", "data/silero_vad_op18_ifless.onnx", _VAD_IO, {"input": 0, "state": 1}),
}
FORMS = ("float", "qdq_tensor", "qdq_channel", "qoperator", "dynamic")
# Where all the convolutions and LSTMs sit inside If branches, onnxruntime.quantization's static
# quantizers (QDQ and QOperator) leave the model float (they quantize the top graph only; QOperator
# with EnableSubgraph fails in ORT 1.32); quantize_dynamic quantizes the branches with
# extra_options={"EnableSubgraph": True} for silero_vad.onnx, and fails on the op18 graph
# ("Expected model_8k.encoder.0.reparam_conv.weight to be an initializer": the weights are
# initializers of the top graph that the branches read from outer scope). Those forms are not listed.
MODEL_FORMS = {"silero_vad_if": ("float", "dynamic"), "silero_vad_ifless": ("float",)}
DYNAMIC_SUBGRAPHS = {"silero_vad_if"}


def forms(name: str) -> tuple[str, ...]:
    """The forms of a model that are really quantized (see MODEL_FORMS)."""
    return MODEL_FORMS.get(name, FORMS)


def model_path(name: str) -> Path | None:
    """The model file inside its installed wheel, or None when the package is not installed."""
    package, rel, _, _ = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.is_file() else None


def feeds(name: str, batch: int, seed: int = 0) -> dict:
    """Seeded uniform [-1, 1) float32 inputs; `batch` along each input's batch axis."""
    _, _, shapes, batch_axes = MODELS[name]
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in shapes.items():
        if isinstance(shape, np.ndarray):  # a fixed input (the VAD's sample rate)
            out[k] = shape.copy()
            continue
        shape = list(shape)
        if k in batch_axes:
            shape[batch_axes[k]] = batch
        out[k] = rng.uniform(-1, 1, shape).astype(np.float32)
    return out


def quantize_all(name: str, outdir: Path) -> dict[str, Path]:
    """Write the float (opset >= 13, pre-processed) model and its four quantized forms."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = model_path(name)
    outdir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        model = version_converter.convert_version(model, 13)
    base = outdir / f"{name}_13.onnx"
    onnx.save(model, str(base))
    paths = {"float": outdir / f"{name}_float.onnx"}
    quant_pre_process(str(base), str(paths["float"]), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([feeds(name, 2, seed) for seed in (101, 102, 103)])

        def get_next(self):
            return next(self.batches, None)

    static = {"qdq_tensor": (QuantFormat.QDQ, False), "qdq_channel": (QuantFormat.QDQ, True),
              "qoperator": (QuantFormat.QOperator, False)}
    for form, (fmt, per_channel) in static.items():
        if form not in forms(name):
            continue
        paths[form] = outdir / f"{name}_{form}.onnx"
        quantize_static(str(paths["float"]), str(paths[form]), Reader(), quant_format=fmt, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    if "dynamic" in forms(name):
        paths["dynamic"] = outdir / f"{name}_dynamic.onnx"
        quantize_dynamic(str(paths["float"]), str(paths["dynamic"]), weight_type=QuantType.QInt8,
                         extra_options={"EnableSubgraph": True} if name in DYNAMIC_SUBGRAPHS else None)
    return paths


def timing_table(outdir: Path, repeats: int = 20) -> list[dict]:
    """Per model and form: ran, bit-exact integers, max float difference, qsim/ORT wall time
    (ORT single-threaded, graph as written, one InferenceSession; qsim one OnnxExecutor, i.e. its
    prepared plan; best of `repeats` after a warm-up run each, the two timed alternately so that
    both see the same machine load)."""
    import gc

    from qsim.onnxrun.executor import OnnxExecutor, first_divergence, run_ort_all

    import onnxruntime as ort

    rows = []
    for name in MODELS:
        if model_path(name) is None:
            continue
        paths = quantize_all(name, outdir / name)
        gc.collect()  # end the calibration sessions (their spinning ORT thread pools would share the timed cores)
        for form, path in paths.items():
            x = feeds(name, 1, seed=1)
            ex = OnnxExecutor(path)
            ours = ex.run(x, keep_all=True)
            theirs = run_ort_all(path, x)
            diff = first_divergence(ex.model, ours, theirs)
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sess.run(None, x)
            ex.run(x)
            t_ort = t_q = float("inf")
            for _ in range(repeats):
                t_ort = min(t_ort, _timed(lambda: sess.run(None, x)))
                t_q = min(t_q, _timed(lambda: ex.run(x)))
            outs = [ours[o] for o in ex.output_names]
            fmax = max((float(np.max(np.abs(ours[o].astype(np.float64) - theirs[o].astype(np.float64))))
                        for o in ex.output_names if ours[o].dtype.kind == "f"), default=0.0)
            rows.append(dict(model=name, form=form, ran=True, integer_exact=not any(r["integer"] for r in diff),
                             n_int=sum(o.dtype.kind in "iub" for o in outs), max_float_diff=fmax,
                             qsim_ms=1e3 * t_q, ort_ms=1e3 * t_ort, ratio=t_q / t_ort))
    return rows


def _ms(v: float) -> str:
    """Milliseconds with two significant digits below 1 ms (the VAD runs in 0.03–0.3 ms)."""
    return f"{v:.2f}" if v < 1 else f"{v:.1f}"


def _timed(fn) -> float:
    import time

    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":  # python -m tests.real_models: the README table
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print("| model | form | ran | integers bit-exact | max float diff | qsim ms | ORT ms | qsim/ORT |")
        print("|---|---|---|---|---|---|---|---|")
        for r in timing_table(Path(d)):
            print(f"| {r['model']} | {r['form']} | yes | {'yes' if r['integer_exact'] else 'NO'} | "
                  f"{r['max_float_diff']:.2g} | {_ms(r['qsim_ms'])} | {_ms(r['ort_ms'])} | {r['ratio']:.1f}× |")
