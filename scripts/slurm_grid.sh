#!/usr/bin/env bash
# One cell of a comparison per task of a Slurm array job: task N runs line N of the commands file
# `kedro run --pipelines=compare_commands_<dataset>` wrote (docs/mlflow.md#several-machines):
#
#   .venv/bin/kedro run --pipelines=compare_commands_rhd
#   sbatch --array=1-$(wc -l < data/08_reporting/rhd/compare/commands.txt) scripts/slurm_grid.sh
#
# Submit from the project folder (the tasks start there) with MLFLOW_TRACKING_URI naming the
# tracking server, and its credentials when it asks for them: sbatch hands the environment on. A task
# cancelled or killed leaves its run KILLED; print the commands again and submit again: finished cells
# are left out, an interrupted one continues its run from its last checkpoint on the node that
# trained it (its data/06_models folder). Options on sbatch's command line win over these.
#SBATCH --job-name=mle-hand-grid
#SBATCH --output=slurm-%A_%a.out
#SBATCH --cpus-per-task=2
set -euo pipefail

commands=${1:-data/08_reporting/rhd/compare/commands.txt}
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=1-N, one task per line of $commands}"
[[ -f $commands ]] || { echo "slurm_grid.sh: no commands file $commands in $PWD" >&2; exit 2; }
line=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$commands")
[[ -n $line ]] || { echo "slurm_grid.sh: $commands has no line $SLURM_ARRAY_TASK_ID" >&2; exit 2; }
if [[ -x .venv/bin/kedro ]]; then
  export PATH="$PWD/.venv/bin:$PATH"
fi
echo "task $SLURM_ARRAY_TASK_ID of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname): $line"
eval "$line"
