"""The terminal's HTTP service: token, limits, errors and decisions, over HTTP on 127.0.0.1, on a
real store with the real models (faces64, the default template kind and recogniser)."""

import contextlib
import logging
import os
import threading
from urllib.parse import quote

import pytest

pytest.importorskip("starlette", reason="the service needs the terminal extra: pip install 'anonymixer[terminal]'")

import httpx  # noqa: E402
from conftest import TEST_SECRET  # noqa: E402
from facekit import needs_yunet, photo  # noqa: E402
from servicekit import AUTH, TOKEN, jpeg, open_site, serving  # noqa: E402
from terminalkit import blank, same_person  # noqa: E402

from anonymixer.keys import Key  # noqa: E402
from anonymixer.terminal.guard import TokenFileError, load_token  # noqa: E402

pytestmark = needs_yunet


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    """One store for the module, with the astronaut enrolled; tests add and remove their own names."""
    terminal = open_site(tmp_path_factory.mktemp("site"))
    yield terminal
    terminal.close()


@contextlib.contextmanager
def client_for(terminal, **options):
    with serving(terminal, **options) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


@pytest.fixture
def client(terminal):
    with client_for(terminal) as client:
        yield client


def verify(client, name, image, headers=AUTH):
    return client.post("/v1/verify", headers=headers, data={"name": name}, files={"image": ("p.jpg", jpeg(image))})


def newest(terminal, action):
    return next(row for row in terminal.audit(50) if row.action == action)


