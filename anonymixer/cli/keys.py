"""`keygen` and `fingerprint`: key files (secrets are never printed, only fingerprints)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_key, save_key

    key = generate_key()
    save_key(key, args.out, overwrite=args.force)
    print(f"wrote key {args.out} (mode 0600; keep it secret, keep a backup)")
    print(f"fingerprint: {key.fingerprint}")
    return 0

def cmd_fingerprint(args: argparse.Namespace) -> int:
    from ..keys import load_key

    for path in args.keys:
        print(f"{load_key(path).fingerprint}  {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a new random secret key (mode 0600) and print its fingerprint")
    p.add_argument("--out", required=True, help="key file to create")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("fingerprint", help="print the public fingerprint of key files (safe to log)")
    p.add_argument("keys", nargs="+", metavar="KEYFILE")
    p.set_defaults(func=cmd_fingerprint)
