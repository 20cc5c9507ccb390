#!/usr/bin/env bash
# Wheels the GPU device machine lacks (it reaches no package index), for its Python 3.12 image, which
# already holds torch, timm, scipy, scikit-image, pandas, matplotlib, seaborn, tifffile. Run here, in the
# repo root; the folders are git-ignored through .git/info/exclude.
#
# Two folders, because one device call carries at most 64 MiB: .whl/a holds SimpleITK alone (51 MB),
# .whl/b everything else (about 20 MB). scripts/device/gpu_check.sh installs whichever is carried into
# .site/ (kept on a warm machine between calls), so: call 1 carries .whl/a, call 2 carries .whl/b and runs.
# imagecodecs (27 MB, TIFF codecs only) is left out; nnU-Net imports it only for TIFF data.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.site/' .git/info/exclude 2>/dev/null || echo '/.site/' >> .git/info/exclude
mkdir -p .whl/a .whl/b
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl/a SimpleITK
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl/b blosc2 ndindex numexpr connected-components-3d
# pure-Python packages (some only as sdists): built here as py3 wheels
python3 -m pip wheel -q --no-deps -w .whl/b nnunetv2==2.8.1 acvl-utils==0.2.6 dynamic-network-architectures==0.4.4 \
    batchgenerators==0.25.5 batchgeneratorsv2==0.3.6 nibabel yacs graphviz future unittest2 monai==1.5.2
du -sh .whl/a .whl/b
