#!/usr/bin/env bash
# Regenerates docs/results/ (the thesis chapter on the results this project computes itself) from the
# study files: the same files byte for byte apart from timings (seconds, peak memory, and what rests on
# them: the cost table, the Pareto front, the time plots; NeRF trains for a fixed wall-clock budget, so
# its numbers move with the machine's speed) and the hardware / library versions recorded with the runs.
#
#     docs/results/regenerate.sh          # from the repository root or anywhere; CPU only, offline
#
# Runs (resumable; cells already in the store are kept): the four generative families on the 12
# held-out captions x 3 seeds (a few CPU minutes), NeRF and Gaussian splats on the lego scene and the bundled turntable
# views (30 s and 90 s of training each). The GPU studies (gpu-text, gpu-text-opt, gpu-image) are only
# described: the chapter lists what they need and their expected cost.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1
DB="${TRILEMMA_RESULTS_DB:-outputs/results.db}"
python -m eval study run assets/studies/families-trilemma.yaml --db "$DB" --quiet
python -m eval study run assets/studies/video.yaml --db "$DB" --quiet
python -m eval study report --db "$DB" --chapter docs/results \
  assets/studies/families-trilemma.yaml assets/studies/video.yaml \
  assets/studies/gpu-text.yaml assets/studies/gpu-text-opt.yaml assets/studies/gpu-image.yaml
