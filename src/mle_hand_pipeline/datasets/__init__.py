"""Readers for FreiHAND and RHD in their original on-disk layouts, and the crop geometry."""
