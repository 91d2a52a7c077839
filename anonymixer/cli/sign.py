"""`sign`: Ed25519 signatures of model folders, engine folders, bundles and detector files (``anonymixer.signing``)."""

from __future__ import annotations

import argparse

from ..errors import AnonymixerError


def cmd_sign(args: argparse.Namespace) -> int:
    from .. import signing

    if args.new_key is not None:
        if args.target is not None or args.signing_key is not None:
            raise AnonymixerError("--new-key FILE makes a key pair and signs nothing; drop TARGET and --signing-key")
        fingerprint = signing.new_signing_key(args.new_key)
        print(f"wrote signing key {args.new_key} (mode 0600: keep it off the machines that run the models)")
        print(f"wrote public key {args.new_key}.pub (give it to --trusted-key or ${signing.TRUSTED_KEY_ENV})")
        print(f"signer: {fingerprint}")
        return 0
    if args.target is None or args.signing_key is None:
        raise AnonymixerError("give what to sign and the key: anonymixer sign DIR|FILE --signing-key FILE "
                              "(make a key with `anonymixer sign --new-key FILE`)")
    key = signing.load_signing_key(args.signing_key)
    path = signing.sign(args.target, key)
    print(f"signed {args.target}: {path} (signer {signing.fingerprint(key.public_key())})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sign", help="sign a model folder, engine folder, bundle or detector file (Ed25519), or make "
                                    "a signing key; commands given --trusted-key refuse what is not signed")
    p.add_argument("target", nargs="?", default=None, metavar="DIR|FILE",
                   help="export folder, engine folder (signs its manifest.json, which pins every file), bundle or "
                        "detector .onnx (signs the file); writes manifest.json.sig or FILE.sig")
    p.add_argument("--signing-key", default=None, metavar="FILE", help="private key from `anonymixer sign --new-key`")
    p.add_argument("--new-key", default=None, metavar="FILE",
                   help="write a new key pair: FILE (private, mode 0600) and FILE.pub (public); never overwrites")
    p.set_defaults(func=cmd_sign)
