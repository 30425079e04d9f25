#!/usr/bin/env bash
# Full head-to-head (issue 6): DIC-space NPE vs NPE over conductances (linear and log box priors), STG and DA,
# budgets 1e3, 1e4, 1e5, 100 held-out observations per set. Takes hours; results go to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
for model in stg da; do
    dic-sbi compare --model "$model" --budgets 1000,10000,100000 --observations 100 --samples 100 \
        --seed 0 --out "benchmarks/results/compare_${model}"
done
