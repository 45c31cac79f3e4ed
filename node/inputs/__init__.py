"""Inputs: what scanners write, read once, and typed readers of what the modules take in.

What a series is: image frames from any MR file, and what kind of series they form.

- frames.py: one image frame of a classic single-frame or an enhanced multi-frame file, with the
  attributes that apply to it (per-frame over shared functional groups over the top level).
- vendors.py: the conventions of Siemens, Philips and GE, one table per vendor.
- kinds.py: the kind of every frame and every series (raw inversion recovery, T1 map, phase, ...).

Readers (DICOM -> arrays with units, for node/process/modules/):
- prepared_images.py: inversion- or T2-prepared magnitude images grouped by slice.
- t1_maps.py: T1 maps, one per acquisition, sorted native / post-contrast.
- roi.py: regions from DICOM SEG and RT Structure Sets, as masks.
"""
