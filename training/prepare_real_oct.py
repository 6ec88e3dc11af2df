"""Build the training, validation and test folders of the bundled `lightreseg-oct` model.

Real data (../shared/data, never copied into the repository) enters as *partial labels*:
- Duke DME (Chiu et al. 2015): intraretinal fluid is marked everywhere, layers nowhere. A fluid pixel is
  class 9; any other pixel of the scan field is NOT_FLUID ("one of classes 0..8"); the registration fill that
  the Spectralis export pads shifted frames with is IGNORE_INDEX. Subjects 01-06 train, 07-08 validate; one
  scan per subject, so no subject is split.
- Spectralis circle scan Willis_B_716_2.vol: the device's ILM and BM heights say vitreous (0) above ILM,
  choroid/sclera (8) below BM and RETINA ("one of 1..7 or fluid") in between; columns without both heights
  are ignored. The line scan Willis_B_716_0.vol is kept out of training: it is the boundary test
  (`reseg evaluate MODEL .../Willis_B_716_0.vol`).
Synthetic phantoms (all ten classes exact) make up the rest: training volumes with and without fluid, with
widely varied layer contrast, validation volumes and held-out test volumes, each from seeds of their own.

    python training/prepare_real_oct.py ../shared/data OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reseg.classes import IGNORE_INDEX, OCT_FLUID
from reseg.data.dataset import write_training_set
from reseg.data.phantom import make_oct_phantom
from reseg.data.spectralis import scan_field_mask
from reseg.io import read_volume

NOT_FLUID = 254  # partial label: some class 0..8
RETINA = 253  # partial label: between ILM and BM, some class 1..7 or fluid
DUKE_SPACING = (1.0, 0.00387, 0.0113)  # Spectralis axial / lateral mm (the README of the data); B-scans unrelated
DUKE_TRAIN, DUKE_VALIDATION = range(1, 7), range(7, 9)
SPECTRALIS_CONTRAST = (0.94, 1.06)  # the phantom's default: tissue brightnesses as measured on Duke, +-6 %
VARIED_CONTRAST = (0.75, 1.25)  # each tissue's brightness +-25 %: layer contrast as devices and eyes vary it
# folder: first seed, volumes, B-scans per volume, fluid, range of the tissue contrast factors
PHANTOM_SEEDS = {
    "phantom_fluid": (1000, 24, 8, True, SPECTRALIS_CONTRAST),
    "phantom_clean": (2000, 24, 8, False, SPECTRALIS_CONTRAST),
    "phantom_varied": (4000, 24, 8, True, VARIED_CONTRAST),
    "phantom_validation": (3000, 6, 2, True, SPECTRALIS_CONTRAST),
    "phantom_test": (9001, 6, 4, True, SPECTRALIS_CONTRAST),
    "phantom_test_healthy": (9101, 6, 4, False, SPECTRALIS_CONTRAST),  # no fluid: a model should find none
}


def duke_subject(data: Path, subject: int) -> tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One Duke subject's 11 B-scans with labels fluid / not fluid / ignored fill."""
    images, labels = [], []
    for image_path in sorted((data / "duke_dme" / "images").glob(f"subject{subject:02d}_bscan*.png")):
        bscan = read_volume(image_path).data[0]
        fluid = read_volume(data / "duke_dme" / "fluid" / image_path.name).data[0] > 0
        label = np.where(fluid, OCT_FLUID, NOT_FLUID).astype(np.uint8)
        label[~scan_field_mask(bscan)] = IGNORE_INDEX
        images.append(bscan)
        labels.append(label)
    if not images:
        raise SystemExit(f"no B-scans of subject {subject:02d} under {data / 'duke_dme'}")
    return f"duke_subject{subject:02d}", np.stack(images), np.stack(labels), DUKE_SPACING


def phantom_scans(folder: str) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """The phantom volumes of one of the PHANTOM_SEEDS folders."""
    seed, volumes, bscans, fluid, contrast = PHANTOM_SEEDS[folder]
    phantoms = [
        (seed + index, make_oct_phantom(bscans, seed=seed + index, fluid=fluid, tissue_contrast=contrast))
        for index in range(volumes)
    ]
    return [(f"phantom_{number}", p.image, p.labels, p.spacing) for number, p in phantoms]


def spectralis_with_device_boundaries(path: Path) -> tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A .vol B-scan labelled vitreous / retina (partial) / choroid from the device's ILM and BM heights."""
    volume = read_volume(path)
    ilm, bm = (volume.metadata["boundaries"][name] for name in ("ILM", "BM"))  # (B-scans, A-scans) rows
    rows = np.arange(volume.data.shape[1])[None, :, None]
    labels = np.where(rows < np.round(ilm)[:, None, :], 0, np.where(rows < np.round(bm)[:, None, :], RETINA, 8))
    labels = labels.astype(np.uint8)
    known = np.isfinite(ilm) & np.isfinite(bm)
    labels[np.broadcast_to(~known[:, None, :], labels.shape)] = IGNORE_INDEX
    return path.stem, volume.data, labels, volume.spacing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with duke_dme/ and spectralis_vol/)")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    duke_source = "Duke DME (Chiu et al., Biomed. Opt. Express 6(4), 2015), grader 1 fluid masks"
    write_training_set(
        args.output / "duke_train",
        [duke_subject(args.data, s) for s in DUKE_TRAIN],
        "OCT",
        f"{duke_source}, subjects 01-06",
        label_sets={NOT_FLUID: list(range(9))},
    )
    write_training_set(
        args.output / "duke_validation",
        [duke_subject(args.data, s) for s in DUKE_VALIDATION],
        "OCT",
        f"{duke_source}, subjects 07-08",
        label_sets={NOT_FLUID: list(range(9))},
    )
    write_training_set(
        args.output / "spectralis_circle",
        [spectralis_with_device_boundaries(args.data / "spectralis_vol" / "Willis_B_716_2.vol")],
        "OCT",
        "HSF-OCT-103 Willis_B_716_2.vol (MIT), device ILM/BM heights",
        label_sets={RETINA: [*range(1, 8), OCT_FLUID]},
    )
    for folder, (seed, volumes, *_) in PHANTOM_SEEDS.items():
        write_training_set(
            args.output / folder, phantom_scans(folder), "OCT", f"reseg OCT phantom, seeds {seed}-{seed + volumes - 1}"
        )
    print(f"wrote {', '.join(sorted(p.name for p in args.output.iterdir()))} under {args.output}")


if __name__ == "__main__":
    main()
