#!/usr/bin/env bash
# Full head-to-head (issue 6): DIC-space NPE vs NPE over conductances (linear and log box priors), STG and DA,
# budgets 1e3, 1e4, 1e5, 100 held-out observations per set. Takes hours on 2 cores; results go to
# benchmarks/results/compare_<model>/. Each finished method x budget is kept in $CHECKPOINTS (git-ignored), so an
# interrupted run resumes where it stopped when the same command is run again.
# Usage: benchmarks/compare.sh [stg] [da]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINTS=${CHECKPOINTS:-benchmarks/results/checkpoints}
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(stg da)
for model in "${models[@]}"; do
    dic-sbi compare --model "$model" --budgets 1000,10000,100000 --observations 100 --samples 100 \
        --seed 0 --torch-threads 2 --checkpoint "$CHECKPOINTS/compare_${model}" \
        --out "benchmarks/results/compare_${model}"
done
