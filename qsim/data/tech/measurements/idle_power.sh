#!/bin/bash
# Idle power of the device GPU: bare idle, then with one CUDA context held (driver API via ctypes, no work).
nvidia-smi --query-gpu=name,driver_version,pstate,power.draw,power.limit,clocks.sm,clocks.mem,temperature.gpu,persistence_mode --format=csv
nvidia-smi -q -d POWER | sed -n 1,45p
echo BARE
for i in $(seq 15); do nvidia-smi --query-gpu=pstate,power.draw,clocks.sm,clocks.mem --format=csv,noheader; sleep 1; done
python3 - <<'PY' &
import ctypes, time
cuda = ctypes.CDLL('libcuda.so.1')
print('cuInit', cuda.cuInit(0), flush=True)
dev = ctypes.c_int(); print('cuDeviceGet', cuda.cuDeviceGet(ctypes.byref(dev), 0), flush=True)
ctx = ctypes.c_void_p(); print('cuCtxCreate', cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), flush=True)
time.sleep(30)
PY
sleep 6
echo CONTEXT
for i in $(seq 20); do nvidia-smi --query-gpu=pstate,power.draw,clocks.sm,clocks.mem --format=csv,noheader; sleep 1; done
wait
echo AFTER
for i in $(seq 8); do nvidia-smi --query-gpu=pstate,power.draw,clocks.sm --format=csv,noheader; sleep 1; done
