#!/usr/bin/env bash
# The checks that need a GPU, as one script of under 10 minutes on one H100/H200-class card:
#   1. the offline rehearsal of the paper presets, its models on CUDA (tiny stand-ins: it checks wiring);
#   2. distillation steps at each paper preset's real shapes, random weights (shapes set speed and memory):
#      tokens/s, peak memory and MFU, the chunked loss beside the full-logits reference, with and without
#      gradient checkpointing, at the micro-batch the presets use and larger ones.
# Output: runs/gpu_check/log.txt and the benchmark tables it prints.
#   bash scripts/gpu_check.sh [micro-batches, default "2 4 8 16"]
set -uo pipefail
cd "$(dirname "$0")/.."
out=runs/gpu_check
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
python=.venv/bin/python
[ -x "$python" ] || { make setup TORCH=torch >/dev/null && python=.venv/bin/python; }
"$python" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(), torch.__version__)" || exit 1

echo "== 1. rehearsal on CUDA"
time BOOMERANG_DEVICE=cuda make rehearsal REHEARSAL=$out/rehearsal

echo "== 2. paper shapes (offline: the rehearsal's stand-in tokenizers and streamed text)"
export HF_HOME=$PWD/$out/rehearsal/hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
one_gpu='"distill.num_processes": 1, "distill.grad_accum": 1, "data.skip_documents": 0, "data.shuffle_buffer": 0'
for preset in qwen3-4b pythia-2.8b llama-3.2-3b; do
  for batch in ${1:-2 4 8 16}; do
    for checkpointing in false true; do
      echo "-- $preset, micro-batch $batch x 2048, gradient checkpointing $checkpointing"
      timeout 300 "$python" scripts/benchmark.py --config "configs/$preset.yaml" --cases "$preset" --steps 4 --only distill \
        --override "{$one_gpu, \"distill.batch_size\": $batch, \"distill.gradient_checkpointing\": $checkpointing}" \
        || echo "(out of memory or over 5 minutes)"
    done
  done
done
