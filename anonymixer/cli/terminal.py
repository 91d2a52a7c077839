"""`terminal enrol|enroll|verify|identify|revoke|forget|list|calibrate` (and `serve`, from the service).

Exit codes: 0 done / accepted / identified, 1 rejected / no one identified, 2 the command could not
run (one line on stderr: unknown name, no face, a store under another key, a bad photo...). With
``--json`` the result is one JSON object on stdout. Names are printed with control characters
escaped (``printable``); the key's secret is never printed, only its fingerprint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import printable
from .jsonout import set_result

if TYPE_CHECKING:
    from ..terminal import Decision, Terminal

DEFAULT_FMR = 1e-3


@contextmanager
def opened(args: argparse.Namespace, keyed: bool = True, create: bool = False) -> Iterator["Terminal"]:
    from ..keys import load_key
    from ..terminal import Terminal

    key = load_key(args.key) if keyed else None
    options: dict[str, Any] = {}
    if keyed:
        options = {"kind": getattr(args, "kind", None), "fr": getattr(args, "fr", None), "model": args.model,
                   "detector": args.detector, "salt": args.salt}
    with Terminal.open(args.db, key, create=create, **options) as terminal:
        yield terminal


def read_photos(paths: list[str]) -> list[Any]:
    from ..face.io import read_photo

    return [read_photo(path)[0] for path in paths]


def emit(args: argparse.Namespace, record: dict[str, Any], line: str) -> None:
    """The result: one JSON object with ``--json`` (``cli/jsonout.py``: the envelope's "command",
    "anonymixer" and "exit_code" come first), else one human line."""
    if args.json:
        set_result(args, record)
    else:
        print(line)


def cmd_enrol(args: argparse.Namespace) -> int:
    images = read_photos(args.photos)
    with opened(args, create=True) as terminal:
        enrolment = terminal.enrol(args.name, images, labels=[printable(p) for p in args.photos])
        info = terminal.info()
    emit(args, {"name": enrolment.name, "templates": enrolment.templates, "kind": info["kind"],
                "recogniser": info["recogniser"], "fingerprint": info["active_key"]},
         f"enrolled {printable(enrolment.name)}: {enrolment.templates} template(s) ({info['kind']}, "
         f"{info['recogniser']}, key {info['active_key']})")
    return 0


def decision_record(decision: "Decision") -> dict[str, Any]:
    record = asdict(decision)
    record["candidates"] = [{"name": name, "score": score} for name, score in decision.candidates]
    return record


def cmd_verify(args: argparse.Namespace) -> int:
    (image,) = read_photos([args.photo])
    with opened(args) as terminal:
        decision = terminal.verify(args.name, image)
    word = "accepted" if decision.accepted else "rejected"
    sign = ">=" if decision.accepted else "<"
    emit(args, decision_record(decision),
         f"{word} {printable(args.name)}: score {decision.score:.4f} {sign} threshold {decision.threshold:.4f}")
    return 0 if decision.accepted else 1


def cmd_identify(args: argparse.Namespace) -> int:
    (image,) = read_photos([args.photo])
    with opened(args) as terminal:
        decision = terminal.identify(image)
    if args.json:
        emit(args, decision_record(decision), "")
    elif decision.accepted:
        print(printable(str(decision.name)))
        print(f"score {decision.score:.4f} >= threshold {decision.threshold:.4f}", file=sys.stderr)
    else:
        print(f"unknown: best score {decision.score:.4f} < threshold {decision.threshold:.4f}", file=sys.stderr)
    return 0 if decision.accepted else 1


def cmd_revoke(args: argparse.Namespace) -> int:
    from ..keys import load_key
    from ..terminal.terminal import FINGERPRINT

    fingerprint = args.revoked if FINGERPRINT.fullmatch(args.revoked) else load_key(args.revoked).fingerprint
    with opened(args, keyed=False) as terminal:
        count = terminal.revoke(fingerprint)
    emit(args, {"revoked": fingerprint, "templates": count},
         f"revoked key {fingerprint}: {count} template(s) retired; enrol people again under the new key")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    with opened(args, keyed=False) as terminal:
        count = terminal.forget(args.name)
    emit(args, {"forgotten": args.name, "templates": count},
         f"forgot {printable(args.name)}: {count} template(s) and the protected face erased")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with opened(args, keyed=False) as terminal:
        subjects, info = terminal.subjects(), terminal.info()
    if args.json:
        emit(args, {"store": str(args.db), **{k: info.get(k) for k in ("kind", "recogniser", "model_id", "active_key",
                                                                        "threshold", "threshold_source")},
                    "subjects": [{"name": s.name, "templates": s.templates, "enrolled_at": s.enrolled_at}
                                 for s in subjects]}, "")
        return 0
    print(f"store {printable(str(args.db))}: {info.get('kind')} templates, {info.get('recogniser')}, model "
          f"{info.get('model_id')}, key {info.get('active_key') or '(none: revoked, enrol under a new key)'}, "
          f"threshold {info.get('threshold', 'not set')}")
    for s in subjects:
        print(f"  {printable(s.name)}\t{s.templates} template(s)\tenrolled {s.enrolled_at}")
    print(f"{len(subjects)} subject(s)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    people = None
    if args.data:
        people = folder_people(Path(args.data))
    with opened(args) as terminal:
        result = terminal.calibrate(args.fmr, people=people, synthetic=args.synthetic or 0)
    emit(args, asdict(result), result.describe())
    return 0


def folder_people(folder: Path) -> dict[str, list[Any]]:
    """``FACES/<person>/<photo>``: every readable photo, grouped by person; unreadable ones are
    reported on stderr (one line each) and skipped."""
    from ..errors import AnonymixerError
    from ..eval.faces import list_photos
    from ..face.io import read_photo

    people: dict[str, list[Any]] = {}
    for person, path in list_photos(folder):
        try:
            people.setdefault(person, []).append(read_photo(path)[0])
        except AnonymixerError as exc:
            print(f"anonymixer: skipped: {printable(str(exc))}", file=sys.stderr)
    return people


def positive_fmr(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from .common import add_trusted_key_option, positive_int

    group = sub.add_parser("terminal", help="access terminal: enrol, verify, identify and revoke cancelable "
                                            "templates in a SQLite store")
    commands = group.add_subparsers(dest="terminal_command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, func: Any, keyed: bool = True,
                aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, aliases=list(aliases))
        p.add_argument("--db", required=True, metavar="DB", help="the template store (SQLite file)")
        if keyed:
            p.add_argument("--key", required=True, metavar="KEY", help="the site's key file")
            p.add_argument("--model", default=None,
                           help="generator model (default: the store's; faces64 for a new store)")
            p.add_argument("--detector", default=None, metavar="yunet|dlib|PATH", help="face detector (default: yunet)")
            p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
            add_trusted_key_option(p)
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")
        p.set_defaults(func=func)
        return p

    p = command("enrol", "add a person's templates (each photo must show exactly one face)", cmd_enrol,
                aliases=("enroll",))
    p.add_argument("--name", required=True)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--kind", choices=("face", "embedding"), default=None,
                   help="template kind of a new store (default: embedding; see docs/terminal.md)")
    p.add_argument("--fr", default=None, metavar="sface|dlib|...", help="face recogniser of a new store (default: sface)")

    p = command("verify", "is the largest face in PHOTO the enrolled NAME? exit 0 accepted, 1 rejected", cmd_verify)
    p.add_argument("--name", required=True)
    p.add_argument("photo", metavar="PHOTO")

    p = command("identify", "who among the enrolled is the largest face in PHOTO? prints the name; exit 1 if no one",
                cmd_identify)
    p.add_argument("photo", metavar="PHOTO")

    p = command("revoke", "retire every template under an old key; they never match again", cmd_revoke, keyed=False)
    p.add_argument("--revoked", required=True, metavar="OLD.key|FINGERPRINT", help="the old key file or its fingerprint")

    p = command("forget", "erase a subject: templates, protected face, and the name in the audit", cmd_forget,
                keyed=False)
    p.add_argument("--name", required=True)

    command("list", "the enrolled subjects and the store's settings", cmd_list, keyed=False)

    p = command("calibrate", "set the threshold for a false match rate from impostor scores", cmd_calibrate)
    p.add_argument("--fmr", type=positive_fmr, default=DEFAULT_FMR, help="target false match rate (default: 1e-3)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FACES/", default=None,
                        help="also a folder with one sub-folder of photos per person")
    source.add_argument("--synthetic", type=positive_int, metavar="N", default=None,
                        help="also N synthetic identities drawn by the model")

    # `serve`: the HTTP service (its packages, the terminal extra, load only when it runs).
    from ..terminal.serve_cli import register_serve
    add_trusted_key_option(register_serve(commands))
