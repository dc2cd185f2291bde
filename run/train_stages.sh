#!/usr/bin/env bash
# Shared by run/train_citys.sh and run/train_camvid.sh (set DATASET=cityscapes|camvid); see those.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${DATASET:?DATASET must be cityscapes or camvid}

usage() {
  cat <<USAGE
Usage: bash run/train_${DATASET/cityscapes/citys}.sh [--gpus N] [--data-root DIR] [--out DIR] [--stage S] [key=value ...]
  --gpus N        processes (GPUs); default \$NUM_GPUS or the number of visible GPUs (1 on a CPU machine)
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
USAGE
}

STAGE=${STAGE:-all}
DATA_ROOT=${DATA_ROOT:-data/$DATASET}
OUT_DIR=${OUT_DIR:-runs/$DATASET}
NUM_GPUS=${NUM_GPUS:-}
overrides=()
flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) NUM_GPUS=$2; shift 2 ;;
    --data-root) DATA_ROOT=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --stage) STAGE=$2; shift 2 ;;
    --resume-with-changes|--debug) flags+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

source run/env.sh
if [ -z "$NUM_GPUS" ]; then
  NUM_GPUS=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
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
  echo "[train] $DATASET stage $stage on $NUM_GPUS process(es) -> $OUT_DIR/$stage"
  if [ "$NUM_GPUS" -gt 1 ]; then
    torchrun --standalone --nproc_per_node "$NUM_GPUS" "${cmd[@]}"
  else
    python "${cmd[@]}"
  fi
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
