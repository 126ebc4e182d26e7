"""Synthetic cohorts written in the real raw layouts (MIMIC-IV, MIMIC-CXR-JPG, reports; lung CT/PET).

The demo runs the same readers as real data, so the generators write files, not tensors.
See docs/synthetic_data.md for the signal model and what the demo can and cannot show.
"""
