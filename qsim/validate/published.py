"""Published data points qsim's cost model is checked against, each with its source.

Values are copied from the cited table/figure; nothing here is derived from qsim. Tolerances are the
issue's targets (issues 9 and 10): 30 % for latency/throughput/power/energy, 50 % for traffic,
10 % for ZigZag cycles.
"""

from __future__ import annotations

# --- Google TPU v1 ------------------------------------------------------------------------------
TPU_PAPER = ("Jouppi et al., In-Datacenter Performance Analysis of a Tensor Processing Unit, ISCA 2017, "
             "arXiv:1704.04760 (https://arxiv.org/abs/1704.04760)")

# Table 1: layers, weights, TPU batch size (= MAC ops per weight byte for the FC apps; 2888 for CNN0).
TPU_APPS = {
    "MLP0": {"fc": 5, "vector": 0, "conv": 0, "weights": 20e6, "batch": 200},
    "MLP1": {"fc": 4, "vector": 0, "conv": 0, "weights": 5e6, "batch": 168},
    "LSTM0": {"fc": 24, "vector": 34, "conv": 0, "weights": 52e6, "batch": 64},
    "LSTM1": {"fc": 37, "vector": 19, "conv": 0, "weights": 34e6, "batch": 96},
    "CNN0": {"fc": 0, "vector": 0, "conv": 16, "weights": 8e6, "batch": 8, "ops_per_weight_byte": 2888},
}
# Table 3, row "TeraOps/sec (92 Peak)": measured TOPS on the TPU (CNN1 is left out: its 89 layers are
# not described in enough detail to build).
TPU_TOPS = {"MLP0": 12.3, "MLP1": 9.7, "LSTM0": 3.7, "LSTM1": 2.8, "CNN0": 86.0}
TPU_PEAK_TOPS = 92.0
# Abstract and §7: "using the GPU's GDDR5 memory in the TPU would triple achieved TOPS"; §7 gives the
# K80's GDDR5 as 180 GB/s against the TPU's 34 GB/s DDR3. The paper states the average, not a per-app
# value; the memory-bound apps are the four MLPs/LSTMs (Figure 5 roofline, Table 3). CNN0 runs at
# 86 of 92 peak TOPS (Table 3), so more bandwidth can speed it up by at most 92/86 = 1.07.
TPU_GDDR5_BANDWIDTH = 180e9
TPU_GDDR5_SPEEDUP_MEMORY_BOUND = 3.0
TPU_GDDR5_SPEEDUP_CNN0 = 1.0

# --- Eyeriss v1 ---------------------------------------------------------------------------------
EYERISS_PAPER = ("Chen et al., Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep Convolutional "
                 "Neural Networks, IEEE JSSC 52(1) 2017, Table V (AlexNet CONV layers, batch 4, 200 MHz, 1 V) "
                 "(https://doi.org/10.1109/JSSC.2016.2616357)")
EYERISS_LAYERS = ("CONV1", "CONV2", "CONV3", "CONV4", "CONV5")
EYERISS_BATCH = 4
EYERISS = {  # per layer: latency ms, DRAM MB, global buffer MB, power mW, MACs (millions) — Table V
    "CONV1": {"latency_ms": 20.9, "dram_mb": 5.0, "glb_mb": 18.5, "power_mw": 332, "mmacs": 422},
    "CONV2": {"latency_ms": 41.9, "dram_mb": 4.0, "glb_mb": 77.6, "power_mw": 288, "mmacs": 896},
    "CONV3": {"latency_ms": 23.6, "dram_mb": 3.0, "glb_mb": 50.2, "power_mw": 266, "mmacs": 598},
    "CONV4": {"latency_ms": 18.4, "dram_mb": 2.1, "glb_mb": 37.4, "power_mw": 235, "mmacs": 449},
    "CONV5": {"latency_ms": 10.5, "dram_mb": 1.3, "glb_mb": 24.9, "power_mw": 236, "mmacs": 299},
}
EYERISS_TOTAL_LATENCY_MS = 115.3

