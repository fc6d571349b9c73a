"""ONNX Runtime's fixed cost per node on this CPU: a chain of 200 tiny Relu nodes, one thread.

The per-node time is what `overheads.per_kernel_s` of the CPU profiles stands for (a runtime's dispatch of
one unfused op). Prints the CPU model and the median over repeats.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_ort_dispatch.py
"""
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from qsim.kernels.cpu import cpu_model

N = 200


def main():
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(N)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"t{N}", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = {"t0": np.ones(1, np.float32)}
    for _ in range(50):
        sess.run(None, x)
    per = []
    for _ in range(30):
        t0 = time.perf_counter()
        for _ in range(20):
            sess.run(None, x)
        per.append((time.perf_counter() - t0) / 20 / N)
    print(f"CPU: {cpu_model()}; onnxruntime {ort.__version__}")
    print(f"per-node dispatch: median {statistics.median(per) * 1e6:.2f} us, min {min(per) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
