"""The terminal's HTTP service: token, limits, errors and decisions, over HTTP on 127.0.0.1."""

import contextlib
import os
import threading

import cv2
import pytest

pytest.importorskip("starlette", reason="the service needs the terminal extra: pip install 'anonymixer[terminal]'")

import httpx  # noqa: E402
from facekit import photo  # noqa: E402
from terminal_fake import FakeTerminal  # noqa: E402
from terminal_kit import AUTH, TOKEN, jpeg, serving  # noqa: E402

from anonymixer.terminal.guard import TokenFileError, load_token  # noqa: E402


@pytest.fixture
def terminal():
    return FakeTerminal()


@contextlib.contextmanager
def client_for(terminal, **options):
    with serving(terminal, **options) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture
def client(terminal):
    with client_for(terminal) as client:
        yield client


def enrol(client, name, image):
    return client.post("/v1/enrol", headers=AUTH, data={"name": name}, files={"image": ("p.jpg", jpeg(image))})


def verify(client, name, image, headers=AUTH):
    return client.post("/v1/verify", headers=headers, data={"name": name}, files={"image": ("p.jpg", jpeg(image))})


API = [("post", "/v1/enrol"), ("post", "/v1/verify"), ("post", "/v1/identify"), ("post", "/v1/revoke"),
       ("get", "/v1/subjects"), ("delete", "/v1/subjects/someone"), ("get", "/v1/subjects/someone/face"),
       ("get", "/v1/audit"), ("get", "/metrics")]


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("method,path", API)
def test_every_api_route_without_a_token_is_401_with_no_detail(client, method, path):
    response = client.request(method.upper(), path)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorised"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_wrong_token_is_401_and_audited_without_the_token(client, terminal):
    wrong = "not-the-token-but-a-guess-0123456789"
    response = client.get("/v1/subjects", headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    [row] = [r for r in terminal.audit() if r.action == "auth"]
    assert row.outcome == "refused" and "wrong token" in row.detail and "/v1/subjects" in row.detail
    assert wrong not in repr(terminal.audit()) and TOKEN not in repr(terminal.audit())


def test_verify_accepts_the_enrolled_person_and_rejects_another(client):
    assert enrol(client, "astronaut", photo("astronaut")).status_code == 201
    same = verify(client, "astronaut", cv2.flip(photo("astronaut"), 1)).json()
    other = verify(client, "astronaut", photo("grace_hopper")).json()
    assert same["accepted"] is True and same["score"] >= same["threshold"]
    assert other["accepted"] is False and other["score"] < other["threshold"]


def test_verify_of_an_unknown_name_is_404_in_one_line(client):
    response = verify(client, "nobody", photo("astronaut"))
    assert response.status_code == 404
    assert "nobody" in response.json()["error"] and "\n" not in response.json()["error"]


def test_a_declared_upload_over_the_limit_is_413(terminal):
    with client_for(terminal, max_upload_bytes=100_000) as client:
        response = client.post("/v1/verify", headers=AUTH, data={"name": "x"},
                               files={"image": ("big.jpg", b"\xff" * 200_000)})
    assert response.status_code == 413


def test_a_chunked_upload_over_the_limit_is_413(terminal):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
            + b"\xff" * 200_000 + b"\r\n--b--\r\n")
    with client_for(terminal, max_upload_bytes=100_000) as client:
        response = client.post("/v1/verify", content=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                               headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_a_broken_image_is_400_in_one_line_naming_the_upload(client, terminal):
    response = client.post("/v1/verify", headers=AUTH, data={"name": "x"},
                           files={"image": ("broken.jpg", jpeg(photo("astronaut"))[:300])})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "broken.jpg" in error and "\n" not in error
    assert terminal.audit()[0].outcome == "bad request"


def test_a_form_without_an_image_is_400(client):
    response = client.post("/v1/verify", headers=AUTH, data={"name": "x"})
    assert response.status_code == 400 and "image" in response.json()["error"]


def test_verify_beyond_the_rate_limit_is_429_with_retry_after(terminal):
    with client_for(terminal, verify_rate=0.01, verify_burst=2) as client:
        enrol(client, "astronaut", photo("astronaut"))
        responses = [verify(client, "astronaut", photo("astronaut")) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert int(responses[2].headers["retry-after"]) >= 1


def test_names_with_quotes_html_slashes_and_newlines_round_trip(client):
    name = "O'Brien \"<b>x</b>\" / ünï\ncode"
    assert enrol(client, name, photo("astronaut")).json()["name"] == name
    assert [s["name"] for s in client.get("/v1/subjects", headers=AUTH).json()["subjects"]] == [name]
    face = client.get(client.get("/v1/subjects", headers=AUTH).json()["subjects"][0]["face"], headers=AUTH)
    assert face.status_code == 200 and face.headers["content-type"] == "image/png"
    from urllib.parse import quote
    assert client.delete(f"/v1/subjects/{quote(name, safe='')}", headers=AUTH).json()["erased"] == 1
    assert client.get("/v1/subjects", headers=AUTH).json()["subjects"] == []


def test_metrics_are_prometheus_text_counting_requests(client):
    client.get("/v1/subjects", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert 'anonymixer_terminal_http_requests_total{method="GET",route="/v1/subjects",status="200"} 1.0' in text


def test_audit_limit_out_of_range_is_400(client):
    assert client.get("/v1/audit?limit=0", headers=AUTH).status_code == 400
    assert client.get("/v1/audit?limit=5", headers=AUTH).status_code == 200


def test_pages_and_answers_carry_a_content_security_policy(client):
    for response in (client.get("/"), client.get("/healthz"), client.get("/static/app.js")):
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_token_file_open_to_group_or_others_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        load_token(path)


def test_token_file_of_mode_0600_is_read_without_its_newline(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o600)
    assert load_token(path) == TOKEN.encode()


def test_concurrent_verifies_each_get_a_decision_and_an_audit_row(terminal):
    codes, lock = [], threading.Lock()
    with serving(terminal, verify_rate=0) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            enrol(client, "astronaut", photo("astronaut"))
        before = len(terminal.audit(10_000))

        def worker():
            with httpx.Client(base_url=url, timeout=60) as client:
                for _ in range(5):
                    code = verify(client, "astronaut", photo("astronaut")).status_code
                    with lock:
                        codes.append(code)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 40
    assert len(terminal.audit(10_000)) - before == 40
