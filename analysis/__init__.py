"""Physics and fitting for cmr-node. Arrays in, arrays out: no DICOM, no network."""
