"""Which draw a face gets: the identity check is on by default, and in video the draw is chosen once per track."""

import time

import numpy as np
import pytest
from facekit import needs_dlib, needs_yunet, photo
from test_face_guard import BlobThenFaceProtector, SelfThenOtherProtector, grace_crop

from anonymixer.errors import RecognizerError
from anonymixer.face.detect import YuNetDetector
from anonymixer.face.identity import open_identity_check
from anonymixer.face.pipeline import FaceProtector
from anonymixer.face.track import LandmarkSmoother

pytestmark = needs_yunet


class BlobThenGraceProtector(BlobThenFaceProtector):
    """Its own draw is a blob (the guard turns it down); every other draw is Grace Hopper's face."""

    def protect(self, faces, key_feeds=None):
        self.calls.append(key_feeds is not None)
        if key_feeds is None:
            return np.full((len(faces), 64, 64, 3), 90, np.uint8)
        return np.stack([grace_crop()] * len(faces))


def counting(obj, name):
    """Wrap ``obj.name`` so that its calls are counted in the returned list."""
    calls, method = [], getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return method(*args, **kwargs)

    setattr(obj, name, wrapper)
    return calls


def video(face_protector, frames):
    """``frames`` frames of the astronaut, 1/30 s apart, through one track."""
    smoother, frame = LandmarkSmoother(), photo("astronaut")
    return [face_protector.process(frame, smoother, n / 30.0) for n in range(frames)]


@needs_dlib
def test_the_identity_check_is_on_by_default_where_dlib_is_installed():
    face_protector = FaceProtector(BlobThenFaceProtector(), YuNetDetector())
    assert face_protector.identity is not None and face_protector.identity.name == "dlib"
    assert FaceProtector(BlobThenFaceProtector(), YuNetDetector(), identity_check=False).identity is None


def test_without_dlib_the_identity_check_falls_back_to_sface(monkeypatch):
    from anonymixer.eval import fr

    def no_dlib(self):
        raise RecognizerError("the dlib FR system needs dlib")

    monkeypatch.setattr(fr.DlibRecognizer, "__init__", no_dlib)
    check = open_identity_check()
    assert check is not None and check.name == "sface"


def test_the_sface_check_masks_a_face_that_stays_its_original():
    result = FaceProtector(SelfThenOtherProtector(), YuNetDetector(), paste_style="no-guard",
                           identity_check="sface").process(photo("astronaut"))
    assert result.protected == 0 and result.masked == 1 and "SFace" in result.failures[0]


@needs_dlib
def test_a_track_keeps_the_draw_chosen_on_its_first_frame_without_checking_again():
    protector = BlobThenGraceProtector()
    face_protector = FaceProtector(protector, YuNetDetector())
    guard_calls = counting(face_protector.guard, "check")
    identity_calls = counting(face_protector.identity, "measure")
    results = video(face_protector, 5)
    assert all(r.protected == 1 for r in results)
    # frame 1: the key's own draw (a blob), then draw 1; frames 2-5: draw 1 straight away
    assert protector.calls == [False, True] + [True] * 4
    assert len(guard_calls) == 2 and len(identity_calls) == 1
    assert results[0].redrawn == 1 and all(r.redrawn == 0 and not r.notes for r in results[1:])


@needs_dlib
def test_a_tracks_draw_is_checked_by_the_recogniser_again_every_recheck_frames():
    face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector())
    face_protector.draws.recheck_frames = 3
    identity_calls = counting(face_protector.identity, "measure")
    video(face_protector, 7)
    assert len(identity_calls) == 3   # frames 1, 4 and 7


@needs_dlib
def test_a_track_whose_every_draw_stays_its_original_stays_masked_until_its_next_check():
    face_protector = FaceProtector(SelfThenOtherProtector(), YuNetDetector(), paste_style="no-guard")
    identity_calls = counting(face_protector.identity, "measure")
    results = video(face_protector, 3)
    assert [r.masked for r in results] == [1, 1, 1] and len(identity_calls) == 5   # five draws, on frame 1 only
    x, y, w, h = results[-1].faces[0].box.astype(int)
    assert not results[-1].frame[y:y + h, x:x + w].any()


