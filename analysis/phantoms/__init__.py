"""Digital reference objects: label images with known ground truth, arrays only."""
from analysis.phantoms.short_axis import MYOCARDIUM, Region, SliceGeometry, region_masks, short_axis_labels

__all__ = ["MYOCARDIUM", "Region", "SliceGeometry", "region_masks", "short_axis_labels"]