API = [("post", "/v1/enrol"), ("post", "/v1/verify"), ("post", "/v1/identify"), ("post", "/v1/revoke"),
       ("get", "/v1/info"), ("get", "/v1/subjects"), ("delete", "/v1/subjects/astronaut"),
       ("get", "/v1/subjects/astronaut/face"),
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
    row = newest(terminal, "auth")
    assert row.outcome == "refused" and row.detail == "GET /v1/subjects: wrong token"
    assert row.source == "http 127.0.0.1"
    assert wrong not in repr(terminal.audit(1000)) and TOKEN not in repr(terminal.audit(1000))


def test_verify_accepts_another_photo_of_the_person_and_rejects_someone_else(client):
    same = verify(client, "astronaut", same_person(photo("astronaut"))).json()
    other = verify(client, "astronaut", photo("grace_hopper")).json()
    assert same["accepted"] is True and same["score"] >= same["threshold"] and same["name"] == "astronaut"
    assert other["accepted"] is False and other["score"] < other["threshold"]


def test_identify_names_the_enrolled_person_with_candidates(client):
    probe = jpeg(same_person(photo("astronaut")))
    response = client.post("/v1/identify", headers=AUTH, files={"image": ("p.jpg", probe)})
    body = response.json()
    assert response.status_code == 200 and body["accepted"] is True and body["name"] == "astronaut"
    assert body["candidates"][0]["name"] == "astronaut"


def test_verify_of_an_unknown_name_is_404_in_one_line(client):
    response = verify(client, "nobody", photo("astronaut"))
    assert response.status_code == 404
    assert "nobody" in response.json()["error"] and "\n" not in response.json()["error"]


def test_forget_of_an_unknown_name_is_404(client):
    assert client.delete("/v1/subjects/nobody", headers=AUTH).status_code == 404


def test_a_declared_upload_over_the_limit_is_413(terminal):
    with client_for(terminal, max_upload_bytes=100_000) as client:
        response = client.post("/v1/verify", headers=AUTH, data={"name": "astronaut"},
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


def test_a_broken_image_is_400_in_one_line_naming_the_upload_and_audited(client, terminal):
    response = client.post("/v1/verify", headers=AUTH, data={"name": "astronaut"},
                           files={"image": ("broken.jpg", jpeg(photo("astronaut"))[:300])})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "broken.jpg" in error and "\n" not in error
    row = newest(terminal, "verify")
    assert row.outcome == "bad request" and "broken.jpg" in row.detail


def test_enrolling_a_photo_without_a_face_is_400_in_one_line_and_enrols_no_one(client):
    response = client.post("/v1/enrol", headers=AUTH, data={"name": "nobody"},
                           files={"image": ("wall.png", jpeg(blank()))})
    assert response.status_code == 400
    assert "face" in response.json()["error"] and "\n" not in response.json()["error"]
    assert "nobody" not in [s["name"] for s in client.get("/v1/subjects", headers=AUTH).json()["subjects"]]


def test_a_form_without_an_image_is_400(client):
    response = client.post("/v1/verify", headers=AUTH, data={"name": "astronaut"})
    assert response.status_code == 400 and "image" in response.json()["error"]


def test_verify_beyond_the_rate_limit_is_429_with_retry_after(terminal):
    with client_for(terminal, verify_rate=0.01, verify_burst=2) as client:
        responses = [verify(client, "nobody", photo("astronaut")) for _ in range(3)]
    assert [r.status_code for r in responses] == [404, 404, 429]
    assert int(responses[2].headers["retry-after"]) >= 1
    assert newest(terminal, "verify").outcome == "rate limited"


def test_names_with_quotes_html_slashes_and_newlines_round_trip(client):
    name = "O'Brien \"<b>x</b>\"; DROP TABLE subjects; -- / ünï\ncode"
    enrolled = client.post("/v1/enrol", headers=AUTH, data={"name": name},
                           files={"image": ("p.jpg", jpeg(photo("astronaut")))})
    assert enrolled.status_code == 201 and enrolled.json()["name"] == name
    [subject] = [s for s in client.get("/v1/subjects", headers=AUTH).json()["subjects"] if s["name"] == name]
    face = client.get(subject["face"], headers=AUTH)
    assert face.status_code == 200 and face.content.startswith(b"\x89PNG")
    assert client.delete(f"/v1/subjects/{quote(name, safe='')}", headers=AUTH).json()["erased"] == 1
    assert name not in [s["name"] for s in client.get("/v1/subjects", headers=AUTH).json()["subjects"]]


def test_revoke_of_a_malformed_fingerprint_is_400(client):
    response = client.post("/v1/revoke", headers=AUTH, data={"fingerprint": "site.key"})
    assert response.status_code == 400 and "fingerprint" in response.json()["error"]


def test_revoke_over_http_retires_the_keys_templates(tmp_path):
    terminal = open_site(tmp_path)
    try:
        with client_for(terminal) as client:
            fingerprint = Key(TEST_SECRET).fingerprint
            response = client.post("/v1/revoke", headers=AUTH, data={"fingerprint": fingerprint})
            assert response.json() == {"fingerprint": fingerprint, "retired": 1}
            after = verify(client, "astronaut", photo("astronaut"))
        assert after.status_code == 200 and after.json()["accepted"] is False   # whatever the probe
    finally:
        terminal.close()


def test_info_shows_the_stores_settings_and_the_keys_fingerprint_only(client):
    info = client.get("/v1/info", headers=AUTH).json()
    assert info["fingerprint"] == Key(TEST_SECRET).fingerprint and info["kind"] in ("face", "embedding")
    assert float(info["threshold"]) > -1.0


def test_metrics_are_prometheus_text_counting_requests(client):
    client.get("/v1/subjects", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert '# TYPE anonymixer_terminal_http_requests_total counter' in text
    assert 'anonymixer_terminal_http_requests_total{method="GET",route="/v1/subjects",status="200"} 1.0' in text


def test_audit_limit_out_of_range_is_400(client):
    assert client.get("/v1/audit?limit=0", headers=AUTH).status_code == 400
    assert len(client.get("/v1/audit?limit=2", headers=AUTH).json()["rows"]) == 2


def test_page_and_answers_carry_a_content_security_policy(client):
    for response in (client.get("/"), client.get("/healthz"), client.get("/static/app.js")):
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_the_secret_and_the_token_are_in_no_response_and_no_log_line(client, caplog):
    caplog.set_level(logging.DEBUG)
    probe = {"image": ("p.jpg", jpeg(photo("astronaut")))}
    responses = [client.get(path, headers=AUTH) for path in
                 ("/", "/static/app.js", "/static/style.css", "/healthz", "/v1/info", "/v1/subjects",
                  "/v1/audit?limit=1000",
                  "/v1/subjects/astronaut/face", "/metrics")]
    responses += [client.post("/v1/verify", headers=AUTH, data={"name": "astronaut"}, files=probe),
                  client.post("/v1/identify", headers=AUTH, files=probe)]
    assert responses[-2].json()["fingerprint"] == Key(TEST_SECRET).fingerprint   # the public id is there
    for response in responses:
        assert response.status_code == 200, response.request.url
        seen = response.content + repr(response.headers).encode()
        for secret in (TEST_SECRET, TEST_SECRET.hex().encode(), TOKEN.encode()):
            assert secret not in seen, response.request.url
    assert TEST_SECRET.hex() not in caplog.text and TOKEN not in caplog.text
    assert "GET /v1/subjects/{name}/face 200" in caplog.text   # the log names routes, not people


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


def test_concurrent_verifies_each_get_their_own_decision_and_an_audit_row(terminal):
    probes = {True: jpeg(same_person(photo("astronaut"))), False: jpeg(photo("grace_hopper"))}
    outcomes, lock = [], threading.Lock()
    before = sum(row.action == "verify" for row in terminal.audit(100_000))
    with serving(terminal, verify_rate=0) as url:
        def worker(index):
            with httpx.Client(base_url=url, timeout=300) as client:
                for i in range(2):
                    genuine = (index + i) % 2 == 0
                    response = client.post("/v1/verify", headers=AUTH, data={"name": "astronaut"},
                                           files={"image": ("p.jpg", probes[genuine])})
                    with lock:
                        outcomes.append((response.status_code, genuine, response.json().get("accepted")))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(outcomes) == 16
    assert all(status == 200 and accepted == genuine for status, genuine, accepted in outcomes), outcomes
    assert sum(row.action == "verify" for row in terminal.audit(100_000)) - before == 16
