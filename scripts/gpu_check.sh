#!/usr/bin/env bash
# One GPU session's checks for the Triton backend: stage limits add up to about 12 minutes on an H100
# (the run before the C++ and split stages were added took under 6); short of device time, pick stages with ONLY.
#   1. the Triton / CUDA tests, compiled on the GPU (tests/test_triton*.py and the nn cuda tests), then the fused
#      backend's C++ loops (ATen ops on CUDA tensors) against `loop`, with the extension built here;
#   2. scripts/bench_cells.py on CUDA: persistent `triton` (and with TF32 products) and per-step `triton_step`
#      beside cuDNN over the hidden <= 256 grid (target: triton <= 1.5x cuDNN); variable lengths with `fused`;
#      hidden 512 and the Python `loop` on two short rows; other persistent-kernel configs.
#   3. the column-split kernels (CONFIG split_units, off by default): their tests, with the first compiled run of
#      the in-kernel barrier between programs, and their timings beside the default persistent kernels.
#   4. end to end: one epoch of `+experiment=bilstm trainer=gpu`, then of `+experiment=torch_lstm trainer=gpu`
#      (cuDNN), back to back, each run's metrics.json (epoch seconds, test accuracy) in $OUT/e2e_*;
#   5. a sweep on the one GPU: 4 one-epoch jobs at once with the joblib launcher, then scripts/summarize.py.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh   (logs and JSON land in $OUT; default /tmp/rnnlab-gpu-check)
#        ONLY=split bash scripts/gpu_check.sh      (only the stages tagged split; tags: tests, cpp, bench, split, e2e,
#                                                  sweep; all of them take more than one 10-minute command)
# Stages 4-5 read the labeled IMDB archive from RNNLAB_IMDB_ARCHIVE (default: ../shared/data/aclImdb-labeled.tar.gz).
# Every stage runs under a time limit and a failure never stops the later stages; the exit status says if any failed.
set -u
export PYTHONUNBUFFERED=1
export RNNLAB_FUSED_EXT=0  # `fused` runs its Python loops, except in the one stage that builds the C++ extension
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
OUT=${OUT:-/tmp/rnnlab-gpu-check}
mkdir -p "$OUT"
fail=0
ONLY=${ONLY:-tests,cpp,bench,split,e2e,sweep}
stage() {  # stage TAG SECONDS LOG CMD...: run CMD with a time limit if TAG is in $ONLY, output tee'd to $OUT/LOG
    local tag=$1 limit=$2 log=$3
    shift 3
    case ",$ONLY," in *",$tag,"*) ;; *) return 0 ;; esac
    echo "=== $(date +%T) $* (limit ${limit}s)" | tee -a "$OUT/$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== FAILED rc=$rc: $*" | tee -a "$OUT/$log"; fail=1; }
}

nvidia-smi -L
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'triton', triton.__version__, torch.cuda.get_device_name())"

# 1. tests (-x: stop at the first failure; the cuda-marked ones are skipped without a GPU, so they must run here)
stage tests 130 pytest.log python3 -m pytest -q -x -p no:cacheprovider -m "cuda or triton" -k "not split" \
    tests/test_triton.py tests/test_triton_persistent.py tests/test_nn_parity.py tests/test_nn_module.py \
    tests/test_nn_errors.py
# the C++ loops on CUDA: test_fused.py's `loops` fixture builds the extension (RNNLAB_FUSED_EXT=wait, ~1 min)
stage cpp 150 pytest.log python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_fused.py

# 2. benchmarks (no `rec` column: fused's recording overhead is a CPU target). `triton` is the default (float32
# accuracy: tf32x3 products); triton#1 the same kernels with plain TF32 products, as cuDNN does by default.
B="python3 scripts/bench_cells.py --device cuda --no-rec --repeats 3"
stage bench 110 bench_cuda.log $B --backends triton,triton_step --triton-configs "fp32_precision=tf32" \
    --cells lstm,gru,cifg --hidden 32,128,256 --batch 32,128 --steps 100,600 --dirs uni,bi --lens pad \
    --json "$OUT/bench_cuda.json"
stage bench 40 bench_cuda.log $B --backends triton,triton_step,fused --cells lstm,gru --hidden 128,256 \
    --batch 32,128 --steps 100,600 --dirs bi --lens var --json "$OUT/bench_cuda_var.json"
stage bench 25 bench_cuda.log $B --backends triton,triton_step,fused,loop --cells lstm --hidden 128,512 \
    --batch 32 --steps 100 --dirs uni --lens pad --json "$OUT/bench_cuda_loop_512.json"
# other persistent-kernel configs beside the default (num_stages=2 is a timing only: not checked for correctness)
stage bench 40 bench_cuda.log $B --backends triton --triton-configs "fp32_precision=ieee;block_n=64;block_k=128;num_stages=2" \
    --cells lstm,gru --hidden 128,256 --batch 32,128 --steps 600 --dirs uni --lens pad \
    --json "$OUT/bench_cuda_configs.json"

# 3. the column-split kernels: tests first (a broken barrier hangs, hence a stage and a time limit of their own),
# then triton (default kernels) beside triton#1-3 (split: tf32x3, TF32 and IEEE products; tf32x3 spills at hidden 256,
# per python -m rnnlab.nn.backends.triton.aot) on the bidirectional rows
stage split 90 split.log python3 -m pytest -q -x -p no:cacheprovider -k split tests/test_triton_persistent.py
stage split 120 split.log $B --backends triton \
    --triton-configs "split_units=16;split_units=16,fp32_precision=tf32;split_units=16,fp32_precision=ieee" \
    --cells lstm,gru,cifg --hidden 32,128,256 --batch 32,128 --steps 100,600 --dirs bi --lens pad \
    --json "$OUT/bench_cuda_split.json"
# 4. the main job end to end, rnnlab's cells then cuDNN's; the first run also vectorizes the data (cached for the rest)
export RNNLAB_IMDB_ARCHIVE=${RNNLAB_IMDB_ARCHIVE:-$PWD/../shared/data/aclImdb-labeled.tar.gz}
export RNNLAB_DATA=${RNNLAB_DATA:-$OUT/data}
GPU1="trainer=gpu trainer.max_epochs=1 trainer.enable_progress_bar=false"  # one epoch on the GPU
stage e2e 180 e2e.log env RNNLAB_FUSED_EXT=auto python3 -m rnnlab.train $GPU1 +experiment=bilstm hydra.run.dir="$OUT/e2e_bilstm"
stage e2e 150 e2e.log python3 -m rnnlab.train $GPU1 +experiment=torch_lstm hydra.run.dir="$OUT/e2e_torch_lstm"

# 5. a sweep: depth x direction, 4 jobs at once on the one GPU (joblib), one epoch each, summarized
stage sweep 300 sweep.log python3 -m rnnlab.train -m $GPU1 +experiment=bilstm model.num_layers=1,2 model.bidirectional=false,true \
    hydra/launcher=joblib hydra.launcher.n_jobs=4 hydra.sweep.dir="$OUT/sweep"
stage sweep 30 sweep.log python3 scripts/summarize.py "$OUT/sweep"
echo "=== $(date +%T) done, failures: $fail (logs in $OUT)"
exit $fail
