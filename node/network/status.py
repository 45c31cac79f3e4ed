"""DICOM status codes used by the node (PS3.7 Annex C, PS3.4 B.2.3)."""

SUCCESS = 0x0000
# C-STORE failures (PS3.4 Table B.2-1; PS3.7 Annex C)
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# Warnings a receiving SCP may answer with; the data was stored.
COERCION_OF_DATA_ELEMENTS = 0xB000
ELEMENTS_DISCARDED = 0xB006
DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007

WARNING_STATUSES = {COERCION_OF_DATA_ELEMENTS, ELEMENTS_DISCARDED, DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING}


def is_stored(status: int) -> bool:
    """True when a C-STORE response means the peer kept the instance."""
    return status == SUCCESS or status in WARNING_STATUSES