# --- MLPerf Inference, ResNet-50 offline ----------------------------------------------------------
MLPERF = {
    "t4": {"img_per_s": 6036.0, "round": "v0.7",
           "url": "https://mlcommons.org/benchmarks/inference-datacenter/ "
                  "(https://github.com/mlcommons/inference_results_v0.7, closed division, 1× T4)"},
    "a100": {"img_per_s": 42379.0, "round": "v3.0",
             "url": "https://mlcommons.org/benchmarks/inference-datacenter/ "
                    "(https://github.com/mlcommons/inference_results_v3.0, closed division, 1× A100-SXM)"},
}
MLPERF_BATCH = 256

# --- Bit Fusion artifact ------------------------------------------------------------------------
BITFUSION_SOURCE = ("Sharma et al., Bit Fusion, ISCA 2018; artifact https://github.com/hsharma35/bitfusion @04ec1c8, "
                    "results/bitfusion-eyeriss-sim-sweep.csv rows N=16, M=32, RNN/LSTM (its simulator's cycles; "
                    "bf_e_conf.ini: 16×32 Fusion Units, 500 MHz), re-produced in tests/data/bitfusion/reference.json")
BITFUSION_BATCH = 16
# benchmarks.py: RNN = one FC 2·2048 → 2·2048; LSTM = one FC 4·900 → 4·900 (batch 16, 4-bit weights and inputs).
BITFUSION_FC = {"RNN": (4096, 4096), "LSTM": (3600, 3600)}
BITFUSION_CYCLES = {  # DRAM bits/cycle -> benchmark -> total cycles
    192: {"RNN": 394_583, "LSTM": 337_175},
    4096: {"RNN": 131_079, "LSTM": 103_063},
}

# --- Per-operation energy at 45 nm ----------------------------------------------------------------
HWCOMPONENTS_JSON = "tests/data/hwcomponents/energies_45nm.json"
HWCOMPONENTS_SOURCE = ("Accelergy hwcomponents 1.0.114 at 45 nm (https://github.com/Accelergy-Project/hwcomponents): "
                       "hwcomponents-library 1.0.58 AladdinIntMAC, hwcomponents-cacti 1.0.40 (CACTI 7) SRAM; "
                       f"{HWCOMPONENTS_JSON}")
# integer_mac.by_bits[b].intmac_acc_32.energy_pj: one b×b multiply + one 32-bit add (pJ).
HWC_INT_MAC_ACC32_PJ = {2: 0.298662958, 4: 0.469661436, 8: 1.15365535, 16: 3.889631005}
# sram.by_config["<KiB>KiB_w64"].read_pj: one 64-bit read (pJ).
HWC_SRAM_READ_64B_PJ = {1: 1.66966, 8: 6.13702, 32: 17.0418, 128: 32.2859, 1024: 93.5192}

# --- ZigZag 3.9.1 --------------------------------------------------------------------------------
ZIGZAG_JSON = "tests/data/zigzag/conv3x3_128_28_tpu_like.json"
ZIGZAG_SOURCE = ("ZigZag 3.9.1 (https://github.com/KULeuven-MICAS/zigzag), shipped tpu_like hardware and mapping, "
                 f"LOMA search, latency-optimal; {ZIGZAG_JSON}")
# runs[<wXaX>]: latency_cycles.total and energy_pj.mac / energy_pj.memory_per_memory_instance (pJ), copied from
# the JSON (tests/test_validate.py checks the copy). W = I = b bits, partial sums 2b bits (ZigZag's default).
ZIGZAG = {
    8: {"cycles": 125_504, "mac": 4_624_220.16, "rf_128B": 10_996_531.2, "rf_2B": 4_922_867.712,
        "sram_2MB": 6_332_650.24, "dram": 31_091_200.0},
    4: {"cycles": 119_232, "mac": 4_624_220.16, "rf_128B": 10_989_527.04, "rf_2B": 4_922_867.712,
        "sram_2MB": 3_166_325.12, "dram": 15_545_600.0},
    2: {"cycles": 116_096, "mac": 4_624_220.16, "rf_128B": 10_986_024.96, "rf_2B": 4_872_290.304,
        "sram_2MB": 482_003.2, "dram": 7_772_800.0},
}
