#!/usr/bin/env bash
# The main job on the embedded default: set up, then bring stage-1 of the example race up on the
# lab target (simulated trucks on this machine, local state, offline cloud plan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
truckctl=.venv/bin/truckctl
"$truckctl" validate --all
"$truckctl" inventory stage-1
