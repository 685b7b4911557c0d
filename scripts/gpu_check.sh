#!/usr/bin/env bash
# The checks that need a GPU, each part one command that ends inside its budget on one H100/H200-class card:
#   shapes     distillation steps at the paper presets' real shapes with random weights (shapes set speed and
#              memory): tokens/s, peak memory and MFU. Qwen3-4B first: the chunked loss beside the full-logits
#              reference at the presets' micro-batch of 2, then micro-batch 8 eager and compiled, then 16 with
#              gradient checkpointing; then Pythia-2.8B and Llama-3.2-3B at 2. A measurement that could not
#              finish in what is left of the budget is not started (its line says so).
#   rehearsal  the offline rehearsal of the Qwen3-4B preset end to end, its models on CUDA (tiny stand-ins: it
#              checks the wiring; the whole rehearsal, `make rehearsal`, is longer than one command).
# Output: runs/gpu_check/<part>.log, with the benchmark's tables.
#   bash scripts/gpu_check.sh [shapes|rehearsal] [budget in seconds, default 480]
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:-shapes}
deadline=$((SECONDS + ${2:-480}))
out=runs/gpu_check
mkdir -p "$out"
exec > >(tee "$out/$part.log") 2>&1
python=.venv/bin/python
[ -x "$python" ] || { make setup TORCH=torch >/dev/null && python=.venv/bin/python; }
"$python" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(), torch.__version__)" || exit 1

if [ "$part" = rehearsal ]; then
  BOOMERANG_DEVICE=cuda timeout $((deadline - SECONDS)) make rehearsal REHEARSAL=$out/rehearsal \
    ONLY="end_to_end and qwen3-4b and not released"
  exit
fi
[ "$part" = shapes ] || { echo "unknown part $part: shapes or rehearsal"; exit 2; }

# The presets read their teachers' tokenizers and The Pile from the hub: the rehearsal's stand-ins of those,
# offline (the teachers measured are stand_in_teacher.py's, at the real shapes).
export HF_HOME=$PWD/$out/hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [ ! -f "$HF_HOME/built" ]; then  # an interrupted build is started again, never half used
  rm -rf "$HF_HOME"
  "$python" -c 'import os, pathlib, boomerang.standins as s; s.build(pathlib.Path(os.environ["HF_HOME"]))' \
    && touch "$HF_HOME/built" || exit 1
fi
one_gpu='"distill.num_processes": 1, "distill.grad_accum": 1, "data.skip_documents": 0, "data.shuffle_buffer": 0'

measure() {  # seconds it needs at most, preset, micro-batch, extra overrides, benchmark arguments
  local need=$1 preset=$2 batch=$3 extra=$4 left=$((deadline - SECONDS))
  shift 4
  echo "-- $preset, micro-batch $batch x 2048 ${extra:+($extra) }$*"
  if ((left < need)); then echo "(not started: $left s of the budget left, it may need $need)"; return; fi
  timeout "$left" "$python" scripts/benchmark.py --config "configs/$preset.yaml" --cases "$preset" --steps 4 \
    --stand-ins "$out/stand-ins" --override "{$one_gpu, \"distill.batch_size\": $batch${extra:+, $extra}}" "$@" \
    || echo "(a row failed: out of memory, or the budget ran out)"
}
measure 240 qwen3-4b 2 "" --only distill
measure 150 qwen3-4b 8 "" --only compile
measure 150 qwen3-4b 16 '"distill.gradient_checkpointing": true' --only compile
measure 150 pythia-2.8b 2 "" --only distill
measure 150 llama-3.2-3b 2 "" --only distill
