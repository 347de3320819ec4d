#!/usr/bin/env bash
# Install everything truckctl needs on a fresh Debian 12 machine (idempotent, quick when done).
# Host packages for the lab of simulated trucks, and a venv in .venv with truckctl and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(systemd-container debootstrap apt-cacher-ng openssh-client iproute2 arping
              mosquitto-clients ca-certificates git
              chromium)  # the portal's browser tests (Playwright drives Debian's chromium)
# npm fetches the portal's charting library (uPlot); a Node.js from elsewhere may bring its own npm
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

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

# The portal serves every asset itself (no CDN: the tech zone is offline): uPlot, pinned, from npm,
# into a git-ignored directory beside the portal's own static files.
UPLOT_VERSION=1.6.32
vendor=truckctl/portal/static/vendor
if [ "$(cat "$vendor/.uplot-version" 2>/dev/null)" != "$UPLOT_VERSION" ]; then
  echo "setup: fetching uPlot $UPLOT_VERSION for the portal (npm)"
  npm_dir=$(mktemp -d)
  trap 'rm -rf "$npm_dir"' EXIT
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$npm_dir" "uplot@$UPLOT_VERSION" >/dev/null
  mkdir -p "$vendor"
  cp "$npm_dir/node_modules/uplot/dist/uPlot.iife.min.js" "$npm_dir/node_modules/uplot/dist/uPlot.min.css" \
     "$npm_dir/node_modules/uplot/LICENSE" "$vendor/"
  echo "$UPLOT_VERSION" > "$vendor/.uplot-version"
fi
echo "setup: ready ($(.venv/bin/truckctl --version))"
