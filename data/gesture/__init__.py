"""Gesture data: hand-crop annotations, dataset conversion, the crop dataset and synthetic
hands."""
