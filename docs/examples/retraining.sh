#!/usr/bin/env bash
# The worked example of docs/retraining.md, runnable as written: one machine, the embedded SQLite store
# and broker, generated shapes, the sample configs/schedule.yaml with a 10-second debounce.
#
#   docs/examples/retraining.sh [WORK_DIR]      # from the repository root, with the venv on PATH or in .venv
#
# It takes a few minutes on 2 CPU cores (three trainings of the smoke U-Net, two gate evaluations).
# tests/docs/test_retraining_example.py runs it and checks each step's outcome.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${1:-}" ]; then mkdir -p "$1"; WORK=$(cd "$1" && pwd); else WORK=$(mktemp -d); fi
PATH="$REPO/.venv/bin:$PATH"
PORT=${SEGPIPE_EXAMPLE_PORT:-8765}
cd "$WORK"

step() { printf '\n$ %s\n' "$*"; "$@"; }

# -- setup: a fresh home, the sample schedule with debounce_seconds: 10 ---------------------------------
mkdir -p configs
cp -r "$REPO/configs/smoke" configs/
sed 's/^debounce_seconds: .*/debounce_seconds: 10/' "$REPO/configs/schedule.yaml" > configs/schedule.yaml
export SEGPIPE_HOME=$WORK/.segpipe          # store, broker and artifacts of this example
export SEGPIPE_SCHEDULE=$WORK/configs/schedule.yaml
export SEGPIPE_DATA_ROOTS=$WORK/data        # jobs may read from here
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export COLUMNS=${COLUMNS:-140}              # wide enough for the tables of `segpipe models`

step segpipe shapes data/smoke              # the generated dataset the sample schedule watches
segpipe worker > worker.log 2>&1 &          # runs the jobs (and the ticks beat would send)
WORKER=$!
SEGPIPE_AUTH=off segpipe api --port "$PORT" > api.log 2>&1 &   # for POST /datasets/…/changed (loopback only without tokens)
API=$!
trap 'kill $WORKER $API 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done

signal() {  # what a webhook does: POST /datasets/smoke-binary/changed, then wait out the debounce
  printf '\n$ curl -s -X POST http://127.0.0.1:%s/datasets/smoke-binary/changed\n' "$PORT"
  curl -sf -X POST "http://127.0.0.1:$PORT/datasets/smoke-binary/changed"; echo
  sleep 11
}

tick_and_follow() {  # one tick by hand (instead of `segpipe beat`); follow the retrain job it queues
  printf '\n$ segpipe schedule --tick\n'
  out=$(segpipe schedule --tick); echo "$out"
  job=$(echo "$out" | sed -n 's/.*queued retrain job \([0-9a-f]*\).*/\1/p' | head -n1)
  if [ -n "$job" ]; then segpipe job "$job" --follow > /dev/null; fi   # until the job ends
}

# -- 1. the first tick: no version yet, so it trains v1 and the gate promotes it -------------------------
tick_and_follow
step segpipe models smoke_binary

# -- 2. a signal, but nothing changed: the tick finds data a version was trained on, queues nothing ------
signal
tick_and_follow

# -- 3. new annotations: half of the training images are redrawn (other shapes, seed 1) -----------------
step segpipe shapes redrawn --seed 1
python3 - <<'EOF'
import shutil
from pathlib import Path
train, redrawn = Path("data/smoke/binary/train"), Path("redrawn/binary/train")
images = sorted((train / "images").iterdir())
for image in images[: len(images) // 2]:          # the first half, by name: image and mask replaced
    shutil.copyfile(redrawn / "images" / image.name, image)
    mask = image.with_suffix(".png").name
    shutil.copyfile(redrawn / "masks" / mask, train / "masks" / mask)
print(f"redrew {len(images) // 2} of {len(images)} training images")
EOF
signal
tick_and_follow                              # v2, fine-tuned from v1; the gate compares v2 with v1

# -- 4. an annotator wipes the masks of half the training images by mistake ----------------------------
python3 - <<'EOF'
from pathlib import Path
from PIL import Image
masks = sorted(Path("data/smoke/binary/train/masks").iterdir())
for mask in masks[: len(masks) // 2]:             # the first half, by name: every pixel background
    with Image.open(mask) as m:
        Image.new(m.mode, m.size, 0).save(mask)
print(f"wiped {len(masks) // 2} of {len(masks)} training masks")
EOF
signal
tick_and_follow                              # v3 on the damaged data: the gate keeps it out
step segpipe models smoke_binary

# -- 5. predict jobs follow production; a rollback puts v1 back -----------------------------------------
mkdir -p specs
printf 'model: smoke_binary@production\nimages: %s/data/smoke/binary/val/images\n' "$WORK" > specs/predict.yaml
step cat specs/predict.yaml
printf '\n$ segpipe submit specs/predict.yaml --kind predict --follow\n'
segpipe submit specs/predict.yaml --kind predict --follow > /dev/null
step segpipe jobs --kind predict --json
step segpipe rollback smoke_binary
step segpipe models
