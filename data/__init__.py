"""Datasets by family: ``data.video``, ``data.skeleton`` and ``data.gesture`` (readers, writers,
converters, samplers, transforms and synthetic data). The families never import each other."""
