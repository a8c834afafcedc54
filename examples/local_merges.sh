#!/usr/bin/env bash
# The paper's merges, locally on SmolLM2-135M-Instruct (CPU, offline, bundled data):
#   1. platypus:            an Open-Platypus-rebuild LoRA (>= 1,000 curated rows, one epoch), folded into the base
#   2. gsm8k:               a GSM8K LoRA folded into the base = our local "second fine-tune"
#                           (the paper's StableBeluga / qCammel / OpenOrcaxOpenChat)
#   3. platypus_into_gsm8k: the Open-Platypus LoRA folded into that fine-tune (merge=into_model, the paper's trick)
#   4. ties / 5. dare:      TIES and DARE-TIES combinations of the two LoRAs, folded into the base
# Every run evaluates base vs adapter vs merged with the quick suite; evaluations of the same model
# files and settings are reused across runs (<cache_dir>/eval_results), so the base is evaluated once.
#
#   bash examples/local_merges.sh            # OUT=outputs/local_merges PY=.venv/bin/python by default
#   FROM=2 bash examples/local_merges.sh     # start at step 2 (earlier steps' run folders must exist)
#   EXTRA="train.threads=1" bash ...         # more overrides for every step
#   PLATYPUS_ROWS=400 GSM8K_ROWS=100 bash ... # smaller training sets (defaults 1200 and 200)
set -euo pipefail
OUT=${OUT:-outputs/local_merges}
PY=${PY:-.venv/bin/python}
FROM=${FROM:-1}
PLATYPUS_ROWS=${PLATYPUS_ROWS:-1200}
GSM8K_ROWS=${GSM8K_ROWS:-200}
read -r -a EXTRA <<< "${EXTRA:-}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
EVAL="evaluate.include=[base,adapter,merged]"
PLATYPUS=$OUT/platypus/train/adapter
GSM8K=$OUT/gsm8k/train/adapter

step() { if (( $1 >= FROM )); then shift; echo "+ run.py $*"; $PY run.py "$@" "${EXTRA[@]}"; fi; }

step 1 hydra.run.dir=$OUT/platypus data=open_platypus_rebuild data.sample=$PLATYPUS_ROWS train.max_steps=-1 train.save_steps=20 "$EVAL"
step 2 hydra.run.dir=$OUT/gsm8k data=gsm8k data.sample=$GSM8K_ROWS train.max_steps=-1 train.save_steps=20 "$EVAL"
step 3 hydra.run.dir=$OUT/platypus_into_gsm8k stages=[merge,evaluate] merge=into_model \
    merge.target=$OUT/gsm8k/merge/model "merge.adapters=[$PLATYPUS]" "$EVAL"
step 4 hydra.run.dir=$OUT/ties stages=[merge,evaluate] merge=weighted_ties "merge.adapters=[$PLATYPUS,$GSM8K]" "$EVAL"
step 5 hydra.run.dir=$OUT/dare stages=[merge,evaluate] merge=weighted_dare "merge.adapters=[$PLATYPUS,$GSM8K]" "$EVAL"
