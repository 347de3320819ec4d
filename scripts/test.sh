#!/usr/bin/env bash
# Set up, then run every check: lint (ruff, mypy, yamllint, ansible-lint, playbook syntax) and the
# tests (unit; lab tests too when run as root). Extra arguments go to pytest.
# The lab of simulated trucks is always torn down at the end, even when tests fail.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
teardown() {
  if [ "$(id -u)" -eq 0 ]; then .venv/bin/truckctl lab down >/dev/null 2>&1 || true; fi
}
trap teardown EXIT
.venv/bin/pytest "$@"
