"""Open a video by its layout: the one place that knows every frame-store kind.

``data.video.framestore`` holds the base class and the SQLite / folder stores; the MMAction2
rawframes store and the raw video file store build on it. This module imports them all, so none
of them imports back.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.video.ffmpeg_io import VIDEO_SUFFIXES
from data.video.framestore import (
    DB_NAME,
    FolderFrameStore,
    FrameStore,
    FrameStoreError,
    SQLiteFrameStore,
)
from data.video.mmaction_lists import MMActionFrameStore, find_rawframe_template
from data.video.videofile import VideoFileStore

__all__ = ["is_complete_video", "open_store"]


def open_store(video_dir: str | os.PathLike) -> FrameStore:
    """Detect the layout of ``video_dir`` and return its store (no file is kept open); a video
    file (suffix in ``VIDEO_SUFFIXES``) is decoded on the fly (``data.video.videofile``)."""
    video_dir = Path(video_dir)
    if video_dir.suffix.lower() in VIDEO_SUFFIXES and not video_dir.is_dir():
        return VideoFileStore(video_dir)
    if (video_dir / DB_NAME).exists():
        return SQLiteFrameStore(video_dir)
    if (video_dir / "rgb").is_dir():
        return FolderFrameStore(video_dir)
    if not video_dir.is_dir():
        raise FrameStoreError(f"{video_dir}: video directory not found")
    if find_rawframe_template(video_dir):
        return MMActionFrameStore(video_dir)
    raise FrameStoreError(
        f"{video_dir}: neither {DB_NAME}, an rgb/ folder nor MMAction2 rawframes (img_00001.jpg)"
    )


def is_complete_video(video_dir: Path) -> bool:
    """True for a directory that :func:`open_store` can read (written atomically by writers)."""
    if (video_dir / DB_NAME).is_file() or (video_dir / "rgb").is_dir():
        return True
    return find_rawframe_template(video_dir) is not None
