"""Write examples/model.onnx (a small quantized ONNX model) and examples/in.npz (inputs for it).

The model is qsim's trained scikit-learn digits CNN (`qsim nets list`), exported to float ONNX
and quantized by ONNX Runtime's own `quantize_static` (QDQ format, per-channel int8 weights with
reduce_range, uint8 activations calibrated on 64 training images). The inputs are 8 test images.

    python examples/make_model.py            # needs the test extras: onnx, onnxruntime, scikit-learn
    qsim run-onnx examples/model.onnx --inputs examples/in.npz --out out.npz --compare-ort
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(out_dir: Path = HERE) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from qsim.nets.data import load_dataset
    from qsim.nets.onnx_io import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    float_path = out_dir / "model.float.onnx"
    export_onnx("digits_cnn", float_path, batch=8)
    ds = load_dataset("digits")
    calib = ds.x_train[:64].astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calib[i:i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(out_dir / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    float_path.unlink()
    np.savez(out_dir / "in.npz", input=ds.x_test[:8].astype(np.float32))
    print(f"wrote {out_dir / 'model.onnx'} and {out_dir / 'in.npz'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
