"""Optical flow: computed (tvl1, backends), written (storage, extract), and computed on demand
for one video (on_demand)."""

BACKEND_NAMES = ("torch", "opencv", "farneback", "dis")
"""Every backend of :func:`datp.flow.backends.build_backend`; ``farneback`` and ``dis`` are fast
and of lower quality than TV-L1. Kept here, where importing it loads no torch, so the CLI's
choices read it too."""
