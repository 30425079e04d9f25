#!/usr/bin/env bash
# Create (idempotently) the separate virtualenv that runs benchmarks/neuron_runner.py: NEURON 9.0.2 from PyPI, the
# independent simulator of the Pospischil model (benchmarks/neuron_compare.py). Its own venv, like the Brian2 one:
# neuron_runner.py never imports dic_sbi. nrnivmodl needs a C++ compiler (g++) and make.
# Usage:  bash benchmarks/neuron_setup.sh   (re-running is a no-op once the venv works)
# Environment: PYTHON (interpreter to build the venv from, default python3), NEURON_VENV (venv path).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${NEURON_VENV:-$HERE/.neuron-venv}"
PYTHON="${PYTHON:-python3}"

check() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/nrnivmodl" ] && "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import neuron
assert neuron.__version__ == "9.0.2", neuron.__version__
PY
}

if ! check; then
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "neuron==9.0.2"
    check || { echo "neuron venv at $VENV failed its import check" >&2; exit 1; }
fi
echo "neuron venv ready: $VENV"
