"""cmr-node: the DICOM side of the node (receive, store, route, dispatch)."""
__version__ = "0.1.0"
