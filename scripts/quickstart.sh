#!/usr/bin/env bash
# Set up, then run the main job on the built-in synthetic data: render procedural hands in the real
# FreiHAND and RHD layouts, preprocess both, train and evaluate the paper's model (CPU demo size).
set -euo pipefail
cd "$(dirname "$0")/.."
export KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true
# OpenMP's wait policy is left to the package: brief spinning on an idle machine, PASSIVE on a busy
# one (src/mle_hand_pipeline/__init__.py); export OMP_WAIT_POLICY to choose yourself.
[ -x .venv/bin/kedro ] || bash scripts/setup.sh
# The default pipeline is the whole job: synthetic_data -> freihand/rhd preprocessing -> train_rhd.
echo "=== kedro run"
.venv/bin/kedro run
echo
echo "Done. Test metrics: data/08_reporting/rhd/test_metrics.json"
echo "Crops with labels: data/08_reporting/rhd_crops_grid.png; curves: data/08_reporting/rhd/training_curves.png"
echo "Runs in MLflow:    .venv/bin/kedro mlflow ui   (then open http://127.0.0.1:5000)"
