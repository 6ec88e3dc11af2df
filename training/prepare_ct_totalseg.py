"""Build the training and validation sets of the bundled `l2gnet-ct` demonstration model.

Source: ../shared/data/ct_totalseg (TotalSegmentator test files, Apache-2.0). Its labels are TotalSegmentator
*model output*, not expert annotation, so the model trained on them is a pipeline demonstration only.
- `train`: example_ct_sm.nii.gz + example_seg.nii.gz (30 slices, 3 mm isotropic)
- `validation`: the 20-slice DICOM series + example_seg_dicom.nii.gz, resampled in-plane to 3 mm
- `phantom`: synthetic abdominal CT stacks (`reseg.data.ct_phantom`, exact labels, seeds 500..), 3 mm
The two real scans are the only labelled CT there is: each validates a model trained on the other (a split by
scan, two folds) and the phantom folder trains with both.
`reseg.io.read_volume` brings both to RAS+ orientation, as it does for every scan the model will see.
TotalSegmentator ids are mapped to the 8 Synapse organs (reseg.classes.CT_CLASSES); all else is background.

    python training/prepare_ct_totalseg.py ../shared/data/ct_totalseg OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reseg.classes import CT_CLASSES
from reseg.data.ct_phantom import make_ct_phantom
from reseg.data.dataset import write_training_set
from reseg.io import read_volume
from reseg.preprocessing.resampling import resample_image, resample_labels, spacing_grid

# TotalSegmentator "total" ids (class_map_total.json) -> Synapse organ index of CT_CLASSES
TOTALSEG_TO_SYNAPSE = {
    "aorta": 1,
    "gallbladder": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "liver": 5,
    "pancreas": 6,
    "spleen": 7,
    "stomach": 8,
}
SOURCE_NOTE = "TotalSegmentator test data (Apache-2.0); labels are TotalSegmentator model output"
PHANTOM_SEED, PHANTOM_VOLUMES = 500, 12


def synapse_lookup(class_map: dict[str, str]) -> np.ndarray:
    lookup = np.zeros(256, dtype=np.uint8)
    for organ_id, organ in class_map.items():
        lookup[int(organ_id)] = TOTALSEG_TO_SYNAPSE.get(organ, 0)
    return lookup


def organ_scan(image_path: Path, labels_path: Path, lookup: np.ndarray, in_plane_mm: float | None = None):
    """(image HU, Synapse labels, spacing), optionally resampled in-plane to `in_plane_mm` by the rule inference
    applies to a model with that input spacing."""
    image, labels = read_volume(image_path), read_volume(labels_path)
    hu, organs, spacing = image.data.astype(np.int16), lookup[labels.data.astype(np.uint8)], image.spacing
    if in_plane_mm is not None:
        grid = spacing_grid(hu.shape[1:], spacing[1:], (in_plane_mm, in_plane_mm))
        hu = np.stack([resample_image(s.astype(np.float32), grid) for s in hu]).round().astype(np.int16)
        organs = np.stack([resample_labels(s, grid) for s in organs])
        spacing = (spacing[0], in_plane_mm, in_plane_mm)
    present = {CT_CLASSES[k].name: int(n) for k, n in enumerate(np.bincount(organs.ravel(), minlength=9)) if k and n}
    print(f"{image_path.name}: {hu.shape} at {spacing} mm, organ voxels {present}")
    return hu, organs, spacing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    lookup = synapse_lookup(json.loads((args.source / "class_map_total.json").read_text())["total"])
    train = organ_scan(args.source / "example_ct_sm.nii.gz", args.source / "example_seg.nii.gz", lookup)
    validation = organ_scan(
        args.source / "example_ct_dicom", args.source / "example_seg_dicom.nii.gz", lookup, in_plane_mm=3.0
    )
    write_training_set(args.output / "train", [("example_ct_sm", *train)], modality="CT", source=SOURCE_NOTE)
    write_training_set(
        args.output / "validation", [("example_ct_dicom", *validation)], modality="CT", source=SOURCE_NOTE
    )
    phantoms = [make_ct_phantom(n_slices=24, size=128, seed=PHANTOM_SEED + i) for i in range(PHANTOM_VOLUMES)]
    write_training_set(
        args.output / "phantom",
        [(f"ct_phantom_{PHANTOM_SEED + i}", p.image, p.labels, p.spacing) for i, p in enumerate(phantoms)],
        modality="CT",
        source=f"reseg CT phantom, seeds {PHANTOM_SEED}-{PHANTOM_SEED + PHANTOM_VOLUMES - 1}",
    )


if __name__ == "__main__":
    main()
