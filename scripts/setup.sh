#!/usr/bin/env bash
# Set up ./.venv with napari-sam2 and everything its tests need, on a fresh machine (Python >= 3.11).
# As root on Debian/Ubuntu it also installs the system libraries napari's Qt canvas needs under xvfb.
#   bash scripts/setup.sh                 # .venv from python3
#   PYTHON=python3.12 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
APT_PACKAGES=(xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0
  libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0
  libxcb-image0 libdbus-1-3 libfontconfig1)
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # (dpkg-query fails when a package is missing: under pipefail a pipe into grep would then read as "all there")
  missing=$(dpkg-query -W -f='${Status}\n' "${APT_PACKAGES[@]}" 2>&1 | grep -v "install ok installed" || true)
  if [ -n "$missing" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
$VPY -m pip install -q -U pip setuptools wheel
# torch first and pinned: a plain `torch` requirement would pull several GB of CUDA packages.
$VPY -m pip install -q torch==2.13.0
$VPY -m pip install -q --no-deps -e .
$VPY scripts/install_deps.py  # the requirements, the test extra and the [cluster] extra (napari-sam2 batch)
# Meta's reference implementation, for the differential tests. Its metadata asks for torchvision (no CPU
# build exists; it would replace torch), which it never imports on the paths we test: install it alone.
SAM2_BUILD_CUDA=0 $VPY -m pip install -q --no-deps --no-build-isolation sam2==1.1.0
echo "napari-sam2 is set up in .venv"
