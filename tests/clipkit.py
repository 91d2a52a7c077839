"""Small video clips made with PyAV for the video tests (no downloads), and ways to look inside one."""

from fractions import Fraction

import av
import cv2
import numpy as np
from facekit import photo

TIME_BASE = Fraction(1, 1000)


def face_frames(n, size=(320, 240)):
    """``n`` BGR frames of ``size`` (width, height): the astronaut moving right a little each time."""
    frame = cv2.resize(photo("astronaut"), size, interpolation=cv2.INTER_AREA)
    return [np.roll(frame, 3 * i, axis=1) for i in range(n)]


def make_clip(path, frames, times, *, codec="libx264", audio=None, subtitles=False, rotation=0, pix_fmt="yuv420p"):
    """Write ``frames`` (BGR) shown at ``times`` (s) to ``path`` (its suffix picks the container).

    ``audio``: an audio codec (``"aac"``, ``"libopus"``, ``"pcm_s16le"``) for a 440 Hz tone as
    long as the video plus one frame; ``subtitles``: one SRT subtitle line (Matroska); ``rotation``: the display matrix's counter-clockwise degrees (a phone's tag)."""
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=Fraction(round(len(times) / max(times[-1], 1e-3))) if len(times) > 1 else 10)
    video.width, video.height = frames[0].shape[1], frames[0].shape[0]
    video.pix_fmt = pix_fmt
    video.codec_context.time_base = TIME_BASE
    if rotation:
        video.set_display_rotation(rotation)
    sound = None
    if audio:
        sound = out.add_stream(audio, rate=48000)
        sound.layout = "mono"
    text = None
    if subtitles:   # SRT cues, copied from a .srt file as a demuxer hands them over (Matroska only)
        srt = path.with_suffix(".srt")
        srt.write_text("1\n00:00:00,100 --> 00:00:00,300\nhello\n\n")
        text = av.open(str(srt))
        subtitle_stream = out.add_stream_from_template(text.streams.subtitles[0])
    for frame, time_s in zip(frames, times, strict=True):
        picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
        picture.pts, picture.time_base = round(time_s / TIME_BASE), TIME_BASE
        for packet in video.encode(picture):
            out.mux(packet)
    for packet in video.encode(None):
        out.mux(packet)
    if sound is not None:
        _tone(out, sound, times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0.1))
    if text is not None:
        for packet in text.demux(text.streams.subtitles[0]):
            if packet.size:
                packet.stream = subtitle_stream
                out.mux(packet)
        text.close()
    out.close()
    return path


def _tone(out, stream, seconds):
    rate, size = 48000, 1024
    samples = np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate).astype(np.float32)
    fmt = stream.codec_context.format.name
    for start in range(0, len(samples), size):
        chunk = samples[start:start + size][None]
        if fmt == "s16":
            chunk = (chunk * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def packets(path, kind):
    """``[(pts, bytes)]`` of every non-empty packet of the first ``kind`` stream (``"audio"``...)."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return []
        return [(p.pts, bytes(p)) for p in container.demux(streams[0]) if p.size]


def frame_times(path):
    """Presentation times (s) of every decoded video frame."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def describe(path):
    """``{"format": ..., "video": codec name, "audio": codec or None, "duration": s, "size": (w, h)}``."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return {"format": container.format.name, "video": video.codec_context.name, "audio": audio,
                "duration": container.duration / av.time_base if container.duration else 0.0,
                "size": (video.codec_context.width, video.codec_context.height),
                "streams": [s.type for s in container.streams]}
