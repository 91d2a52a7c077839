"""`protect`, `rekey` and `demo`: faces in photos, videos, cameras and streams replaced by protected faces."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import prepare_folder
from ..errors import AnonymixerError
from .common import (
    DEFAULT_MODEL,
    RANDOM_NOTE,
    add_backend_options,
    add_protect_options,
    add_ray_options,
    non_negative_float,
    print_setup,
    protector_from_args,
)
from .jsonout import add_json_option, set_result

if TYPE_CHECKING:
    from ..face.record import Setup
    from ..face.aligned import ProtectReport
    from ..face.runreport import RunReport
    from ..face.sources import Source
    from ..keys import Key


def cmd_protect(args: argparse.Namespace) -> int:
    from ..face.record import Setup, run_record, write_record
    from ..face.sources import expand_sources
    from ..keys import load_key

    key = load_key(args.key)
    found = expand_sources(args.inputs, None if args.out is None else Path(args.out))
    if not found.sources:
        raise AnonymixerError("; ".join(found.empty) if found.empty else
                              "no input images or videos found in " + ", ".join(args.inputs))
    out = None if args.out is None else Path(args.out)
    if out is not None:
        prepare_folder(out)  # a file in the way fails now, not after the model has loaded
    if args.aligned:
        from ..face.aligned import protect_aligned_files

        if args.ray is not None:
            raise AnonymixerError("--ray protects whole photos and videos; drop --aligned or --ray")
        if out is None:
            raise AnonymixerError("--out is required: the folder to write protected crops into")
        with protector_from_args(args, key) as protector:
            setup = Setup(protector.info.description, protector.fingerprint, protector.backend.describe(), None,
                          protector.info.is_random)
            print_setup(setup.model, setup.fingerprint, setup.backend)
            report: ProtectReport | RunReport = protect_aligned_files(
                protector, found.sources, out, batch_size=args.batch, inflight=getattr(args, "inflight", 1))
    else:
        if out is None and not (args.preview and all(s.live for s in found.sources)):
            raise AnonymixerError("--out is required (only a camera or stream shown with --preview can go without)")
        report, setup = _protect_whole(args, key, found.sources)
    report.notes[:0] = found.notes
    for line in found.empty:
        report.fail(line)
    print(report.summary())
    record = run_record(report.outcomes, found.sources, setup, no_face=None if args.aligned else args.no_face,
                        seconds=report.seconds, complete=report.interrupted is None, notes=report.notes,
                        failures=report.failures)
    unwritten = False
    if out is not None:
        try:
            print(f"report: {write_record(out, record)}")
        except AnonymixerError as exc:   # an unwritable or full --out: the outputs' own lines said so already
            print(f"report not written: {exc}")
            unwritten = True
    set_result(args, record)
    if setup.is_random:
        print(RANDOM_NOTE)
    if report.interrupted is not None:
        return 128 + report.interrupted
    return 0 if not (report.failures or unwritten) else 1

def _protect_whole(args: argparse.Namespace, key: Key, sources: list[Source]) -> tuple[RunReport, Setup]:
    """Whole photos, videos, cameras and streams: detect, align, protect, paste back; in this
    process, or on a Ray cluster with ``--ray``. The report, and what the run opened."""
    if args.ray is not None:
        return _protect_on_ray(args, key, sources)
    from ..face.app import protect_sources
    from ..face.detect import open_detector
    from ..face.pipeline import FaceProtector
    from ..face.preview import Preview
    from ..face.video import VideoOptions
    from ..face.record import Setup

    detector = open_detector(args.detector)  # before the model: a missing detector fails fast
    with protector_from_args(args, key) as protector:
        setup = Setup(protector.info.description, protector.fingerprint, protector.backend.describe(), detector.name,
                      protector.info.is_random)
        print_setup(setup.model, setup.fingerprint, setup.backend)
        face_protector = FaceProtector(protector, detector, no_face=args.no_face, max_batch=args.batch,
                                       identity_check=args.identity_check)
        print(f"detector: {detector.name}   no face: {args.no_face}   identity check: {face_protector.identity_status}")
        report = protect_sources(face_protector, sources, None if args.out is None else Path(args.out),
                                 preview=Preview(args.preview), max_frames=args.max_frames,
                                 inflight=args.inflight, video=VideoOptions.from_settings(args))
    if face_protector.identity is None and face_protector.identity_status.startswith("OFF"):
        report.notes.append(f"identity check: {face_protector.identity_status}")
    return report, setup

def _protect_on_ray(args: argparse.Namespace, key: Key, sources: list[Source]) -> tuple[RunReport, Setup]:
    """``--ray [ADDRESS]``: the same work on a pool of Ray actors (``anonymixer.cluster``)."""
    if Path(args.ray).exists() and args.ray:
        raise AnonymixerError(f"--ray took {args.ray!r}, which is an input, as the cluster address: put --ray "
                              "after the inputs, or write --ray=ADDRESS")
    live = [str(s) for s in sources if s.live]
    if live:
        raise AnonymixerError(f"--ray takes files and folders; run {', '.join(live)} without --ray")
    if getattr(args, "preview", False):
        raise AnonymixerError("--preview shows the frames of one process; drop it with --ray")
    try:
        from ..cluster import ClusterOptions, describe, protect_on_cluster
        from ..face.identity import status as identity_status
    except ImportError:
        raise AnonymixerError("--ray needs Ray: pip install 'anonymixer[ray]'") from None
    options = ClusterOptions(address=args.ray or None, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
                             gpus_per_actor=args.ray_gpus_per_actor, batch=args.ray_batch)
    setups: list[Setup] = []

    def on_setup(setup: Setup) -> None:
        print_setup(setup.model, setup.fingerprint, setup.backend)
        print(f"detector: {setup.detector}   no face: {args.no_face}   identity check: "
              f"{identity_status(args.identity_check, setup.is_random)}")
        print(describe(options))
        setups.append(setup)

    report = protect_on_cluster(args, key, sources, Path(args.out), options, max_frames=args.max_frames,
                                on_setup=on_setup)
    return report, setups[0]

def cmd_rekey(args: argparse.Namespace) -> int:
    from ..face.runreport import RunReport
    from ..face.sources import expand_sources
    from ..keys import load_key
    from ..rekey import (
        MANIFEST_NAME,
        check_manifest_path,
        check_new_tree,
        input_digests,
        manifest,
        read_previous,
        revoked_fingerprint,
        settings_of,
        standing_entries,
        write_manifest,
    )

    key = load_key(args.key)
    revoked = revoked_fingerprint(args.revoked)
    if revoked == key.fingerprint:
        raise AnonymixerError(f"--key {args.key} is the revoked key ({revoked}); make a new one with `anonymixer keygen`")
    out = Path(args.out)
    path = Path(args.manifest) if args.manifest is not None else out / MANIFEST_NAME
    settings = settings_of(args)
    previous = read_previous(path, revoked, key.fingerprint, settings) if args.resume else None
    if previous is None:
        check_new_tree(out, path)
    sources = expand_sources(args.inputs, out).sources
    if not sources:
        raise AnonymixerError("no original photos or videos found in " + ", ".join(args.inputs))
    live = [str(s) for s in sources if s.live]
    if live:
        raise AnonymixerError(f"a re-key works on stored originals, not on {', '.join(live)}")
    check_manifest_path(path, sources, out)   # before any work: never an input, never a folder, writable
    print(f"re-key: revoked {revoked} -> new {key.fingerprint}")
    digests = input_digests(sources)
    kept = standing_entries(previous, sources, digests) if previous is not None else []
    todo = [s for s in sources if str(s) not in {entry["input"] for entry in kept}]
    if previous is not None:
        print(f"resume: {len(kept)} of {len(sources)} originals already protected (unchanged, outputs intact); "
              f"{len(todo)} to do")
    if todo:
        report, setup = _protect_whole(args, key, todo)
        model, is_random = setup.model, setup.is_random
    else:
        report, model, is_random = RunReport(), str(previous["model"] if previous else ""), False
    print(report.summary())
    data = manifest(report, digests, sources, revoked=revoked, new=key.fingerprint, model=model, settings=settings,
                    kept=kept)
    write_manifest(path, data)
    print(f"manifest: {path} ({data['protected']} protected, {data['failed']} failed, of {data['inputs']} originals)"
          + ("" if data["complete"] else f"; INCOMPLETE: {data['not_done']} not done: run the same command "
                                         "with --resume to finish"))
    if is_random:
        print(RANDOM_NOTE)
    if report.interrupted is not None:
        return 128 + report.interrupted
    return 0 if not report.failures else 1

def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from ..face.demo import run_demo
    from ..face.detect import open_detector
    from ..face.pipeline import FaceProtector
    from ..keys import generate_key

    prepare_folder(Path(args.out))  # a file named like --out fails now, not after the model has loaded
    if not (args.onnx or args.engines) and args.model.startswith("random:"):
        print(f"{RANDOM_NOTE} (drop --model for faces64, or pass a BUNDLE from `anonymixer import`)")
    key = generate_key()  # lives in memory only: never written, never printed
    detector = open_detector(args.detector)
    started = time.perf_counter()
    with protector_from_args(args, key) as protector:
        print(f"model: {protector.info.description} (loaded in {time.perf_counter() - started:.1f} s)")
        print(f"key: {protector.fingerprint} (fresh, in memory only, not saved)   "
              f"backend: {protector.backend.describe()}   detector: {detector.name}")
        face_protector = FaceProtector(protector, detector)   # with the identity check, as protect (face.identity)
        print(f"identity check: {face_protector.identity_status}")
        demo = run_demo(face_protector, Path(args.out))
    failures = 0
    for index, (name, result) in enumerate(demo.results.items()):
        stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in result.timings_ms.items())
        total = sum(result.timings_ms.values())
        print(f"{name}: {result.protected} face(s) protected, {result.masked} masked; "
              f"ms: {stages}; total {total:.1f} ms" + (" (first frame: includes warm-up)" if index == 0 else ""))
        for line in result.failures:
            print(f"  {name}: {line}")
        for line in result.notes:
            print(f"  {name}: note: {line}")
        failures += len(result.failures) + int(result.no_face)
    print(f"wrote {demo.path} (left: original, right: protected)")
    if protector.info.is_random:
        print(RANDOM_NOTE)
    return 0 if not failures else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protect", help="replace faces by protected faces under a key")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="photos, videos, folders (searched recursively), a camera index (0) or a stream URL")
    p.add_argument("--key", required=True, help="key file from `anonymixer keygen`")
    p.add_argument("--out", help="output folder; files keep their names (and paths below input folders)")
    p.add_argument("--aligned", action="store_true", help="inputs are 256x256 aligned face crops")
    add_protect_options(p)
    p.add_argument("--preview", action="store_true", help="show frames with FPS and stage latencies (needs a display)")
    g = p.add_argument_group("cameras and streams")
    g.add_argument("--segment", type=non_negative_float, default=None, metavar="SECONDS",
                   help="record cameras and streams in files of SECONDS each, each one complete as soon as it "
                        "closes; 0: one file (default: 60)")
    g.add_argument("--reconnect", action="store_true",
                   help="when a camera or stream stops delivering, reopen it (after 0.5 s, doubling up to 30 s) "
                        "until it comes back; the report counts the gaps")
    add_ray_options(p)
    add_json_option(p)
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("rekey", help="re-protect an archive of originals under a new key (after a revocation): "
                                     "a new output tree and an audit manifest")
    p.add_argument("inputs", nargs="+", metavar="ORIGINAL", help="original photos, videos and folders")
    p.add_argument("--key", required=True, help="the new key file (`anonymixer keygen`)")
    p.add_argument("--revoked", required=True, metavar="KEYFILE|FINGERPRINT",
                   help="the revoked key: its key file or its fingerprint (only the fingerprint is recorded)")
    p.add_argument("--out", required=True, help="new output folder (must not exist, or be empty)")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help="where to write the manifest (default: OUT/rekey-manifest.json)")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted re-key into the same --out: originals already protected (unchanged, "
                        "outputs intact, as its manifest records) are kept, the rest are done")
    add_protect_options(p)
    add_ray_options(p)
    p.set_defaults(func=cmd_rekey, aligned=False, preview=False)

    p = sub.add_parser("demo", help="protect two packaged photos with a fresh in-memory key; start here")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundle file from `anonymixer import`, faces64 (real 64-px weights that ship with "
                        "anonymixer), or random:tiny|ffhq256|ffhq1024[@seed] (default: %(default)s)")
    p.add_argument("--out", default="anonymixer-demo", help="folder for demo.png (default: %(default)s)")
    add_backend_options(p)
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH",
                   help="face detector (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
