"""Segmentation networks built on the Rep3D encoder."""
