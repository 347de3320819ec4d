#!/usr/bin/env bash
# The main job on the embedded default: set up, then bring stage-1 of the example race up on the
# lab target (simulated trucks on this machine, local state, offline cloud plan) and show its status.
# Leaves the lab running for you to explore; `.venv/bin/truckctl lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/truckctl up stage-1
.venv/bin/truckctl status stage-1
