#!/usr/bin/env bash
# Create (idempotently) the separate virtualenv that runs the Brian2 baseline of benchmarks/simulator.py.
#
# Brian2 for Python 3.11 is at most 2.9.0, which needs numpy < 2, while dic_sbi needs numpy >= 2: hence a venv of
# its own at benchmarks/.brian2-venv (gitignored). benchmarks/brian2_runner.py runs inside it and never imports
# dic_sbi. Usage:  bash benchmarks/brian2_setup.sh   (re-running is a no-op once the venv works)
# Environment: PYTHON (interpreter to build the venv from, default python3), BRIAN2_VENV (venv path).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${BRIAN2_VENV:-$HERE/.brian2-venv}"
PYTHON="${PYTHON:-python3}"
PINS=("brian2==2.9.0" "numpy>=1.24,<2" "scipy>=1.10,<1.14" "cython>=3,<3.2" "sympy>=1.12,<1.14" "setuptools<81")

check() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import brian2, numpy, scipy, Cython
assert brian2.__version__ == "2.9.0", brian2.__version__
assert int(numpy.__version__.split(".")[0]) < 2
PY
}

if check; then
    echo "brian2 venv ready: $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${PINS[@]}"

if ! check; then
    echo "brian2 venv at $VENV failed its import check" >&2
    exit 1
fi
"$VENV/bin/python" -c 'import brian2, numpy, scipy, Cython, sympy; print("brian2", brian2.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__, "cython", Cython.__version__, "sympy", sympy.__version__)'
echo "brian2 venv ready: $VENV"
