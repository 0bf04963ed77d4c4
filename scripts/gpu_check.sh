#!/usr/bin/env bash
# detpipe GPU check for a short lease: a machine with an NVIDIA GPU and PyTorch preinstalled,
# no project venv, no network. Missing wheels come from a folder (--wheels DIR or
# DETPIPE_WHEELS), installed with `pip install --no-index --find-links`; then
# scripts/gpu_check.py runs every check and writes one JSON (see its docstring).
#
#   scripts/gpu_check.sh --wheels /mnt/wheels --out gpu_check.json     # on the GPU machine
#   scripts/gpu_check.sh --download /mnt/wheels                        # beforehand, with network:
#                                                                      # fetch the pinned wheels
# Options after `--` go to gpu_check.py (e.g. -- --images 64 --imgsz 160 --budget-s 300).
# Environment: PYTHON (default python3), DETPIPE_WHEELS, GPU_CHECK_VENV (default: a temp dir).
# Exit status: 0 all checks passed or skipped, 1 a check failed, 2 bad usage or setup.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="${DETPIPE_WHEELS:-}"
OUT="gpu_check.json"
DOWNLOAD=""
EXTRA=()

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check.sh: error: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a directory}"; shift 2 ;;
    --out) OUT="${2:?--out needs a file}"; shift 2 ;;
    --download) DOWNLOAD="${2:?--download needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"

if [[ -n "$DOWNLOAD" ]]; then
  # Every pin the check may need, from pyproject.toml (the one place versions are named).
  mkdir -p "$DOWNLOAD"
  "$PYTHON" - "$REPO" <<'PY' > "$DOWNLOAD/requirements.txt"
import sys
sys.path.insert(0, sys.argv[1] + "/scripts")
import gpu_check
pinned = gpu_check.pins()
print("\n".join(pinned.get(d, d) for d in gpu_check.NEEDED.values()))
PY
  exec "$PYTHON" -m pip download --dest "$DOWNLOAD" -r "$DOWNLOAD/requirements.txt"
fi

"$PYTHON" -c "import torch" 2>/dev/null || die "PyTorch is not importable by $PYTHON (the machine should have it preinstalled)"

# A venv that sees the preinstalled torch (and CUDA/TensorRT packages) but installs into itself.
VENV="${GPU_CHECK_VENV:-$(mktemp -d -t detpipe-gpu-check-venv.XXXXXX)}"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv --system-site-packages "$VENV" || die "cannot create a venv in $VENV"
fi
PY="$VENV/bin/python"

MISSING_TXT="$(PYTHONPATH="$REPO" "$PY" "$REPO/scripts/gpu_check.py" --missing)" \
  || die "$PY cannot run scripts/gpu_check.py --missing (see above)"
MISSING=()
[[ -z "$MISSING_TXT" ]] || mapfile -t MISSING <<< "$MISSING_TXT"
if [[ ${#MISSING[@]} -gt 0 ]]; then
  [[ -n "$WHEELS" ]] || die "missing ${MISSING[*]}: give a wheel folder (--wheels DIR or DETPIPE_WHEELS)"
  [[ -d "$WHEELS" ]] || die "--wheels $WHEELS: not a directory"
  echo "gpu_check.sh: installing ${MISSING[*]} from $WHEELS (offline)" >&2
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "${MISSING[@]}" \
    || die "offline install from $WHEELS failed (fetch the wheels with --download on a networked machine)"
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export YOLO_OFFLINE=1
exec "$PY" "$REPO/scripts/gpu_check.py" --out "$OUT" "${EXTRA[@]}"
