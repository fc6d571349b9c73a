# -*- coding: utf-8 -*-
"""Re-run the Bit Fusion artifact simulator (github.com/hsharma35/bitfusion) for its RNN and
LSTM benchmarks at batch 16, w4a4, DRAM interface 192 and 4096 bit/cycle.

NOT PART OF QSIM.  Python 2.7 (the artifact is Python 2 code: ConfigParser, iteritems,
`raise E, msg`), run with the artifact and its dnnweaver2 dependency on PYTHONPATH and the
artifact's root as the working directory (it reads ./results/systolic_array_synth.csv and
bitfusion/sram/cacti_sweep.csv).  None of the artifact's code is committed to qsim; see
README.md for the exact commands.  Writes one JSON document to the path given as argv[1]
(the artifact itself prints a CACTI-binary warning on stdout; its SRAM numbers come from the
committed cacti_sweep.csv, so the binary is not needed).
"""
from __future__ import print_function

import json
import sys

import bitfusion.src.benchmarks.benchmarks as benchmarks
from bitfusion.src.simulator.simulator import Simulator
from bitfusion.src.optimizer.optimizer import optimize_for_order, get_stats_fast
from dnnweaver2.tensorOps.cnn import MatMul

CONFIG = 'bf_e_conf.ini'   # the notebook's BitFusion-Eyeriss configuration
BATCH = 16
BANDWIDTHS = [192, 4096]   # 192: bf_e_conf.ini as is; 4096: notebook cell 24, factor 1


def stats_dict(s):
    return {
        'total_cycles': s.total_cycles,
        'mem_stall_cycles': s.mem_stall_cycles,
        'compute_cycles': s.total_cycles - s.mem_stall_cycles,
        'reads_bits': dict(s.reads),
        'writes_bits': dict(s.writes),
    }


def main():
    sim = Simulator(CONFIG, False)
    acc = sim.accelerator
    out = {'config_file': CONFIG,
           'accelerator': {'N': acc.N, 'M': acc.M, 'pmax': acc.pmax, 'pmin': acc.pmin,
                           'sram_bytes': dict(acc.sram), 'frequency_hz': acc.frequency,
                           'mem_if_width_bits_in_config': acc.mem_if_width},
           'runs': []}
    energy_cost = sim.get_energy_cost()
    out['energy_cost_from_artifact'] = dict(zip(
        ['core_dynamic_energy', 'wbuf_read_energy', 'wbuf_write_energy', 'ibuf_read_energy',
         'ibuf_write_energy', 'obuf_read_energy', 'obuf_write_energy'], list(energy_cost)))
    for bw in BANDWIDTHS:
        acc.mem_if_width = bw
        for bench in ['RNN', 'LSTM']:
            g = benchmarks.get_bench_nn(bench, WRPN=True)
            # exactly what the sweep does (SimulatorSweep.sweep -> get_bench_numbers)
            stats = benchmarks.get_bench_numbers(g, sim, BATCH)
            layers = []
            for opname, op in g.op_registry.iteritems():
                if not isinstance(op, MatMul):
                    continue
                B = op.data.shape[0]
                OC, IC = op.weights.shape
                iprec = op.data.dtype.bits
                wprec = op.weights.dtype.bits
                # the same search get_FC_cycles -> get_conv_cycles runs, to expose the chosen tiling
                conv_params = (acc, 1, 1, 1, IC, OC, B, iprec, wprec, False, energy_cost)
                _, tiling, order = optimize_for_order(conv_params)
                s2 = get_stats_fast(conv_params, tiling, order)
                layers.append({
                    'layer': opname,
                    'op': 'MatMul',
                    'data_shape': list(op.data.shape),
                    'weights_shape_OC_IC': [OC, IC],
                    'output_shape': list(op.output_tensors.shape),
                    'iprec_bits': iprec, 'wprec_bits': wprec,
                    'as_conv': {'K': 1, 'O': 1, 'S': 1, 'IC': IC, 'OC': OC, 'B': B},
                    'perf_factor': acc.get_perf_factor(iprec, wprec),
                    'stats': stats_dict(stats[opname]),
                    'best_tiling_num_tiles_and_tile': {k: list(v) for k, v in tiling.items()},
                    'best_loop_order_outer_to_inner': list(order),
                    'stats_recomputed_from_tiling': stats_dict(s2),
                })
            out['runs'].append({'benchmark': bench, 'bandwidth_bits_per_cycle': bw, 'batch': BATCH,
                                'layers': layers,
                                'total_cycles': sum(l['stats']['total_cycles'] for l in layers)})
    with open(sys.argv[1], 'w') as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write('\n')


if __name__ == '__main__':
    main()
