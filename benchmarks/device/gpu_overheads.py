"""Measure on a real NVIDIA GPU what qsim's GPU profiles assume: per-kernel launch gap, int8/bf16 GEMM rates,
and ResNet-50 (torchvision, fp16, channels-last, eager and CUDA-graph) latency per batch.

Runs where PyTorch sees a CUDA GPU (not a qsim dependency); writes JSON to $OUT/gpu_overheads.json.
    python benchmarks/device/gpu_overheads.py
"""
import json
import os
import time

import torch


def events_ms(fn, reps):
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / reps


def main():
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "sms": torch.cuda.get_device_properties(0).multi_processor_count}
    x = torch.zeros(1, device="cuda")
    for _ in range(100):
        x.add_(1)
    out["eager_tiny_kernel_us"] = 1e3 * events_ms(lambda: x.add_(1), 5000)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(1000):
            x.add_(1)
    g.replay()
    out["graph_tiny_kernel_us"] = 1e3 * events_ms(g.replay, 20) / 1000
    n = 8192
    a8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device="cuda")
    b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device="cuda").t().contiguous().t()
    for _ in range(3):
        torch._int_mm(a8, b8)
    ms = events_ms(lambda: torch._int_mm(a8, b8), 10)
    out["int8_gemm_8192_tops"] = 2 * n ** 3 / ms / 1e9
    ah = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        ah @ ah
    ms = events_ms(lambda: ah @ ah, 10)
    out["bf16_gemm_8192_tflops"] = 2 * n ** 3 / ms / 1e9
    import torchvision
    model = torchvision.models.resnet50().eval().half().cuda().to(memory_format=torch.channels_last)
    res = {}
    with torch.inference_mode():
        for batch in (1, 8, 64, 256):
            inp = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.half).to(memory_format=torch.channels_last)
            for _ in range(5):
                model(inp)
            eager = events_ms(lambda: model(inp), 20)
            gr = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    model(inp)
            torch.cuda.current_stream().wait_stream(s)
            with torch.cuda.graph(gr):
                model(inp)
            graph = events_ms(gr.replay, 20)
            res[batch] = {"eager_ms": eager, "graph_ms": graph, "graph_img_per_s": batch / graph * 1e3}
    out["resnet50_fp16"] = res
    # kernels per ResNet-50 forward (eager), from the profiler
    from torch.profiler import ProfilerActivity, profile
    inp = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.half).to(memory_format=torch.channels_last)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(inp)
        torch.cuda.synchronize()
    out["resnet50_kernels_per_forward"] = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
    path = os.path.join(os.environ.get("OUT", "."), "gpu_overheads.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("wall", time.time() - t0)
