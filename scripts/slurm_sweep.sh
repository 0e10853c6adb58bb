#!/usr/bin/env bash
# Cluster sweep with a Slurm job array: array task i runs shard i+1/n of the grid into one shared
# results store; a dependent job runs `llmtrunc report` over that store when the array is done.
#
#   bash scripts/slurm_sweep.sh                  # on the login node: submits the array + the report job
#   SHARDS=16 CONFIG=sweeps/paper.yaml RESULTS=/shared/results bash scripts/slurm_sweep.sh
#   DRY_RUN=1 bash scripts/slurm_sweep.sh        # print each shard's cells, submit nothing
#   SHARDS=8 sbatch --array=5 scripts/slurm_sweep.sh   # rerun one failed shard (6/8) by hand
#
# No merge step is needed: a cell's run id is a hash of every setting that decides its numbers,
# each cell is written atomically into its own directory of the store (records.jsonl last), and
# the shards partition the grid, so array tasks never write the same file; the store is "merged"
# by construction. A preempted or failed task leaves no records.jsonl for its unfinished cells:
# resubmitting recomputes only those, everything already in the store is reused.
#
# Edit the #SBATCH lines for your cluster (partition, account, GPU type, time limit). One 80 GB GPU
# per task holds a 7-8B model in bf16; for vLLM with tensor parallelism ask for more GPUs per task
# (--gres=gpu:N) and put "--backend vllm --tensor-parallel-size N" in SWEEP_ARGS.
#
#SBATCH --job-name=llmtrunc-sweep
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%A_%a.out

set -euo pipefail

CONFIG=${CONFIG:-sweeps/llm.yaml}          # the sweep grid (models x drops x tasks); see `llmtrunc sweep --help`
RESULTS=${RESULTS:-/shared/results}        # shared results store, visible from every node
REPORT_OUT=${REPORT_OUT:-$RESULTS/report}  # where the report job writes tables and figures
VENV=${VENV:-$HOME/llmtrunc/.venv}         # environment with `pip install 'llmtrunc[vllm,quant]'` as needed
SWEEP_ARGS=${SWEEP_ARGS:-}                 # extra sweep flags, e.g. "--backend vllm" or "--load-in-8bit"
REPORT_CMD=${REPORT_CMD:-"llmtrunc report --results-dir $RESULTS --out $REPORT_OUT"}
# Compute nodes are often offline: fill a shared Hub cache on a login node first
# (`huggingface-cli download meta-llama/Llama-3.1-8B`) and keep the Hub off during the run.
export HF_HOME=${HF_HOME:-/shared/hf-cache}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export LLMTRUNC_DATA_DIR=${LLMTRUNC_DATA_DIR:-/shared/data}

if [ -f "$VENV/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
fi

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    # Login node: submit (or, with DRY_RUN=1, show) the whole sweep.
    SHARDS=${SHARDS:-8}
    if [ -n "${DRY_RUN:-}" ]; then
        for i in $(seq 1 "$SHARDS"); do
            echo "== shard $i/$SHARDS"
            # shellcheck disable=SC2086
            llmtrunc sweep --config "$CONFIG" --shard "$i/$SHARDS" --results-dir "$RESULTS" --dry-run $SWEEP_ARGS
        done
        exit 0
    fi
    mkdir -p logs "$RESULTS"
    export SHARDS CONFIG RESULTS REPORT_OUT VENV SWEEP_ARGS  # the array tasks inherit them (--export=ALL)
    array_id=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" "$0")
    # afterany: report whatever finished even if a shard failed (afterok: only complete sweeps).
    report_id=$(sbatch --parsable --dependency="afterany:${array_id%%;*}" --job-name=llmtrunc-report \
        --cpus-per-task=2 --mem=16G --time=01:00:00 --output="logs/llmtrunc-report-%j.out" \
        --wrap="set -e; if [ -f '$VENV/bin/activate' ]; then . '$VENV/bin/activate'; fi; $REPORT_CMD")
    echo "submitted sweep array $array_id ($SHARDS shards) and report job $report_id (after the array)"
    exit 0
fi

# Array task: shards are 1-based, array indices 0-based. SHARDS is set by the submit mode above; a
# plain `sbatch scripts/slurm_sweep.sh` falls back to the array size.
SHARDS=${SHARDS:-$SLURM_ARRAY_TASK_COUNT}
SHARD="$((SLURM_ARRAY_TASK_ID + 1))/$SHARDS"
echo "llmtrunc sweep shard $SHARD on $(hostname), GPUs ${CUDA_VISIBLE_DEVICES:-none}"
# shellcheck disable=SC2086
srun llmtrunc sweep --config "$CONFIG" --shard "$SHARD" --results-dir "$RESULTS" $SWEEP_ARGS