@pytest.mark.parametrize("identity_check", [False, True])
def test_photos_are_decided_on_their_own(identity_check):
    """No track: each photo runs the guard again (nothing carried over from the one before)."""
    face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector(), identity_check=identity_check)
    guard_calls = counting(face_protector.guard, "check")
    for _ in range(2):
        face_protector.process(photo("astronaut"))
    assert len(guard_calls) == 4


@needs_dlib
def test_a_tracks_draw_gives_the_same_frames_whatever_the_frames_in_flight():
    """With frames in flight, a frame may be generated before its track chose a draw: paste-back then
    draws it itself, one face per call, as the networks' phase does once the track has chosen."""
    frame = photo("astronaut")
    outputs = []
    for inflight in (1, 3):
        face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector())
        results = face_protector.process_many(((frame, n / 30.0) for n in range(4)), inflight, LandmarkSmoother())
        outputs.append([r.frame for r in results])
    assert all(np.array_equal(a, b) for a, b in zip(*outputs, strict=True))


def test_the_guards_redraws_encode_the_face_once_and_give_what_protect_gives():
    """A face whose first draw the guard turns down (here every draw: the guard's YuNet is made to score
    each 0) gets its other draws from one encoder run (``Protector.encode``, then ``render`` per draw):
    the same bytes as ``protect`` with each draw's feeds, at half its cost per draw."""
    from dataclasses import replace

    from anonymixer.eval.protocols import eval_key
    from anonymixer.runtime import Protector

    with Protector("faces64", eval_key(0, "pasteback-58", "*")) as protector:
        face_protector = FaceProtector(protector, YuNetDetector(), identity_check=False)
        guard = face_protector.draws.guard
        check = guard.check
        guard.check = lambda face, turn=None: replace(check(face, turn), score=0.0)
        encodes, renders = counting(protector, "encode"), counting(protector, "render")
        result = face_protector.process(photo("grace_hopper"))
        assert result.redrawn == 1 and len(encodes) == 1 and len(renders) == face_protector.draws.count - 1
        crop = face_protector.prepare(photo("grace_hopper")).crops[0][0][None]
        feeds = face_protector.draws.feeds(2)
        assert np.array_equal(protector.render(protector.encode(crop), feeds), protector.protect(crop, feeds))


class FakeBackground:
    """``identity.BackgroundCheck``'s interface, in this process: each submitted check is answered, on the
    next poll, with ``measure``."""

    def __init__(self, measure):
        self.measure, self.submitted, self.alive, self._done = measure, [], True, []

    def submit(self, key, pairs):
        (original, _), (protected, _) = pairs
        assert original.shape == protected.shape and original.ndim == 3
        self.submitted.append(key)
        self._done.append(key)
        return True

    def poll(self):
        return (self._done.pop(0), self.measure) if self._done else None


def live_video(face_protector, frames):
    frame = photo("astronaut")
    return list(face_protector.process_many(((frame, n / 30.0) for n in range(frames)), 1, LandmarkSmoother(),
                                            live=True))


@needs_dlib
def test_a_live_tracks_re_check_goes_beside_the_pipeline_and_its_frames_go_on():
    """A camera's re-check held every thread up (dlib keeps Python's GIL): the recording froze at each.
    A live track's re-check is sent to the background check; the frame is pasted with the track's draw."""
    face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector())
    face_protector.draws.recheck_frames = 3
    background = face_protector.draws.background = FakeBackground(measure=1.0)   # far from the original: passes
    identity_calls = counting(face_protector.identity, "measure")
    results = live_video(face_protector, 7)
    assert all(r.protected == 1 for r in results)
    assert len(identity_calls) == 1                       # frame 1 chooses the draw, in line
    assert len(background.submitted) == 2                 # frames 4 and 7, beside
    assert all(not r.notes for r in results[1:])


