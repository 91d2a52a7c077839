"""How big are protected videos against their inputs? And VP9 against VP8 for WebM.

    python benchmarks/video_sizes.py [--seconds 60] [--model faces64] [--out benchmarks/results/video_sizes]

Makes clips synthetically with PyAV (no downloads): two real faces (the packaged astronaut and
Grace Hopper photos, 240-px crops) drifting over a still 1280x720 background (the Grace Hopper
photo, blurred), at 25 fps, with a 48 kHz AAC/Opus tone, encoded as a camera or phone would:
H.264 at CRF 23 (.mp4, .mov, .mkv) or VP9 (.webm). Each is protected exactly as
``anonymixer protect CLIP --out OUT`` does (``face.app.protect_sources``), and the sizes of input
and output are compared; the old OpenCV writer (MPEG-4 Part 2, ``mp4v``) is timed on the same
protected frames for comparison. Then VP9 and VP8 (the two WebM encoders in PyAV's wheel) encode
the same seconds of the scene: size, PSNR and speed. Writes ``sizes.json`` (``webm.json`` with
``--webm-only``) and prints Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FPS = 25
SIZE = (1280, 720)
CLIPS = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "libopus"),
         ".webm": ("libvpx-vp9", "libopus")}
ENCODER_OPTIONS = {"libx264": {"crf": "23", "preset": "medium"},
                   "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}}
# WebM candidates: VP9 as anonymixer writes it (face/video.py), VP8 at two qualities (CRF with a cap).
WEBM = {"vp9 crf 32": ("libvpx-vp9", ENCODER_OPTIONS["libvpx-vp9"]),
        "vp8 crf 10, 2M cap": ("libvpx", {"crf": "10", "b": "2M", "deadline": "good", "cpu-used": "4"}),
        "vp8 crf 30, 1M cap": ("libvpx", {"crf": "30", "b": "1M", "deadline": "good", "cpu-used": "4"})}


def scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """The still background ``(720, 1280, 3)`` and two face crops ``(240, 240, 3)`` (BGR)."""
    from anonymixer.bench.inputs import face_tiles

    tiles = face_tiles()
    background = cv2.GaussianBlur(cv2.resize(tiles[1], SIZE, interpolation=cv2.INTER_CUBIC), (0, 0), 6)
    crops = [cv2.resize(tile[60:420, 76:436], (240, 240), interpolation=cv2.INTER_AREA) for tile in tiles]
    return background, crops


def frame_at(index: int, background: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
    frame = background.copy()
    t = index / FPS
    for k, crop in enumerate(crops):   # each face drifts on its own slow ellipse
        x = int(180 + 700 * k + 120 * np.sin(0.4 * t + k))
        y = int(220 + 100 * np.cos(0.3 * t + 2 * k))
        frame[y:y + 240, x:x + 240] = crop
    return frame


def make_clip(path: Path, frames: int, video_codec: str, audio_codec: str) -> None:
    background, crops = scene()
    with av.open(str(path), "w") as out:
        video = out.add_stream(video_codec, rate=FPS, options=ENCODER_OPTIONS[video_codec])
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        sound = out.add_stream(audio_codec, rate=48000)
        sound.layout = "mono"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(frame_at(i, background, crops), format="bgr24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // FPS) / 48000)).astype(np.float32)
        fmt = sound.codec_context.format.name
        for start in range(0, len(samples), 960):
            chunk = samples[start:start + 960][None]
            if fmt.startswith("s16"):
                chunk = (chunk * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def decoded(path: Path, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if limit is not None and len(frames) == limit:
                break
        return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def encode(frames: list[np.ndarray], path: Path, codec: str, options: dict[str, str]) -> float:
    """Seconds to encode ``frames`` with ``codec`` into ``path``."""
    start = time.perf_counter()
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i, image in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(image, format="bgr24")
            picture.pts = i
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return time.perf_counter() - start


def opencv_mp4v(frames: list[np.ndarray], path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    for image in frames:
        writer.write(image)
    writer.release()


def compare_webm(seconds: int) -> list[dict[str, object]]:
    """Each WebM candidate on the same ``seconds`` of the synthetic scene: size, PSNR against the
    frames it was given (BGR, all pixels), encode speed."""
    background, crops = scene()
    frames = [frame_at(i, background, crops) for i in range(seconds * FPS)]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (codec, options) in WEBM.items():
            path = Path(tmp) / f"{codec}.webm"
            spent = encode(frames, path, codec, options)
            back = decoded(path)
            rows.append({"encoder": name, "codec": codec, "options": options, "frames": len(frames),
                         "bytes": path.stat().st_size, "encode_s": round(spent, 1),
                         "fps": round(len(frames) / spent, 1),
                         "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(frames, back)])), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the .mp4 clip (the others: 10 s)")
    parser.add_argument("--model", default="faces64")
    parser.add_argument("--out", default="benchmarks/results/video_sizes")
    parser.add_argument("--webm-seconds", type=int, default=5, help="length of the WebM encoder comparison")
    parser.add_argument("--webm-only", action="store_true", help="only the WebM encoder comparison")
    args = parser.parse_args(argv)
    if args.webm_only:
        record = {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
                  "webm_encoders": compare_webm(args.webm_seconds)}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "webm.json").write_text(json.dumps(record, indent=1) + "\n")
        print_webm(record["webm_encoders"], args.webm_seconds)
        return 0

    from anonymixer.bench.inputs import bench_key
    from anonymixer.bench.machine import cpu_model, int8_features, load_average
    from anonymixer.face.app import protect_sources
    from anonymixer.face.detect import open_detector
    from anonymixer.face.pipeline import FaceProtector
    from anonymixer.face.sources import expand_sources
    from anonymixer.runtime import Protector

    face_protector = FaceProtector(Protector(args.model, bench_key()), open_detector("yunet"))
    rows, load_start = [], load_average()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for suffix, (video_codec, audio_codec) in CLIPS.items():
            seconds = args.seconds if suffix == ".mp4" else min(10, args.seconds)
            clip = folder / f"clip{suffix}"
            make_clip(clip, seconds * FPS, video_codec, audio_codec)
            start = time.perf_counter()
            report = protect_sources(face_protector, expand_sources([str(clip)]).sources, folder / "out")
            wall = time.perf_counter() - start
            out = folder / "out" / clip.name
            with av.open(str(out)) as container:
                codecs = [f"{s.type} {s.codec_context.name}" for s in container.streams]
            row = {"clip": clip.name, "seconds": seconds, "input_bytes": clip.stat().st_size,
                   "output_bytes": out.stat().st_size, "output_streams": codecs, "frames": report.frames,
                   "faces": report.faces, "masked": report.masked, "protect_wall_s": round(wall, 1)}
            if suffix == ".mp4":
                old = folder / "old_mp4v.mp4"
                opencv_mp4v(decoded(out), old)
                row["opencv_mp4v_bytes"] = old.stat().st_size
            rows.append(row)
    webm = compare_webm(args.webm_seconds)
    record = {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "cpu": cpu_model(),
              "int8_features": int8_features(), "load_average": [load_start, load_average()],
              "model": args.model, "pyav": av.__version__, "ffmpeg": av.ffmpeg_version_info,
              "clips": rows, "webm_encoders": webm}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sizes.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['date']}, {record['cpu']}, load {record['load_average']}, PyAV {av.__version__} "
          f"(FFmpeg {av.ffmpeg_version_info}), model {args.model}\n")
    print("| input | length | input MB | output MB | output / input | output streams | faces, masked |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clip']} | {row['seconds']} s | {row['input_bytes'] / 1e6:.2f} | {row['output_bytes'] / 1e6:.2f} "
              f"| {row['output_bytes'] / row['input_bytes']:.2f} | {', '.join(row['output_streams'])} | "
              f"{row['faces']}, {row['masked']} |")
    mp4 = rows[0]
    print(f"\nThe old OpenCV writer (mp4v) on the same protected frames: {mp4['opencv_mp4v_bytes'] / 1e6:.2f} MB "
          f"({mp4['opencv_mp4v_bytes'] / mp4['input_bytes']:.2f}x the input).\n")
    print_webm(webm, args.webm_seconds)
    return 0


def print_webm(rows: list[dict[str, Any]], seconds: int) -> None:
    print(f"| WebM encoder | {seconds} s of 720p: MB | PSNR dB | encode s | fps |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['encoder']} | {row['bytes'] / 1e6:.2f} | {row['psnr_db']} | {row['encode_s']} | {row['fps']} |")


if __name__ == "__main__":
    raise SystemExit(main())
