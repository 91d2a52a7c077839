"""Video files through FFmpeg (PyAV): audio copied packet for packet, H.264 out, the input's own frame
times (variable frame rate kept, and given to the smoother), frames upright by the rotation tag,
the container family kept. Clips are made here with PyAV."""

import av
import numpy as np
import pytest
from clipkit import describe, face_frames, frame_times, make_clip, packets
from facekit import failure_lines, needs_yunet, no_traceback, protect

from anonymixer.face.detect import YuNetDetector
from anonymixer.face.track import LandmarkSmoother
from anonymixer.face.video import ENCODERS, upright

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]

STEADY = [i / 10 for i in range(6)]
VFR = [0.0, 0.2, 0.4, 1.2, 1.3, 2.5]   # a phone's frames: bursts and pauses


def test_audio_is_copied_packet_for_packet_and_the_video_is_h264(tmp_path, key_file, capsys):
    clip = make_clip(tmp_path / "talk.mp4", face_frames(6), STEADY, audio="aac")
    assert protect([clip], key_file, tmp_path / "out") == 0
    out = tmp_path / "out" / "talk.mp4"
    assert packets(out, "audio") == packets(clip, "audio") and packets(clip, "audio")
    before, after = describe(clip), describe(out)
    assert after["video"] == "h264" and after["format"] == before["format"]
    assert abs(after["duration"] - before["duration"]) <= 0.1   # one frame at 10 fps
    assert "audio kept: voices are not protected" in no_traceback(capsys).out


def test_no_audio_leaves_no_audio_stream(tmp_path, key_file, capsys):
    clip = make_clip(tmp_path / "talk.mp4", face_frames(4), STEADY[:4], audio="aac")
    assert protect([clip], key_file, tmp_path / "out", "--no-audio") == 0
    assert describe(tmp_path / "out" / "talk.mp4")["streams"] == ["video"]
    assert "audio kept" not in no_traceback(capsys).out


def test_subtitles_are_copied_unchanged(tmp_path, key_file):
    clip = make_clip(tmp_path / "film.mkv", face_frames(4), STEADY[:4], audio="libopus", subtitles=True)
    assert protect([clip], key_file, tmp_path / "out") == 0
    assert packets(tmp_path / "out" / "film.mkv", "subtitle") == packets(clip, "subtitle") == [(100, b"hello")]


def test_a_variable_frame_rate_clip_keeps_its_frame_times_and_the_smoother_sees_them(tmp_path, key_file,
                                                                                    monkeypatch):
    clip = make_clip(tmp_path / "phone.mp4", face_frames(len(VFR)), VFR)
    seen = []
    real = LandmarkSmoother.update
    monkeypatch.setattr(LandmarkSmoother, "update", lambda self, faces, time: seen.append(time) or real(self, faces, time))
    assert protect([clip], key_file, tmp_path / "out") == 0
    assert frame_times(tmp_path / "out" / "phone.mp4") == pytest.approx(VFR, abs=1e-3) == frame_times(clip)
    assert seen == pytest.approx(VFR, abs=1e-3)


def test_a_rotation_tagged_clip_is_protected_upright(tmp_path, key_file, capsys, monkeypatch):
    upright_frames = face_frames(4)
    stored = [np.ascontiguousarray(np.rot90(frame, -1)) for frame in upright_frames]   # a phone held sideways
    clip = make_clip(tmp_path / "phone.mp4", stored, STEADY[:4], rotation=90)
    shapes = []
    real = YuNetDetector.detect
    monkeypatch.setattr(YuNetDetector, "detect", lambda self, image: shapes.append(image.shape) or real(self, image))
    assert protect([clip], key_file, tmp_path / "out") == 0
    assert "4 face(s) protected, 0 masked" in no_traceback(capsys).out
    from anonymixer.face.search import ORIENT_PX

    # the frames the detector sees are upright (besides each face's small window: search.orientation)
    assert set(shapes) - {(ORIENT_PX, ORIENT_PX, 3)} == {upright_frames[0].shape}
    assert describe(tmp_path / "out" / "phone.mp4")["size"] == (320, 240)


