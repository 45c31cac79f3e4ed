"""DICOM networking shared by the stages: named statuses, the SOP classes negotiated, TLS, storage SCU."""
