#!/usr/bin/env bash
# perf_analyzer concurrency sweeps over gRPC and HTTP, one CSV (-f) per protocol and model.
# perf_analyzer is not on PyPI; run this where it is (the Triton SDK container:
# nvcr.io/nvidia/tritonserver:<yy.mm>-py3-sdk) against a running `make serve`.
#
#   .venv/bin/python -m maas.benchmarks.perf_analyzer_inputs   # once: the input JSON files
#   bash benchmarks/perf_analyzer.sh [HOST] [OUT_DIR]            # or: make perf-analyzer
set -euo pipefail
HOST=${1:-localhost}
OUT=${2:-benchmarks/results/perf_analyzer}
DATA=$(dirname "$0")/perf_analyzer
CONCURRENCY=${CONCURRENCY:-"1 2 4 8 16 32 64"}
command -v perf_analyzer >/dev/null || {
  echo "perf_analyzer not found: use the Triton SDK container (see docs/benchmarks.md)" >&2; exit 1; }
mkdir -p "$OUT"
for proto in grpc http; do
  port=$([ "$proto" = grpc ] && echo 8001 || echo 8000)
  for model in image_classifier classifier; do
    inputs=$DATA/$([ "$model" = classifier ] && echo classifier || echo ensemble)_inputs.json
    for c in $CONCURRENCY; do
      perf_analyzer -m "$model" -i "$proto" -u "$HOST:$port" --input-data "$inputs" \
        --concurrency-range "$c" --measurement-interval 5000 --stability-percentage 10 \
        --percentile 99 -f "$OUT/${model}_${proto}_c${c}.csv"
    done
    # One CSV per sweep: the header once, then each concurrency's row.
    first=$(ls "$OUT/${model}_${proto}_c"*.csv | head -n 1)
    { head -n 1 "$first"; for f in "$OUT/${model}_${proto}_c"*.csv; do tail -n +2 "$f"; done; } \
      > "$OUT/${model}_${proto}.csv"
    rm "$OUT/${model}_${proto}_c"*.csv
  done
done
echo "wrote $OUT/{image_classifier,classifier}_{grpc,http}.csv"
