"""Builders of output DICOM objects (highdicom) from analysis results."""
