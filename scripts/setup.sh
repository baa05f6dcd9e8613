#!/usr/bin/env bash
# Create .venv and install the project with its test extras, at the versions of constraints.txt (the
# set CI and the documented figures used; scripts/lock.sh rewrites it). pip (not uv/poetry): on the
# build machines pip takes torch 2.14.1 / torchvision 0.29.1 from the local disk in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "installed into $(pwd)/.venv"
