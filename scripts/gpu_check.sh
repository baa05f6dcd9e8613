#!/usr/bin/env bash
# The GPU check of issue 13, in one command, on the offline GPU machine (../shared/gpu/README.md:
# torch present, no kedro/mlflow; their wheels come in .whl/, made here by `bash ../shared/gpu/prepare.sh`
# and carried with the working tree). From the project root:
#
#   bash scripts/gpu_check.sh                       # everything (about 10 min on one H200)
#   GPU_CHECK_STEPS="data bench_model" bash scripts/gpu_check.sh   # some steps (see below), e.g. to
#   GPU_CHECK_STEPS="bench_train train" bash scripts/gpu_check.sh  # stay under a 10-minute call limit
#   GPU_CHECK_SIZE=tiny bash scripts/gpu_check.sh   # a few minutes on a CPU: tests this script
#
# Steps: data (synthetic RHD + preprocessing, kept in data/gpu_check/ for later calls), bench_model,
# bench_train (the step, the real trainer loop, GPU busy; then with train.compile=loss), train (a short
# `kedro run --pipelines=train_rhd --env=paper` with rhd.model.pretrained=false, then the logged MLflow
# model loaded on the GPU). Results (JSON, logs, history, metrics, summary.md) are tarred into
# $OUT/gpu_check.tar.gz ($OUT: the device tool's output folder; default data/gpu_check/out) and the
# summary is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
size=${GPU_CHECK_SIZE:-full}
steps=${GPU_CHECK_STEPS:-data bench_model bench_train train}
python=${PYTHON:-python3}
work=$repo/data/gpu_check            # git-ignored; survives between calls on a warm machine
project=$work/project                # a copy of the Kedro configuration: runs write data and mlflow.db here
results=$work/results
mkdir -p "$results" "$project"
export KEDRO_DISABLE_TELEMETRY=true MLFLOW_DISABLE_TELEMETRY=true PYTHONUNBUFFERED=1 DO_NOT_TRACK=1

# The project's own dependencies: wheels from .whl/ when kedro is missing (the GPU machine).
if ! "$python" -c "import kedro, mlflow, kedro_mlflow" 2>/dev/null; then
  [ -d .whl ] || { echo "kedro/mlflow missing and no .whl/: run 'bash ../shared/gpu/prepare.sh' first"; exit 1; }
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$repo/src:${PYTHONPATH:-}
cores=$(nproc)
workers=$(( cores > 1 ? cores - 1 : 1 ))

if [ "$size" = tiny ]; then
  synth="synthetic_data.rhd.n_training=24,synthetic_data.rhd.n_evaluation=8,synthetic_data.freihand.n_unique=4"
  bench_model_args="--quick --gpu-figures"
  bench_train_args="--quick --gpu-figures"
  train_params="rhd.model.backbone=resnet18,rhd.model.input_size=64,rhd.model.stages=2,rhd.model.head_channels=16,rhd.train.batch_size=8,rhd.train.eval_batch_size=16,rhd.train.epochs=2,rhd.train.num_workers=1"
  compile_args=""   # compiling takes minutes on a CPU: the tiny check skips the compiled run
else
  synth="synthetic_data.rhd.n_training=3000,synthetic_data.rhd.n_evaluation=300,synthetic_data.freihand.n_unique=20"
  bench_model_args="--configs paper"
  bench_train_args="--preset paper --trainer-epochs 2"
  train_params="rhd.train.epochs=5,rhd.train.num_workers=$(( workers < 12 ? workers : 12 ))"
  compile_args="--compile loss"
fi
rhd_root=$project/data/01_raw/synthetic/RHD_published_v2

kedro() { (cd "$project" && "$python" -m kedro "$@"); }
timed() {  # timed NAME COMMAND...: run, log to results/NAME.log, record the wall time
  local name=$1; shift
  echo "=== $name: $*"
  local start=$SECONDS status=0
  "$@" > "$results/$name.log" 2>&1 || status=$?
  echo "$name $(( SECONDS - start )) $status" >> "$results/times.txt"
  tail -n 5 "$results/$name.log"
  [ "$status" = 0 ] || { echo "!!! $name failed (exit $status), log: $results/$name.log"; return "$status"; }
}

{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$results/machine.txt"
cat "$results/machine.txt"

for step in $steps; do
  case $step in
    data)
      rm -rf "$project/conf" "$project/data" "$project/mlflow.db" "$project/mlruns"
      cp "$repo/pyproject.toml" "$project/" && cp -r "$repo/conf" "$project/conf"
      rm -rf "$project/conf/local" && mkdir -p "$project/conf/local" "$project/src"
      timed synthetic_data kedro run --pipelines=synthetic_data --params="synthetic_data.workers=$workers,$synth"
      timed rhd_preprocess kedro run --pipelines=rhd_preprocess --params="rhd.preprocess.workers=$workers"
      ;;
    bench_model)
      # shellcheck disable=SC2086
      timed bench_model "$python" benchmarks/bench_model.py $bench_model_args --out "$results"
      ;;
    bench_train)
      # shellcheck disable=SC2086
      timed bench_train_step "$python" benchmarks/bench_train_step.py $bench_train_args --root "$rhd_root" --out "$results"
      if [ -n "$compile_args" ]; then
        mkdir -p "$results/compile_loss"
        # shellcheck disable=SC2086
        timed bench_train_step_compile "$python" benchmarks/bench_train_step.py $bench_train_args $compile_args --root "$rhd_root" --out "$results/compile_loss"
      fi
      ;;
    train)
      timed train_rhd_paper kedro run --pipelines=train_rhd --env=paper --params="rhd.model.pretrained=false,$train_params"
      cp "$project"/data/07_model_output/rhd/train_history.csv "$project"/data/08_reporting/rhd/test_metrics.json "$results/" 2>/dev/null || true
      timed load_logged_model "$python" scripts/gpu_check_summary.py load-model --project "$project" --out "$results/load_logged_model.json"
      ;;
    *) echo "unknown step '$step' (steps: data bench_model bench_train train)"; exit 2 ;;
  esac
done

"$python" scripts/gpu_check_summary.py summary --results "$results" | tee "$results/summary.md"
out=${OUT:-$work/out}
mkdir -p "$out"
tar czf "$out/gpu_check.tar.gz" -C "$work" results
echo "results: $out/gpu_check.tar.gz"
