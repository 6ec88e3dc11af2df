"""Build the training and validation sets of the bundled `l2gnet-ct` demonstration model.

Source: ../shared/data/ct_totalseg (TotalSegmentator test files, Apache-2.0). Its labels are TotalSegmentator
*model output*, not expert annotation, so the model trained on them is a pipeline demonstration only.
- training: example_ct_sm.nii.gz + example_seg.nii.gz (30 slices, 3 mm isotropic)
- validation: the 20-slice DICOM series + example_seg_dicom.nii.gz, resampled in-plane to 3 mm
Both are brought to RAS+ orientation (nibabel's closest canonical) so left and right kidney agree.
TotalSegmentator ids are mapped to the 8 Synapse organs (reseg.classes.CT_CLASSES); all else is background.

    python training/prepare_ct_totalseg.py ../shared/data/ct_totalseg OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from skimage.transform import resize

from reseg.classes import CT_CLASSES

# TotalSegmentator "total" ids (class_map_total.json) -> Synapse organ index of CT_CLASSES
TOTALSEG_TO_SYNAPSE = {"aorta": 1, "gallbladder": 2, "kidney_left": 3, "kidney_right": 4, "liver": 5,
                       "pancreas": 6, "spleen": 7, "stomach": 8}


def synapse_lookup(class_map: dict[str, str]) -> np.ndarray:
    lookup = np.zeros(256, dtype=np.uint8)
    for organ_id, organ in class_map.items():
        lookup[int(organ_id)] = TOTALSEG_TO_SYNAPSE.get(organ, 0)
    return lookup


def dicom_series_as_nifti(folder: Path, affine: np.ndarray) -> nib.Nifti1Image:
    """HU volume of a single-series DICOM folder in the voxel order of the matching segmentation NIfTI."""
    slices = sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    # DICOM rows run anterior->posterior (LPS); the NIfTI's second axis runs the other way.
    return nib.Nifti1Image(hu[:, ::-1, :].transpose(2, 1, 0).astype(np.int16), affine)


def write_pair(out: Path, name: str, image: nib.Nifti1Image, labels: nib.Nifti1Image, lookup: np.ndarray,
               in_plane_mm: float | None = None) -> None:
    image, labels = nib.as_closest_canonical(image), nib.as_closest_canonical(labels)
    hu = np.asarray(image.dataobj).astype(np.int16)
    organs = lookup[np.asarray(labels.dataobj).astype(np.uint8)]
    affine = image.affine.copy()
    if in_plane_mm is not None:
        zooms = image.header.get_zooms()
        shape = (round(hu.shape[0] * zooms[0] / in_plane_mm), round(hu.shape[1] * zooms[1] / in_plane_mm), hu.shape[2])
        hu = resize(hu.astype(np.float32), shape, order=1, preserve_range=True, anti_aliasing=True).round().astype(np.int16)
        organs = resize(organs, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8)
        affine[:3, 0] *= in_plane_mm / zooms[0]
        affine[:3, 1] *= in_plane_mm / zooms[1]
    for sub, data in (("images", hu), ("labels", organs)):
        (out / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), out / sub / f"{name}.nii.gz")
    manifest = {"format": "reseg-dataset", "version": 1, "modality": "CT",
                "classes": [c.to_dict() for c in CT_CLASSES],
                "source": "TotalSegmentator test data (Apache-2.0); labels are TotalSegmentator model output"}
    (out / "dataset.json").write_text(json.dumps(manifest, indent=2))
    present = {CT_CLASSES[k].name: int(n) for k, n in enumerate(np.bincount(organs.ravel(), minlength=9)) if k and n}
    print(f"{out / 'images' / name}: {hu.shape}, organ voxels {present}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    lookup = synapse_lookup(json.loads((args.source / "class_map_total.json").read_text())["total"])
    write_pair(args.output / "train", "example_ct_sm", nib.load(args.source / "example_ct_sm.nii.gz"),
               nib.load(args.source / "example_seg.nii.gz"), lookup)
    seg = nib.load(args.source / "example_seg_dicom.nii.gz")
    write_pair(args.output / "validation", "example_ct_dicom", dicom_series_as_nifti(args.source / "example_ct_dicom",
               seg.affine), seg, lookup, in_plane_mm=3.0)


if __name__ == "__main__":
    main()
