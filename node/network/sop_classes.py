"""Storage SOP classes and transfer syntaxes the node negotiates."""
from __future__ import annotations

from pydicom import uid
from pydicom.pixels import get_decoder

# What a CMR scanner, a workstation or another node sends us (PS3.4 Annex B.5).
STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR Spectroscopy Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR Storage",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map Storage",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
}

# The classes above whose instances must carry Rows, Columns and (Float) Pixel Data.
IMAGE_SOP_CLASSES = {uid_ for uid_, name in STORAGE_SOP_CLASSES.items()
                     if not any(kind in name for kind in (" SR ", "Spectroscopy", "RT Structure Set"))}

_NATIVE = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
           uid.ExplicitVRBigEndian]
_COMPRESSED = [uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1,
               uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless]


def accepted_transfer_syntaxes() -> list[str]:
    """Native syntaxes plus every compressed one pydicom can decode here (so modules can read it)."""
    syntaxes = list(_NATIVE)
    for ts in _COMPRESSED:
        try:
            if get_decoder(ts).is_available:
                syntaxes.append(ts)
        except NotImplementedError:
            pass
    return syntaxes
