#!/usr/bin/env bash
# Re-resolve pyproject.toml's dependencies in a scratch virtual environment and write constraints.txt,
# the exact versions scripts/setup.sh installs. Run it after changing the dependencies, then run the
# test suite and the quickstart with the new set before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$scratch/venv/bin/python" -m pip install --quiet -e ".[dev]"
{
  echo "# The exact versions CI and the README's figures were made with (written by scripts/lock.sh)."
  echo "# scripts/setup.sh installs with 'pip install -c constraints.txt': a fresh machine gets the same"
  echo "# libraries as CI, since decoding, resampling and CPU kernels can change results."
  "$scratch/venv/bin/pip" freeze --exclude-editable
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
