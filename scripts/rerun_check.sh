#!/usr/bin/env bash
# Rerun a profile along another numerics path on this machine and compare it with the main run (issue #22, item 8).
#
#   bash scripts/env.sh bash scripts/rerun_check.sh                      # default profile: results/ vs results-rerun/
#   bash scripts/env.sh bash scripts/rerun_check.sh --configfile config/smoke.yaml
#
# The main run must already exist in $SFB_MAIN (default: results/, as `snakemake --cores 2 all` writes it). The
# rerun goes to $SFB_RERUN (default: results-rerun/) with the CPU kernels forced one instruction set down:
# ATEN_CPU_CAPABILITY (torch's own kernels: softmax, GELU, layer norm, reductions), ONEDNN_MAX_CPU_ISA (oneDNN:
# convolutions) and MKL_ENABLE_INSTRUCTIONS (MKL's vector maths), each overridable from the environment. Every
# run's env.json records them (`numerics.env`), so `compare`'s fingerprint table shows the two paths.
#
# What it reruns: every job of the profile into the other folder, except the backbone's pre-training, which both
# runs read from the machine-wide cache (its key holds the code and data, not the numerics path): the check is of
# the accuracy grid, tuning and verdicts given one backbone. Exit status: compare's (0 when every learning-rate
# choice and verdict agrees and every accuracy cell's mean lies inside the other run's 95% interval).
set -euo pipefail
main="${SFB_MAIN:-results}"
rerun="${SFB_RERUN:-results-rerun}"
cores="${SFB_CORES:-2}"
export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}"
export ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"
export MKL_ENABLE_INSTRUCTIONS="${MKL_ENABLE_INSTRUCTIONS:-AVX2}"
if [ ! -f "$main/tables/claims.csv" ]; then
  echo "rerun_check: no rendered main run in $main/ (run 'snakemake --cores $cores all' first, or set SFB_MAIN)" >&2
  exit 2
fi
echo "rerun_check: $main/ vs $rerun/ with ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY" \
     "ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS" >&2
snakemake --cores "$cores" all "$@" --config results="$rerun"
python -m benchmark compare "$main" "$rerun" --out "$rerun/compare"
