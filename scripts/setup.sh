#!/usr/bin/env bash
# Install everything truckctl needs on a fresh Debian 12 machine (idempotent, quick when done).
# Host packages for the lab of simulated trucks, and a venv in .venv with truckctl and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(systemd-container debootstrap apt-cacher-ng openssh-client iproute2 arping
              mosquitto-clients ca-certificates git)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: root is needed to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing host packages: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d may forbid service starts here; the lab starts apt-cacher-ng itself.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.truckctl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing truckctl and its tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/truckctl --version))"
