#!/usr/bin/env bash
# Shared by run/train_citys.sh and run/train_camvid.sh (set DATASET=cityscapes|camvid); see those.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${DATASET:?DATASET must be cityscapes or camvid}

usage() {
  cat <<USAGE
Usage: bash run/train_${DATASET/cityscapes/citys}.sh [--gpus N] [--nnodes N --node-rank R --rdzv-endpoint HOST:PORT]
                [--data-root DIR] [--out DIR] [--stage S] [key=value ...]
  --gpus N        processes (GPUs) per node; default \$NUM_GPUS or the number of visible GPUs (1 on a CPU machine)
  --nnodes N      nodes, each running this command; default \$SLURM_NNODES or 1
  --node-rank R   this node's rank, 0 to N-1; default \$SLURM_NODEID or 0. Node 0 holds global rank 0 (log, checkpoints)
  --rdzv-endpoint HOST:PORT  node 0's address and a free port there (more than one node); default under SLURM:
                  the first host of \$SLURM_JOB_NODELIST, port \$MASTER_PORT or 29500
  --data-root DIR data root; default \$DATA_ROOT or data/$DATASET
  --out DIR       parent of the stage run folders; default \$OUT_DIR or runs/$DATASET
  --stage S       csrnet | flownet | evss | all (default \$STAGE or all: csrnet, flownet, then evss)
  --resume-with-changes  resume although settings differ from the checkpoint's (recorded in history.jsonl)
  --debug         keep the traceback of a user error
  key=value       config override for every stage; STAGE:key=value for one stage only
                  (e.g. evss:train.epochs=50 flownet:flow.mode=both; see configs/${DATASET}_*.yaml)
Stage 2 uses OUT/csrnet/final.pth and OUT/flownet/final.pth unless model.csrnet= / model.flownet= are given.
A finished stage trains nothing when rerun with its settings; an interrupted one resumes from its last.pth;
changed settings stop with the differing keys (--resume-with-changes or a new --out to go on).
With more than one node, --out must be on a file system every node sees.
USAGE
}

STAGE=${STAGE:-all}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
OUT_DIR=${OUT_DIR:-runs/$DATASET}
NUM_GPUS=${NUM_GPUS:-}
NNODES=${SLURM_NNODES:-1}
NODE_RANK=${SLURM_NODEID:-0}
RDZV_ENDPOINT=
overrides=()
flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) NUM_GPUS=$2; shift 2 ;;
    --nnodes) NNODES=$2; shift 2 ;;
    --node-rank) NODE_RANK=$2; shift 2 ;;
    --rdzv-endpoint) RDZV_ENDPOINT=$2; shift 2 ;;
    --data-root) DATA_ROOT=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --stage) STAGE=$2; shift 2 ;;
    --resume-with-changes|--debug) flags+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

if ! [[ $NNODES =~ ^[1-9][0-9]*$ && $NODE_RANK =~ ^[0-9]+$ && $NODE_RANK -lt $NNODES ]]; then
  echo "error: --nnodes $NNODES --node-rank $NODE_RANK: the node rank must be 0 to nnodes - 1" >&2; exit 2
fi
if [ "$NNODES" -gt 1 ] && [ -z "$RDZV_ENDPOINT" ]; then
  if [ -z "${SLURM_JOB_NODELIST:-}" ]; then
    echo "error: --nnodes $NNODES needs --rdzv-endpoint HOST:PORT (node 0's address and a free port)" >&2; exit 2
  fi
  RDZV_ENDPOINT="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):${MASTER_PORT:-29500}"
fi

source run/env.sh
if [ -z "$NUM_GPUS" ]; then
  NUM_GPUS=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
fi
# One process: python. Several on one node: torchrun --standalone. Several nodes: one torchrun per node,
# static rendezvous at node 0 (node R runs the global ranks R*gpus to R*gpus + gpus - 1).
launch=(python)
where="$NUM_GPUS process(es)"
if [ "$NNODES" -gt 1 ]; then
  launch=(torchrun --nnodes "$NNODES" --node-rank "$NODE_RANK" --rdzv-backend static
          --rdzv-endpoint "$RDZV_ENDPOINT" --nproc_per_node "$NUM_GPUS")
  where="$NUM_GPUS process(es) on each of $NNODES nodes (this is node $NODE_RANK, rendezvous $RDZV_ENDPOINT)"
elif [ "$NUM_GPUS" -gt 1 ]; then
  launch=(torchrun --standalone --nproc_per_node "$NUM_GPUS")
fi

train_stage() {
  local stage=$1; shift
  local mine=() o
  for o in ${overrides[@]+"${overrides[@]}"}; do
    case "$o" in
      "$stage":*) mine+=("${o#*:}") ;;
      csrnet:*|flownet:*|evss:*) ;;
      *) mine+=("$o") ;;
    esac
  done
  local cmd=(-m tools.train ${flags[@]+"${flags[@]}"} --stage "$stage" --config "configs/${DATASET}_${stage}.yaml"
             "data.root=$DATA_ROOT" "out_dir=$OUT_DIR/$stage" "$@" ${mine[@]+"${mine[@]}"})
  echo "[train] $DATASET stage $stage on $where -> $OUT_DIR/$stage"
  "${launch[@]}" "${cmd[@]}"
}

has_override() { local k; for k in ${overrides[@]+"${overrides[@]}"}; do [[ $k == "$1="* || $k == "evss:$1="* ]] && return 0; done; return 1; }

evss_args=()
has_override model.csrnet || evss_args+=("model.csrnet=$OUT_DIR/csrnet/final.pth")
has_override model.flownet || evss_args+=("model.flownet=$OUT_DIR/flownet/final.pth")

case "$STAGE" in
  csrnet|flownet) train_stage "$STAGE" ;;
  evss) train_stage evss "${evss_args[@]}" ;;
  all)
    # a finished stage with the same settings trains nothing; changed settings stop with the keys (engine/resume.py)
    for s in csrnet flownet; do train_stage "$s"; done
    train_stage evss "${evss_args[@]}" ;;
  *) echo "unknown stage: $STAGE" >&2; usage >&2; exit 2 ;;
esac
