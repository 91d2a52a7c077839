"""`anonymixer protect --ray` on a real local Ray instance (2 CPUs, no dashboard), against one process.

The archive: 27 small photos with faces, 3 bad files (empty, truncated, not an image) and 2 short
videos. Ray tests are marked ``ray``: ``pytest -m "not ray"`` leaves them out.
"""

import base64
import contextlib
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from facekit import needs_yunet, photo, read_video, write_video

from anonymixer.cli import main

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'anonymixer[ray]'")

pytestmark = [pytest.mark.ray, needs_yunet]

FAULT_ENV = "ANONYMIXER_RAY_FAULT_AFTER_FRAMES"


def make_archive(root: Path) -> Path:
    """27 photos (160x160, two people, shifted and brightened), 3 bad files, 2 videos of 6 frames."""
    root.mkdir(parents=True)
    faces = [cv2.resize(photo("astronaut"), (160, 160), interpolation=cv2.INTER_AREA),
             cv2.resize(photo("grace_hopper")[44:556], (160, 160), interpolation=cv2.INTER_AREA)]
    for i in range(27):
        image = np.roll(faces[i % 2], i, axis=1).astype(int) + (i * 3 % 30) - 15
        cv2.imwrite(str(root / f"p{i:02d}.png"), np.clip(image, 0, 255).astype(np.uint8))
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("not a photo")
    ok, data = cv2.imencode(".jpg", faces[0])
    (root / "cut.jpg").write_bytes(data.tobytes()[: len(data) * 9 // 10])
    frame = cv2.resize(photo("astronaut"), (192, 144), interpolation=cv2.INTER_AREA)
    write_video(root / "v1.avi", [np.roll(frame, s, axis=1) for s in range(0, 12, 2)], fps=10)
    write_video(root / "v2.avi", [np.roll(frame, -s, axis=1) for s in range(0, 12, 2)], fps=10)
    return root


def run(*argv):
    """``anonymixer ARGV`` in this process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def report_lines(printed):
    """The printed lines minus what depends on timing, on the pool or on the output folder (``in 12.3 s``,
    per-frame ms, ``ray:``, ``report: OUT/report.json``) and Ray's own messages (``(raylet) ... the task will be retried``)."""
    lines = []
    for line in printed.splitlines():
        if line.startswith(("per frame:", "ray:", "report:")) or "(raylet)" in line:
            continue
        lines.append(re.sub(r" in [0-9.]+ s$", "", line))
    return lines


def start_ray():
    """``ray.init(num_cpus=2, include_dashboard=False)``, tried 3 times: Ray gives its raylet 30 s
    to start, which a loaded 2-core machine does not always manage."""
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            return
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise


def tree(folder: Path):
    """The protected outputs under ``folder`` (the run's report.json aside)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "report.json")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive") / "in")


@pytest.fixture(scope="module")
def secret_key(tmp_path_factory):
    """A key file, and its secret bytes (to look for them where they must not be)."""
    path = tmp_path_factory.mktemp("key") / "site.key"
    run("keygen", "--out", path)
    return path, bytes.fromhex(json.loads(path.read_text())["secret"])


@pytest.fixture(scope="module")
def single(archive, secret_key, tmp_path_factory):
    """The reference: one process, one thread (a Ray actor with 1 CPU runs one thread; PyTorch's CPU
    results change in the last bit with the thread count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("single") / "out"
        code, printed = run("protect", archive, "--key", secret_key[0], "--model", "random:tiny", "--out", out)
    finally:
        torch.set_num_threads(threads)
    return code, printed, out


@pytest.fixture(scope="module")
def ray_session():
    """A real local Ray instance; yields its session folder (logs, sockets, spilled objects)."""
    start_ray()
    try:
        yield Path(ray._private.worker._global_node.get_session_dir_path())
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def on_ray(ray_session, archive, secret_key, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "out"
    code, printed = run("protect", archive, "--key", secret_key[0], "--model", "random:tiny", "--out", out,
                        "--ray", "--ray-actors", 2, "--ray-batch", 6)
    return code, printed, out


@pytest.fixture(scope="module")
def with_a_fault(ray_session, archive, secret_key, tmp_path_factory):
    """Actor 0 exits (os._exit) on its 3rd frame: in the middle of the first video, 2 frames written."""
    out = tmp_path_factory.mktemp("fault") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FAULT_ENV, "3")
        code, printed = run("protect", archive, "--key", secret_key[0], "--model", "random:tiny", "--out", out,
                            "--ray", "--ray-actors", 2, "--ray-batch", 6)
    return code, printed, out


def test_ray_writes_byte_identical_outputs_with_the_same_report_and_exit_code(single, on_ray):
    code, printed, out = single
    ray_code, ray_printed, ray_out = on_ray
    assert code == ray_code == 1  # 3 bad files
    assert int(re.search(r"(\d+) face\(s\) protected", printed).group(1)) >= 27 + 12  # every face protected
    assert "ray: 2 actor(s)" in ray_printed
    assert report_lines(ray_printed) == report_lines(printed)
    assert tree(ray_out) == tree(out) and len(tree(out)) == 29  # 27 photos + 2 videos
    for name in tree(out):
        if name.endswith(".png"):
            assert (ray_out / name).read_bytes() == (out / name).read_bytes(), name
        else:   # libx264 is not bit-reproducible on a busy machine: encoder noise is a mean of 0.05-0.13
            # levels (measured on a 320x240 clip, tests/test_face_inflight.py); a different face is levels
            assert all(np.abs(a.astype(int) - b.astype(int)).mean() < 0.5
                       for a, b in zip(read_video(ray_out / name)[0], read_video(out / name)[0], strict=True))


def test_the_bad_files_are_named_one_line_each_and_the_rest_finish(on_ray):
    code, printed, out = on_ray
    failures = [line.strip() for line in printed.splitlines() if line.startswith("  ")]
    assert [Path(line.split(":")[0]).name for line in failures] == ["cut.jpg", "empty.png", "notes.jpg"]
    assert "29 output(s) written" in printed


def test_a_killed_actor_is_restarted_and_every_file_completes_once(single, with_a_fault, ray_session):
    code, printed, out = single
    fault_code, fault_printed, fault_out = with_a_fault
    logs = "".join(p.read_text(errors="replace") for p in (ray_session / "logs").glob("worker-*.err"))
    assert "injected fault: actor 0 exits at frame 3" in logs  # the fault did happen
    assert fault_code == code
    assert "will be retried" in fault_printed  # Ray says so
    assert report_lines(fault_printed) == report_lines(printed)  # each output counted once, same lines
    assert tree(fault_out) == tree(out)  # no partial or temporary file left anywhere
    for name in tree(out):
        if name.endswith(".png"):
            assert (fault_out / name).read_bytes() == (out / name).read_bytes(), name
    for name in ("v1.avi", "v2.avi"):
        assert len(read_video(fault_out / name)[0]) == 6


def test_the_secret_is_nowhere_in_rays_session_folder(secret_key, on_ray, with_a_fault, ray_session):
    secret = secret_key[1]
    needles = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for shift in range(3):  # base64 of the secret at any alignment inside a longer base64 text
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + secret)
            needles.add(text[4 if shift else 0:-4])
    searched = 0
    for path in ray_session.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            searched += 1
            assert not any(needle in data for needle in needles), f"the secret is in {path}"
    assert searched > 10  # logs were there to search
    assert secret.hex() not in on_ray[1] + with_a_fault[1]


def test_a_call_that_fails_for_good_names_each_of_its_inputs_and_the_rest_finish(ray_session, archive, secret_key,
                                                                                 tmp_path, monkeypatch):
    """No restarts: actor 0 dies on its 1st photo, so in its first call, which it always gets (a later
    frame may never reach it: the faster actor takes the free calls). That call's 2 photos are one
    failure line each and neither is written."""
    import argparse

    from anonymixer.cli import build_parser
    from anonymixer.cluster import ClusterOptions, protect_on_cluster
    from anonymixer.face.sources import expand_sources
    from anonymixer.keys import load_key

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        (photos / f"p{i:02d}.png").write_bytes((archive / f"p{i:02d}.png").read_bytes())
    settings: argparse.Namespace = build_parser().parse_args(
        ["protect", str(photos), "--key", str(secret_key[0]), "--model", "random:tiny"])
    monkeypatch.setenv(FAULT_ENV, "1")
    report = protect_on_cluster(settings, load_key(secret_key[0]), expand_sources([str(photos)]).sources,
                                tmp_path / "out",
                                ClusterOptions(actors=2, batch=2, max_restarts=0))
    lost = [line for line in report.failures if "not protected: its Ray actor died" in line]
    assert len(lost) == 2 and report.failed_inputs == 2 and len(report.written) == 6
    for i in range(8):
        name = f"p{i:02d}.png"
        assert (tmp_path / "out" / name).exists() == (not any(name in line for line in lost)), name
    assert [outcome.failed for outcome in report.outcomes].count(True) == 2


def test_a_video_whose_call_fails_for_good_leaves_nothing_under_its_name(ray_session, archive, secret_key,
                                                                         tmp_path, monkeypatch):
    """No restarts: actor 0 dies on the 3rd frame of its video, 2 frames already encoded. That video is
    one failure line, no file has its final name, and its hidden partial file is gone; the other
    video is complete."""
    import argparse

    from anonymixer.cli import build_parser
    from anonymixer.cluster import ClusterOptions, protect_on_cluster
    from anonymixer.face.sources import expand_sources
    from anonymixer.keys import load_key

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v1.avi", "v2.avi"):
        (videos / name).write_bytes((archive / name).read_bytes())
    settings: argparse.Namespace = build_parser().parse_args(
        ["protect", str(videos), "--key", str(secret_key[0]), "--model", "random:tiny"])
    monkeypatch.setenv(FAULT_ENV, "3")
    out = tmp_path / "out"
    report = protect_on_cluster(settings, load_key(secret_key[0]), expand_sources([str(videos)]).sources, out,
                                ClusterOptions(actors=2, batch=2, max_restarts=0))
    lost = [line for line in report.failures if "not protected: its Ray actor died" in line]
    assert len(lost) == 1 and report.failed_inputs == 1 and len(report.written) == 1
    lost_name = "v1.avi" if "v1.avi" in lost[0] else "v2.avi"
    kept_name = {"v1.avi", "v2.avi"}.difference({lost_name}).pop()
    assert tree(out) == [kept_name]  # neither the lost video's name nor any hidden partial file
    assert len(read_video(out / kept_name)[0]) == 6
