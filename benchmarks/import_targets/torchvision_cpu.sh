#!/usr/bin/env bash
# torchvision's model code beside a CPU-only torch 2.13, without its C extension.
#
# torchvision 0.28 (the release for torch 2.13) fails at import on the CPU wheel:
# its C extension wants CUDA libraries, and its fake-kernel registrations name
# operators that then do not exist. The architectures are pure Python, so this
# unpacks the wheel into FOLDER (default: ./torchvision-cpu), removes the two
# compiled libraries and empties the two registration modules. Detection ops
# (nms, roi_align) do not work there; the classification, segmentation and video
# models do.
#
# Usage: bash benchmarks/import_targets/torchvision_cpu.sh [FOLDER]
#        PYTHONPATH=FOLDER python benchmarks/import_targets/torchvision_models.py
set -euo pipefail
folder="${1:-torchvision-cpu}"
mkdir -p "$folder"
python -m pip download --quiet --no-deps --dest "$folder" torchvision==0.28.0
wheel="$(ls "$folder"/torchvision-0.28.0-*.whl | head -n 1)"
python -m zipfile -e "$wheel" "$folder"
rm -f "$folder/torchvision/_C.so" "$folder/torchvision/image.so"
echo '"""Emptied: torchvision C ops are not available beside this torch."""' > "$folder/torchvision/_meta_registrations.py"
echo '"""Emptied: torchvision C ops are not available beside this torch."""' > "$folder/torchvision/_autograd_registrations.py"
python -c "import sys; sys.path.insert(0, '$folder'); import torchvision.models" && echo "torchvision models import from $folder"
