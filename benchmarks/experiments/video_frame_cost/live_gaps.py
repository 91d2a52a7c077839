"""Does a live recording stutter? A local MJPEG camera at --fps (640x480, one face) recorded by
``anonymixer protect URL`` for --seconds, then stopped with SIGTERM; prints the recorded frames' time gaps.

    python benchmarks/experiments/video_frame_cost/live_gaps.py --key site.key [--fps 25] [--seconds 12] [-- protect options]

A gap longer than two frame periods is frames the recording never got (the capture keeps only the newest
frame, ``LatestFrames``, so a slow frame drops the ones that came meanwhile). The camera binds 127.0.0.1
and stops with the script.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np

from anonymixer.bench.inputs import face_tiles, video_frame


def serve(server: socket.socket, jpegs: list[bytes], fps: float, stop: threading.Event) -> None:
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = server.accept()
        except TimeoutError:
            continue
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n")
                sent, start = 0, time.perf_counter()
                while not stop.is_set():
                    jpeg = jpegs[sent % len(jpegs)]
                    connection.sendall(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                       + jpeg + b"\r\n")
                    sent += 1
                    time.sleep(max(0.0, start + sent / fps - time.perf_counter()))
            except OSError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("rest", nargs="*", help="more options for protect (after --)")
    args = parser.parse_args()
    base = video_frame(face_tiles())
    jpegs = [cv2.imencode(".jpg", np.roll(base, int(40 * np.sin(i / 25.0)), axis=1))[1].tobytes() for i in range(50)]
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(server, jpegs, args.fps, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/camera.mjpg"
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen([sys.executable, "-m", "anonymixer.cli", "protect", url, "--key", args.key,
                                    "--out", tmp, *args.rest], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(args.seconds)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate()
        stop.set()
        files = sorted(Path(tmp).glob("*.mp4"))
        if not files:
            print(out)
            raise SystemExit("no recording written")
        with av.open(str(files[0])) as container:
            times = [frame.time for frame in container.decode(video=0)]
    gaps = np.diff(times)
    period = 1.0 / args.fps
    long = gaps[gaps > 2 * period]
    print("\n".join(line for line in out.splitlines() if line.startswith(("per frame", "identity", "note:"))))
    print(f"{len(times)} frames recorded over {times[-1] - times[0]:.1f} s ({len(times) / max(times[-1] - times[0], 1e-9):.1f} fps "
          f"of the camera's {args.fps:g}); gaps over two frame periods: {len(long)}, "
          f"totalling {long.sum():.2f} s, longest {gaps.max() * 1000:.0f} ms; median gap {np.median(gaps) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
