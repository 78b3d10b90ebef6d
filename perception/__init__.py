"""Perception: segmentation models, the checkpoint format, and lane metrics.

This package knows nothing of the simulator (`sim`): it sees images and masks only.
"""
