"""Reading images, stacks, NIfTI volumes, DICOM series and Spectralis .vol files into a `Volume`, and writing
labels or images back atomically.

Readers keep the pixel type and the geometry (spacing in mm, the affine, 2-D vs 3-D on disk) so that labels
written later line up with the source in any viewer. NIfTI and DICOM volumes are turned into one orientation
(RAS+) for the models and turned back on writing. Every problem with an input file is an `InputError` naming
the file and what is wrong; writers never leave a half-written file behind. pydicom and eyepy are imported
only when a DICOM or .vol file is read.
"""

from reseg.io._common import extension, reading
from reseg.io._read import is_supported, read_volume
from reseg.io._volume import MODALITIES, Volume, as_stack
from reseg.io._write import replace_atomically, write_image, write_labels

__all__ = [
    "MODALITIES", "Volume", "as_stack", "extension", "is_supported", "read_volume", "reading", "replace_atomically",
    "write_image", "write_labels",
]
