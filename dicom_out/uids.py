"""Deterministic UIDs: the same inputs and module version always give the same output UIDs,
so a job run twice (after a crash) replaces rather than duplicates its objects in a PACS."""
from __future__ import annotations

from pydicom.uid import UID, generate_uid

# pydicom's registered root for UIDs generated from a hash (PS3.5 B.2 style "2.25" would also do).
_PREFIX = "1.2.826.0.1.3680043.8.498."


def derived_uid(*parts: object) -> UID:
    """A UID derived from the given parts (job key, module, role, index ...), each taken as its str()."""
    return generate_uid(prefix=_PREFIX, entropy_srcs=[str(p) for p in parts])
