#!/usr/bin/env bash
# The TensorRT path on a real GPU, in one go: what CI cannot run (no TensorRT there).
# Needs docker with the NVIDIA runtime and one GPU; run from the checkout, after `make serve`
# or `maas train && maas export` has made artifacts/ (CPU is fine for that part).
#
#   bash benchmarks/gpu_check.sh            # -> benchmarks/results/gpu_check/
#
# 1. In the TensorRT container of the Triton release we document (build/release.py:
#    TRITON_RELEASE), build the classifier's onnx, trt-fp16 and trt-int8 variants (trt-int8:
#    the symmetric Q/DQ graph of build/quantize.py, built by TensorRT through Polygraphy): each
#    prints its gate (held-out top-1 against PyTorch) and in-process speed; the manifests keep
#    them. This is where build/tensorrt.py's calls into TensorRT run (CI checks only what they
#    ask for: tests/unit/test_tensorrt_contract.py).
# 2. Serve each build in that release's tritonserver container (the plan's TensorRT must be
#    the server's) and run perf_analyzer (its SDK container) at concurrency 1, 16, 64 over gRPC.
set -euo pipefail
RELEASE=${RELEASE:-24.10}
OUT=${OUT:-benchmarks/results/gpu_check}
NGC=nvcr.io/nvidia
mkdir -p "$OUT"
run() { docker run --gpus all --rm --net host -v "$PWD":/maas -w /maas "$@"; }

for variant in onnx trt-fp16 trt-int8; do
  repo=$OUT/repo-$variant
  echo "== build $variant =="
  run "$NGC/tensorrt:$RELEASE-py3" bash -c \
    "pip install -q -e '.[tensorrt]' && maas build image_classifier --variant $variant \
     --repository $repo" | tee "$OUT/build-$variant.txt"
  echo "== serve $variant and measure =="
  run -d --name maas-gpu-check "$NGC/tritonserver:$RELEASE-py3" bash -c \
    "pip install -q /maas && tritonserver --model-repository=/maas/$repo \
     --model-control-mode=explicit --load-model=*" >/dev/null
  trap 'docker rm -f maas-gpu-check >/dev/null 2>&1 || true' EXIT
  until curl -sf localhost:8000/v2/health/ready >/dev/null; do sleep 2; done
  run "$NGC/tritonserver:$RELEASE-py3-sdk" bash -c \
    "python -m maas.benchmarks.perf_analyzer_inputs >/dev/null 2>&1 || true; \
     perf_analyzer -m image_classifier -i grpc -u localhost:8001 \
       --input-data benchmarks/perf_analyzer/ensemble_inputs.json \
       --concurrency-range 1:64:63 --measurement-interval 5000 -f $OUT/perf-$variant.csv" \
    | tee "$OUT/perf-$variant.txt"
  docker rm -f maas-gpu-check >/dev/null
done
echo "gates:"; grep -h -A1 "^variant" "$OUT"/build-*.txt
echo "throughput (infer/s at concurrency 1, 64):"
for variant in onnx trt-fp16 trt-int8; do
  echo "  $variant: $(cut -d, -f2 "$OUT/perf-$variant.csv" | tail -n +2 | paste -sd' ')"
done
