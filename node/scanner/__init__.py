"""What scanners write, read once: image frames from any MR file, and what kind of series they form.

- frames.py: one image frame of a classic single-frame or an enhanced multi-frame file, with the
  attributes that apply to it (per-frame over shared functional groups over the top level).
- vendors.py: the conventions of Siemens, Philips and GE, one table per vendor.
- kinds.py: the kind of every frame and every series (raw inversion recovery, T1 map, phase, ...).
"""