@pytest.mark.parametrize("matrix_angle, flip", [(90, False), (180, False), (270, False), (0, True), (90, True)])
def test_upright_undoes_each_display_matrix_as_ffmpeg_defines_it(matrix_angle, flip):
    image = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)
    # FFmpeg's matrix: x' = a x + c y, y' = b x + d y (16.16), for a counter-clockwise turn, then a mirror.
    a, b, c, d = {0: (1, 0, 0, 1), 90: (0, -1, 1, 0), 180: (-1, 0, 0, -1), 270: (0, 1, -1, 0)}[matrix_angle]
    if flip:
        a, c = -a, -c
    matrix = np.array([a, b, 0, c, d, 0, 0, 0, 1 << 30], np.int32) * np.array([65536] * 6 + [1] * 3, np.int32)
    expected = np.rot90(image, matrix_angle // 90)
    expected = expected[:, ::-1] if flip else expected
    assert np.array_equal(upright(image, matrix), expected)


@pytest.mark.parametrize("suffix, codec, video, marker", [
    (".webm", "libvpx-vp9", "vp9", b"webm"),
    (".mkv", "libx264", "h264", b"matroska"),
    (".mov", "libx264", "h264", b"ftypqt  "),
])
def test_webm_mkv_and_mov_inputs_keep_their_container_family(tmp_path, key_file, suffix, codec, video, marker):
    clip = make_clip(tmp_path / f"clip{suffix}", face_frames(3), STEADY[:3], codec=codec)
    assert protect([clip], key_file, tmp_path / "out") == 0
    out = tmp_path / "out" / f"clip{suffix}"
    assert describe(out)["video"] == video
    assert marker in out.read_bytes()[:64]


def test_a_container_that_cannot_hold_h264_becomes_matroska_and_says_so(tmp_path, key_file, capsys):
    clip = tmp_path / "old.mpg"
    with av.open(str(clip), "w", format="mpeg") as out:
        stream = out.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index, frame in enumerate(face_frames(3)):
            picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
            picture.pts = index
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert protect([clip], key_file, tmp_path / "out") == 0
    assert describe(tmp_path / "out" / "old.mkv")["video"] == "h264"
    assert "written as old.mkv" in no_traceback(capsys).out


def test_an_ffmpeg_without_the_encoder_is_one_line_naming_the_file_and_the_encoder(tmp_path, key_file, capsys,
                                                                                  monkeypatch):
    monkeypatch.setitem(ENCODERS, "h264", ("libx264-not-in-this-build", {}))
    clip = make_clip(tmp_path / "talk.mp4", face_frames(2), STEADY[:2])
    assert protect([clip], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "talk.mp4" in lines[0] and "no libx264-not-in-this-build encoder" in lines[0], lines
    assert not (tmp_path / "out" / "talk.mp4").exists()


def test_a_video_cut_short_keeps_its_audio_up_to_the_end_of_its_last_frame(tmp_path, key_file):
    clip = make_clip(tmp_path / "talk.mp4", face_frames(6), STEADY, audio="aac")
    assert protect([clip], key_file, tmp_path / "out", "--max-frames", "3") == 0
    out = describe(tmp_path / "out" / "talk.mp4")
    assert out["audio"] == "aac" and abs(out["duration"] - 0.3) <= 0.1, out   # 3 frames at 10 fps


def test_an_odd_sized_video_gets_one_copied_row_and_column(tmp_path, key_file):
    frames = [np.ascontiguousarray(frame[:239, :319]) for frame in face_frames(3)]
    clip = make_clip(tmp_path / "odd.mkv", frames, STEADY[:3], codec="ffv1", pix_fmt="bgr0")   # lossless, odd sides
    assert describe(clip)["size"] == (319, 239)
    assert protect([clip], key_file, tmp_path / "out") == 0
    assert describe(tmp_path / "out" / "odd.mkv")["size"] == (320, 240)


@pytest.mark.parametrize("rotation", [0, 90])
def test_decoded_frames_are_freed_as_they_go_not_left_to_the_cyclic_collector(tmp_path, rotation):
    """Reading each frame's rotation tag (PyAV's side_data) tied every decoded frame in a reference cycle:
    with Python's cyclic collector counting objects, not bytes, hundreds of frames waited for it (a 640x480
    file grew 180 MB in 3,000 frames). Now no decoded frame outlives its turn."""
    import gc

    from anonymixer.face.sources import Source
    from anonymixer.face.video import VideoReader

    clip = make_clip(tmp_path / "long.mp4", face_frames(40), [i / 10 for i in range(40)], rotation=rotation)
    reader = VideoReader(Source("video", str(clip), clip.relative_to(tmp_path)))
    gc.collect()
    gc.disable()
    try:
        count = 0
        for image, _ in reader.frames():
            count += 1
            assert image.shape[:2] == ((320, 240) if rotation else (240, 320))
        waiting = sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())
    finally:
        gc.enable()
        reader.close()
    assert count == 40 and waiting <= 3   # the first frame (its tag is read) and those in the decoder; was 41-42
