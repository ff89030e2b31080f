"""Video data: frame stores (SQLite, folders, MMAction2 rawframes, raw video files), splits and
lists, preparation and optical flow, samplers, clip transforms, the clip dataset, synthetic videos."""
