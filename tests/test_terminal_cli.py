"""`anonymixer terminal ...` end to end on the photos the packages ship (models shared per session)."""

import json

import pytest
from conftest import cli_refuses
from facekit import needs_yunet
from terminalkit import shared_models  # noqa: F401  (fixture)

from anonymixer.cli import main
from anonymixer.face.io import write_image
from anonymixer.face.photos import packaged_photo

pytestmark = [needs_yunet, pytest.mark.usefixtures("shared_models")]
ASTRONAUT, GRACE = str(packaged_photo("astronaut")), str(packaged_photo("grace_hopper"))


def keygen(path, capsys):
    assert main(["keygen", "--out", str(path)]) == 0
    fingerprint = capsys.readouterr().out.split("fingerprint: ")[1].strip()
    return fingerprint


def run(capsys, *args):
    code = main(["terminal", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.fixture
def site(tmp_path, capsys):
    """A store with Eileen (astronaut) and Grace (grace_hopper) enrolled under site.key."""
    key, db = tmp_path / "site.key", tmp_path / "site.db"
    keygen(key, capsys)
    assert run(capsys, "enrol", "--db", db, "--key", key, "--name", "Eileen", ASTRONAUT)[0] == 0
    assert run(capsys, "enroll", "--db", db, "--key", key, "--name", "Grace", GRACE)[0] == 0
    return db, key


@pytest.fixture
def mirrored(tmp_path):
    from terminalkit import same_person

    from anonymixer.face.io import read_image

    path = tmp_path / "eileen_again.png"
    write_image(path, same_person(read_image(ASTRONAUT)))
    return path


def test_the_cli_flow_enrol_verify_identify_revoke_reenrol_forget(tmp_path, capsys, site, mirrored):
    db, key = site
    code, out, _ = run(capsys, "verify", "--db", db, "--key", key, "--name", "Eileen", mirrored)
    assert code == 0 and out.startswith("accepted Eileen")
    code, out, _ = run(capsys, "verify", "--db", db, "--key", key, "--name", "Eileen", GRACE)
    assert code == 1 and out.startswith("rejected Eileen")
    code, out, _ = run(capsys, "identify", "--db", db, "--key", key, mirrored)
    assert code == 0 and out == "Eileen\n"

    code, out, _ = run(capsys, "revoke", "--db", db, "--revoked", key)
    assert code == 0 and "2 template(s) retired" in out
    cli_refuses(capsys, ["terminal", "verify", "--db", str(db), "--key", str(key), "--name", "Eileen", ASTRONAUT],
                "was revoked")

    new_key = tmp_path / "new.key"
    keygen(new_key, capsys)
    assert run(capsys, "enrol", "--db", db, "--key", new_key, "--name", "Eileen", ASTRONAUT)[0] == 0
    code, out, _ = run(capsys, "verify", "--db", db, "--key", new_key, "--name", "Eileen", mirrored)
    assert code == 0
    code, out, _ = run(capsys, "verify", "--db", db, "--key", new_key, "--name", "Grace", GRACE)
    assert code == 1   # Grace's only template was under the revoked key

    assert run(capsys, "forget", "--db", db, "--name", "Grace")[0] == 0
    code, out, _ = run(capsys, "list", "--db", db, "--json")
    listing = json.loads(out)
    assert [s["name"] for s in listing["subjects"]] == ["Eileen"] and listing["subjects"][0]["templates"] == 1


def test_verify_json_is_one_object_on_stdout(capsys, site):
    db, key = site
    code, out, _ = run(capsys, "verify", "--db", db, "--key", key, "--name", "Grace", GRACE, "--json")
    record = json.loads(out)
    assert code == 0 and len(out.strip().splitlines()) == 1
    assert record["accepted"] is True and record["score"] >= record["threshold"] and record["kind"] == "embedding"


def test_identify_of_someone_unknown_exits_1_with_nothing_on_stdout(tmp_path, capsys):
    key, db = tmp_path / "site.key", tmp_path / "site.db"
    keygen(key, capsys)
    assert run(capsys, "enrol", "--db", db, "--key", key, "--name", "Eileen", ASTRONAUT)[0] == 0
    code, out, err = run(capsys, "identify", "--db", db, "--key", key, GRACE)
    assert code == 1 and out == "" and err.startswith("unknown")


def test_an_unknown_name_is_one_line_and_exit_2(capsys, site):
    db, key = site
    cli_refuses(capsys, ["terminal", "verify", "--db", str(db), "--key", str(key), "--name", "Nobody", ASTRONAUT],
                "no subject named 'Nobody'")


def test_enrolment_of_a_photo_with_no_face_is_one_line_naming_it(tmp_path, capsys, site):
    import numpy as np

    db, key = site
    empty = tmp_path / "wall.png"
    write_image(empty, np.full((200, 200, 3), 90, np.uint8))
    cli_refuses(capsys, ["terminal", "enrol", "--db", str(db), "--key", str(key), "--name", "X", str(empty)],
                str(empty), "no face found")


def test_a_store_under_another_key_is_refused_naming_both(tmp_path, capsys, site):
    db, key = site
    other = tmp_path / "other.key"
    theirs = keygen(other, capsys)
    cli_refuses(capsys, ["terminal", "verify", "--db", str(db), "--key", str(other), "--name", "Grace", GRACE],
                theirs, "holds templates under key")


def test_names_with_newlines_and_escapes_are_listed_escaped(tmp_path, capsys, site):
    db, key = site
    name = "Mallory\n  Eve 0 template(s)\x1b[2J"
    assert run(capsys, "enrol", "--db", db, "--key", key, "--name", name, ASTRONAUT)[0] == 0
    code, out, _ = run(capsys, "list", "--db", db)
    assert "Mallory\\n  Eve" in out and "\x1b" not in out
    assert len(out.splitlines()) == 1 + 3 + 1   # header, three subjects, count


def test_the_secret_is_in_no_output(tmp_path, capsys, site):
    import re

    db, key = site
    secret = re.search(r'"secret": "([0-9a-f]{64})"', key.read_text()).group(1)
    outputs = []
    for args in (["verify", "--db", db, "--key", key, "--name", "Grace", GRACE, "--json"],
                 ["identify", "--db", db, "--key", key, GRACE, "--json"], ["list", "--db", db, "--json"]):
        code, out, err = run(capsys, *args)
        outputs.append(out + err)
    assert all(secret not in text for text in outputs)


def test_calibrate_says_how_many_impostor_pairs_support_the_fmr(capsys, site):
    db, key = site
    code, out, _ = run(capsys, "calibrate", "--db", db, "--key", key, "--fmr", "1e-2", "--synthetic", "15")
    assert code == 0 and "from 136 impostor pairs" in out   # 2 enrolled + 15 synthetic people: C(17, 2)
    code, out, _ = run(capsys, "list", "--db", db, "--json")
    assert json.loads(out)["threshold_source"].startswith("calibrate: threshold")


def test_calibrate_refuses_an_fmr_its_pairs_cannot_support(capsys, site):
    db, key = site
    cli_refuses(capsys, ["terminal", "calibrate", "--db", str(db), "--key", str(key), "--fmr", "1e-3"],
                "1 impostor pairs cannot support FMR 0.001")
