"""Skeleton data: file formats (NTU, pyskl/MMAction2 pickles, deepstream JSON), conversion,
the sequence dataset and synthetic skeletons."""
