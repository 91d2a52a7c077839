"""Where frames come from: photos, folders, video files, cameras, streams and GStreamer pipelines.

Inputs (``expand_sources``):
- an image file, or a video file (by suffix);
- a folder, searched recursively for both; outputs mirror the paths below the folder;
- a camera index (``0``, ``1``: a number that is not an existing file);
- a stream URL (anything with ``://``: rtsp, http, ...), or a GStreamer pipeline ``gst:...``
  (OpenCV built with GStreamer, as JetPack's is); a ``file://`` URL is the file or folder it names.

Outputs keep the input's name under the output folder (``face/video.py`` reads and writes videos).
Live sources are written as ``camera<N>.mp4`` or ``stream<N>.mp4`` (in segments: ``face/live.py``).

In folders, entries named like images or videos that cannot be read as files (broken or looping
symbolic links, pipes) are still returned, so that reading them reports them by name; folders
named like images are searched as folders, and said so (``Inputs.notes``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..atomic import PARTIAL_MARK
from .io import IMAGE_SUFFIXES

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Source:
    """One input. ``kind``: image, video, camera or stream. ``location``: a path, a camera
    index or a URL. ``output``: the output path relative to the output folder."""

    kind: str
    location: str | int
    output: Path

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")

    def __str__(self) -> str:
        return f"camera {self.location}" if self.kind == "camera" else str(self.location)


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


@dataclass
class Inputs:
    """``sources`` in order; ``notes``: what was searched in an unexpected way (a folder named
    like an image); ``empty``: command-line folders in which nothing was found (each a failure)."""

    sources: list[Source]
    notes: list[str]
    empty: list[str]


def expand_sources(inputs: Sequence[str], out_dir: Path | None = None) -> Inputs:
    """Sources for command-line inputs, in order; folders sorted so that runs are repeatable.

    A path that does not exist is still returned (as an image or video), so that reading it
    reports it by name and the rest of the batch goes on. ``file://`` URLs are paths, not streams.
    An empty name is refused (``Inputs.empty``), not read as the current folder. Searching a
    folder skips ``out_dir`` (the run's output folder, when it lies inside an input folder) and
    the hidden temporary files of interrupted writes (``anonymixer.atomic``): outputs are never
    inputs.
    """
    found = Inputs([], [], [])
    streams = 0
    skip = None if out_dir is None else os.path.realpath(out_dir)
    for item in inputs:
        if not item.strip():
            found.empty.append(f"{item!r}: an empty input name (for the current folder, write .)")
            continue
        if item.lower().startswith("file:"):
            item = file_url_path(item)
        path = Path(item)
        if "://" in item or item.startswith("gst:"):
            found.sources.append(Source("stream", item, Path(f"stream{streams}.mp4")))
            streams += 1
        elif re.fullmatch(r"\d+", item) and not path.exists():
            found.sources.append(Source("camera", int(item), Path(f"camera{item}.mp4")))
        elif path.is_dir():
            before = len(found.sources)
            _search_folder(path, found, skip)
            if len(found.sources) == before:
                named = " (although named like an image or video)" if path.suffix.lower() in MEDIA_SUFFIXES else ""
                found.empty.append(f"{path}: a folder{named} with no images or videos in it")
        else:
            found.sources.append(Source(_kind(path), item, Path(path.name)))
    return found


def file_url_path(url: str) -> str:
    """The local path of a ``file:`` URL (``file:///a/b%20c.jpg`` -> ``/a/b c.jpg``); a URL naming
    another host is returned unchanged (it is then opened as a stream, and fails by name)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        return url
    return urllib.parse.unquote(parsed.path)


def _search_folder(folder: Path, found: Inputs, out_dir: str | None = None) -> None:
    """Media files below ``folder``; the tree of ``out_dir`` (a real path) is skipped when it lies
    strictly inside ``folder`` (the output of this run, or of an earlier one into the same place)."""
    inner = out_dir if out_dir is not None and out_dir.startswith(os.path.realpath(folder) + os.sep) else None
    if inner is not None:
        found.notes.append(f"{folder}: holds the output folder {inner}; the files there are not inputs")
    for entry in sorted(folder.rglob("*")):
        if entry.suffix.lower() not in MEDIA_SUFFIXES or PARTIAL_MARK in entry.name:
            continue
        if inner is not None and (os.path.realpath(entry.parent) + os.sep).startswith(inner + os.sep):
            continue
        if entry.is_dir():  # rglob searches it too
            found.notes.append(f"{entry}: a folder named like an image or video; searched as a folder")
        else:  # files, and broken links or pipes, which reading reports by name
            found.sources.append(Source(_kind(entry), str(entry), entry.relative_to(folder)))
