#!/usr/bin/env bash
# Train the shipped starter model from scratch, on openly licensed data only (docs/starter_model.md):
# generated microscopy plus the training part of the open stacks in the shared data folder. Never the Cell
# Tracking Challenge sets. Resumable: run it again with the same arguments after an interruption.
#   bash scripts/train_starter.sh SHARED_DATA_DIR OUT.pt STEPS [extra napari-sam2 train options]
set -euo pipefail
data=$1 out=$2 steps=$3
shift 3
exec ${PYTHON:-python3} -m napari_sam2.cli train synthetic "open-data:$data" \
  --from scratch --model starter --image-size 512 --out "$out" --steps "$steps" \
  --batch-size 8 --crop-size 320 --synthetic 96 --synthetic-size 384 --lr 4e-4 \
  --val-every 100 --save-every 100 --workers 12 --seed 0 --device cuda "$@"
