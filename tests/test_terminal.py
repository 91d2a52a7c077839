"""The access terminal's facade on a real store, detector and recogniser (embedding kind, sface)."""

import sqlite3

import numpy as np
import pytest
from facekit import needs_yunet, photo, two_photo_frame
from terminalkit import blank, same_person, shared_models  # noqa: F401  (fixture)

from anonymixer.errors import FaceCountError, StoreMismatch, TerminalError, UnknownSubject
from anonymixer.terminal import Terminal

pytestmark = [needs_yunet, pytest.mark.usefixtures("shared_models")]
MODEL = "faces64"   # real weights, and the fastest generator: the embedding kind uses it for display only


def opened(tmp_path, key, **options):
    options.setdefault("model", MODEL)
    return Terminal.open(tmp_path / "site.db", key, **options)


@pytest.fixture
def terminal(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        terminal.enrol("Grace", [photo("grace_hopper")])
        yield terminal


def test_a_new_store_starts_from_the_measured_threshold_not_the_recognisers(terminal):
    info = terminal.info()
    assert "measured default at FMR 0.001" in info["threshold_source"]
    assert float(info["threshold"]) != pytest.approx(0.363)   # sface's stock cosine threshold


def test_verify_accepts_another_photo_of_the_person_and_rejects_someone_else(terminal):
    same = terminal.verify("Eileen", same_person(photo("astronaut")))
    other = terminal.verify("Eileen", photo("grace_hopper"))
    assert same.accepted and same.score >= same.threshold and same.name == "Eileen"
    assert not other.accepted and other.score < other.threshold


def test_identify_names_the_best_match_and_lists_candidates(terminal):
    decision = terminal.identify(same_person(photo("grace_hopper")))
    assert decision.accepted and decision.name == "Grace"
    assert [name for name, _ in decision.candidates] == ["Grace", "Eileen"]


def test_identify_of_someone_not_enrolled_is_rejected_without_a_name(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        decision = terminal.identify(photo("grace_hopper"))
    assert not decision.accepted and decision.name is None


def test_enrolment_refuses_a_photo_with_two_faces_in_one_line(tmp_path, key):
    with opened(tmp_path, key) as terminal, pytest.raises(FaceCountError) as info:
        terminal.enrol("Both", [two_photo_frame()], labels=["two.jpg"])
    assert "two.jpg: 2 faces found" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_enrolment_refuses_a_photo_without_a_face_and_stores_nothing(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        with pytest.raises(FaceCountError, match="no face found"):
            terminal.enrol("Nobody", [photo("astronaut"), blank()])
        assert terminal.subjects() == []
        assert terminal.audit(1)[0].outcome == "refused"


def test_verify_uses_the_largest_face(terminal):
    frame = two_photo_frame()   # astronaut | grace_hopper: Grace's face is the larger one
    assert terminal.verify("Grace", frame).accepted
    assert not terminal.verify("Eileen", frame).accepted


def test_an_unknown_name_is_one_line(terminal):
    with pytest.raises(UnknownSubject) as info:
        terminal.verify("Nobody", photo("astronaut"))
    assert "no subject named 'Nobody'" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_a_store_under_another_key_is_refused_naming_both_keys(tmp_path, key, other_key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
    with pytest.raises(StoreMismatch) as info:
        opened(tmp_path, other_key)
    assert key.fingerprint in str(info.value) and other_key.fingerprint in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_store_of_another_kind_is_refused_naming_both_kinds(tmp_path, key):
    opened(tmp_path, key).close()
    with pytest.raises(StoreMismatch, match="kind embedding, not face"):
        opened(tmp_path, key, kind="face")


def test_a_store_under_another_model_is_refused_naming_both(tmp_path, key, reuse_tiny_model):
    opened(tmp_path, key).close()
    with pytest.raises(StoreMismatch, match="model id faces64, not random:tiny@0"):
        opened(tmp_path, key, model="random:tiny")


def test_revoked_templates_never_match_and_the_same_names_enrol_under_a_new_key(tmp_path, key, other_key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        assert terminal.revoke(key.fingerprint) == 1
        decision = terminal.verify("Eileen", photo("astronaut"))   # the very photo that was enrolled
        assert not decision.accepted
    with pytest.raises(StoreMismatch, match="was revoked"):
        opened(tmp_path, key)
    with opened(tmp_path, other_key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        assert terminal.verify("Eileen", same_person(photo("astronaut"))).accepted
        assert terminal.subjects()[0].templates == 1


def test_forget_erases_the_subject_and_its_name_from_the_audit(terminal):
    assert terminal.forget("Grace") == 1
    assert [s.name for s in terminal.subjects()] == ["Eileen"]
    assert all(row.subject != "Grace" for row in terminal.audit(1000))
    with pytest.raises(UnknownSubject):
        terminal.verify("Grace", photo("grace_hopper"))


@pytest.mark.parametrize("name", ["O'Brien \"Bob\"", "x'); DROP TABLE templates; --", "Zoë 山田",
                                  "line one\nline two\x1b[31m"])
def test_names_are_stored_literally(tmp_path, key, name):
    with opened(tmp_path, key) as terminal:
        terminal.enrol(name, [photo("astronaut")])
        assert [s.name for s in terminal.subjects()] == [name]
        assert terminal.verify(name, photo("astronaut")).accepted


def test_the_secret_is_in_no_table_and_no_file_of_the_store(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        terminal.verify("Eileen", photo("astronaut"))
        tables = terminal.store.connection().execute(
            "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'").fetchone()[0].split(",")
        dump = "\n".join(terminal.store.connection().iterdump())
    secret = key._secret
    assert secret.hex() not in dump and tables
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert secret not in data and secret.hex().encode() not in data, path


def test_a_file_that_is_not_a_store_is_refused_in_one_line(tmp_path, key):
    path = tmp_path / "site.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(TerminalError, match="not a template store"):
        Terminal.open(path, key, model=MODEL)


def test_a_store_of_a_newer_schema_is_refused(tmp_path, key):
    opened(tmp_path, key).close()
    with sqlite3.connect(tmp_path / "site.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(TerminalError, match="schema version 99"):
        opened(tmp_path, key)


def test_the_store_uses_wal_foreign_keys_and_secure_delete(terminal):
    conn = terminal.store.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_store_operations_work_without_the_key(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
    with Terminal.open(tmp_path / "site.db") as store_only:
        assert [s.name for s in store_only.subjects()] == ["Eileen"]
        with pytest.raises(TerminalError, match="needs the site key"):
            store_only.verify("Eileen", photo("astronaut"))


def test_templates_are_unit_vectors_and_not_the_recognisers_embedding(tmp_path, key):
    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
        vector = terminal.store.gallery(key.fingerprint).vectors[0]
        maker = terminal.maker
        image = photo("astronaut")
        face = maker.probe_face(image, "probe")
        raw = maker.fr.embed(maker.fr.align(image, face.landmarks)[None])[0]
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(vector @ raw) / np.linalg.norm(raw)) < 0.5


KILLED_ENROLMENT = """
import os, signal, sys
from anonymixer.face.io import read_image
from anonymixer.face.photos import packaged_photo
from anonymixer.keys import Key
from anonymixer.terminal import Terminal
from anonymixer.terminal.store import Store

real = Store.add_templates
def add_then_die(conn, *args, **kwargs):
    real(conn, *args, **kwargs)          # the rows are written, the transaction is not committed
    os.kill(os.getpid(), signal.SIGKILL)
Store.add_templates = staticmethod(add_then_die)
terminal = Terminal.open(sys.argv[1], Key(bytes(range(32))), model="faces64")
image = read_image(packaged_photo("astronaut"))
terminal.enrol("Half", [image, image])
"""


def test_kill_9_during_an_enrolment_leaves_no_half_template(tmp_path, key):
    import os
    import signal
    import subprocess
    import sys

    with opened(tmp_path, key) as terminal:
        terminal.enrol("Eileen", [photo("astronaut")])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", KILLED_ENROLMENT, str(tmp_path / "site.db")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr
    with Terminal.open(tmp_path / "site.db") as terminal:
        conn = terminal.store.connection()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [s.name for s in terminal.subjects()] == ["Eileen"]
        assert conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 1


def test_an_uploaded_file_that_is_not_an_image_is_one_line_naming_it():
    from anonymixer.errors import InputImageError
    from anonymixer.terminal import read_image_bytes

    with pytest.raises(InputImageError) as info:
        read_image_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "upload.png")
    assert str(info.value).startswith("upload.png: ") and len(str(info.value).splitlines()) == 1


def test_an_uploaded_photo_reads_as_the_file_does():
    from anonymixer.face.photos import packaged_photo
    from anonymixer.terminal import read_image_bytes

    data = packaged_photo("grace_hopper").read_bytes()
    assert np.array_equal(read_image_bytes(data, "grace.jpg"), photo("grace_hopper"))


def test_one_terminal_serves_several_threads_and_loses_no_audit_row(terminal):
    from concurrent.futures import ThreadPoolExecutor

    probes = [photo("astronaut"), photo("grace_hopper")] * 4
    before = len(terminal.audit(10_000))
    with ThreadPoolExecutor(4) as pool:
        decisions = list(pool.map(lambda image: terminal.verify("Eileen", image), probes))
    assert [d.accepted for d in decisions] == [True, False] * 4
    assert len(terminal.audit(10_000)) == before + len(probes)


def test_every_shipped_threshold_names_templates_the_terminal_makes():
    from anonymixer.terminal.templates import KINDS, template_version
    from anonymixer.terminal.thresholds import MEASURED

    made = {template_version("face", None), template_version("embedding", 64)}
    assert MEASURED and all(row.kind in KINDS and row.template in made and row.fmr == 1e-3 for row in MEASURED)
    assert {(row.kind, row.recogniser) for row in MEASURED} == {(k, fr) for k in KINDS for fr in ("sface", "dlib")}


def test_calibration_refuses_fewer_impostor_pairs_than_the_fmr_needs():
    from anonymixer.terminal.thresholds import calibrate

    with pytest.raises(TerminalError, match="999 impostor pairs cannot support FMR 0.001: at least 1000"):
        calibrate(np.zeros(999), 1e-3, "test")
    assert calibrate(np.linspace(0, 1, 1000), 1e-3, "test").measured_fmr <= 1e-3
