"""The terminal service under a bounded local load: N clients send verifies to a real
`anonymixer terminal serve` on 127.0.0.1 (a separate process, as deployed), then the store's audit
is counted: every answered verify must have left exactly one audit row.

    python benchmarks/terminal_service_load.py [--clients 8] [--verifies 400] [--json OUT]

The store is made fresh in a temporary folder under a fresh key (faces64, the store's default kind
and recogniser); two people are enrolled through the API (skimage's astronaut, matplotlib's Grace
Hopper), and the probes alternate between a genuine one (the astronaut, mirrored) and an impostor
(Grace Hopper claiming to be the astronaut). The rate limit is turned off (--verify-rate 0): all
clients come from 127.0.0.1 and would share one bucket. Traffic goes to 127.0.0.1 only; the
request count is bounded and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anonymixer.bench.machine import cpu_flags, cpu_model  # noqa: E402
from anonymixer.face.io import read_image  # noqa: E402
from anonymixer.face.photos import packaged_photo  # noqa: E402
from anonymixer.keys import generate_key, save_key  # noqa: E402


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def start_server(folder: Path, startup_s: float) -> tuple[subprocess.Popen[str], str]:
    """`anonymixer terminal serve` on a free port; returns the process and its base URL."""
    command = [sys.executable, "-m", "anonymixer", "terminal", "serve", "--db", str(folder / "site.db"),
               "--key", str(folder / "site.key"), "--token-file", str(folder / "token"),
               "--port", "0", "--verify-rate", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline() if process.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(startup_s)
    if not found or "http://" not in found[0]:
        process.kill()
        raise SystemExit(f"the service did not start within {startup_s:.0f} s")
    return process, found[0].split("http://", 1)[1].split("/", 1)[0]


def audit_rows(db: Path, action: str) -> int:
    from anonymixer.terminal import Terminal

    with Terminal.open(db, None, create=False) as terminal:
        return sum(row.action == action for row in terminal.audit(limit=1_000_000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--verifies", type=int, default=400, help="verifies under load, in all (bounded)")
    parser.add_argument("--baseline", type=int, default=20, help="verifies by one client alone first")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    astronaut = read_image(packaged_photo("astronaut"))
    probes = [jpeg(cv2.flip(astronaut, 1)), jpeg(read_image(packaged_photo("grace_hopper")))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_key(generate_key(), folder / "site.key")
        token = os.urandom(24).hex()
        fd = os.open(folder / "token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, token.encode())
        os.close(fd)
        loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
        process, address = start_server(folder, args.startup_timeout)
        base = f"http://{address}"
        auth = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
                people = (("astronaut", astronaut), ("grace hopper", read_image(packaged_photo("grace_hopper"))))
                for name, image in people:
                    response = client.post("/v1/enrol", data={"name": name}, files={"image": ("p.jpg", jpeg(image))})
                    response.raise_for_status()
            verifies_before = audit_rows(folder / "site.db", "verify")
            # One client alone first (the service time), then the load, in the same run.
            phases = {"1 client": run_load(base, auth, probes, 1, args.baseline),
                      f"{args.clients} clients": run_load(base, auth, probes, args.clients, args.verifies)}
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        loadavg_after = Path("/proc/loadavg").read_text().split()[:3]
        rows = audit_rows(folder / "site.db", "verify") - verifies_before
    answered = sum(phase["statuses"].get("200", 0) for phase in phases.values())
    report = {
        "phases": phases, "errors": sum(phase["errors"] for phase in phases.values()),
        "verifies_answered": answered, "audit_rows_added": rows, "audit_rows_lost": answered - rows,
        "loadavg_before": loadavg_before, "loadavg_after": loadavg_after,
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["errors"] == 0 and report["audit_rows_lost"] == 0 else 1


def run_load(base: str, auth: dict[str, str], probes: list[bytes], clients: int, verifies: int) -> dict:
    """``verifies`` verifies of "astronaut" shared among ``clients`` threads, alternating a
    genuine probe and an impostor; latency per request as the client sees it."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    accepted, sent = {0: 0, 1: 0}, {0: 0, 1: 0}
    lock = threading.Lock()

    def client_loop(index: int, count: int) -> None:
        with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
            for i in range(count):
                kind = (index + i) % 2
                started = time.perf_counter()
                try:
                    response = client.post("/v1/verify", data={"name": "astronaut"},
                                           files={"image": ("probe.jpg", probes[kind])})
                    status = str(response.status_code)
                    ok = response.status_code == 200 and response.json()["accepted"]
                except httpx.HTTPError as exc:
                    status, ok = type(exc).__name__, False
                seconds = time.perf_counter() - started
                with lock:
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
                    accepted[kind] += bool(ok)
                    sent[kind] += 1

    shares = [verifies // clients + (i < verifies % clients) for i in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(i, n)) for i, n in enumerate(shares)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    ms = np.array(latencies) * 1e3
    return {"clients": clients, "verifies": verifies, "statuses": statuses,
            "errors": verifies - statuses.get("200", 0),
            "genuine_accepted": f"{accepted[0]}/{sent[0]}", "impostor_accepted": f"{accepted[1]}/{sent[1]}",
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1), "throughput_per_s": round(verifies / wall, 2),
            "wall_s": round(wall, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