@needs_dlib
def test_a_live_track_whose_re_check_finds_it_too_close_chooses_its_draw_afresh():
    face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector())
    face_protector.draws.recheck_frames = 3
    face_protector.draws.background = FakeBackground(measure=0.1)   # the recogniser takes it for the original
    identity_calls = counting(face_protector.identity, "measure")
    guard_calls = counting(face_protector.guard, "check")
    results = live_video(face_protector, 6)
    # frame 1 chooses in line; frame 4's re-check goes beside; frame 5 sees it fail and chooses again, in line
    assert len(identity_calls) >= 2 and len(guard_calls) >= 3
    assert any("re-check beside the pipeline found it too close" in note for note in results[4].notes)


@needs_dlib
def test_a_files_re_checks_stay_in_line_so_its_output_is_the_same_every_run():
    face_protector = FaceProtector(BlobThenGraceProtector(), YuNetDetector())
    face_protector.draws.recheck_frames = 3
    background = face_protector.draws.background = FakeBackground(measure=1.0)
    identity_calls = counting(face_protector.identity, "measure")
    frame = photo("astronaut")
    list(face_protector.process_many(((frame, n / 30.0) for n in range(7)), 1, LandmarkSmoother()))
    assert len(identity_calls) == 3 and background.submitted == []


@needs_dlib
def test_the_background_check_is_a_process_of_its_own_that_measures_as_the_check_does():
    from anonymixer.face.identity import BackgroundCheck, IdentityCheck, windows

    original = photo("astronaut")
    protected = original.copy()
    protected[150:250, 170:290] = 128   # the face's middle covered: far from the original
    landmarks = YuNetDetector().detect(original)[0].landmarks
    check = BackgroundCheck("dlib")
    try:
        assert check.alive and check.poll() is None
        assert check.submit("t", windows(original, protected, landmarks))
        assert not check.submit("u", windows(original, original, landmarks))   # one at a time
        deadline = time.monotonic() + 120
        while (done := check.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done is not None and done[0] == "t" and check.answered == 1
        assert done[1] == pytest.approx(IdentityCheck("dlib").measure(original, protected, landmarks), abs=1e-6)
    finally:
        check.close()
    assert not check.alive and check._process.poll() is not None   # the process is gone


def test_a_background_check_whose_process_is_gone_answers_failed_and_turns_itself_off():
    """A failed or missing process must not pass a face: its check is answered "failed" (the track then
    chooses afresh, in line) and later re-checks run in line (``alive`` False)."""
    from anonymixer.face.identity import BackgroundCheck

    check = BackgroundCheck("no-such-recogniser")   # the process cannot open it and ends
    frame = photo("astronaut")
    pairs = ((frame[:200, :200], np.zeros((5, 2))), (frame[:200, :200], np.zeros((5, 2))))
    try:
        sent = check.submit("t", pairs)
        deadline = time.monotonic() + 60
        done = None
        while sent and (done := check.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sent or done == ("t", None)
        assert not check.alive and not check.submit("u", pairs)
    finally:
        check.close()


@needs_dlib
def test_a_background_check_left_unanswered_too_long_counts_as_failed_and_is_stopped(monkeypatch):
    """A hung process would hold its check forever and no later re-check would run: past
    ``BACKGROUND_TIMEOUT_S`` the check is answered "failed" and the process stopped."""
    import os
    import signal

    from anonymixer.face import identity

    monkeypatch.setattr(identity, "BACKGROUND_TIMEOUT_S", 0.3)
    check = identity.BackgroundCheck("dlib")
    frame = photo("astronaut")
    landmarks = YuNetDetector().detect(frame)[0].landmarks
    try:
        os.kill(check._process.pid, signal.SIGSTOP)   # hung: alive, never answers
        assert check.submit("t", identity.windows(frame, frame, landmarks))
        assert check.poll() is None   # not yet too long
        time.sleep(0.5)
        assert check.poll() == ("t", None) and not check.alive
        check._process.wait(timeout=10)   # stopped
    finally:
        check.close()
