"""`anonymixer terminal serve`: the HTTP service and the operator page on one store.

Registered by ``anonymixer/cli/terminal.py`` through ``register_serve``; starlette and uvicorn
are imported only when the command runs (the ``terminal`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from ..errors import AnonymixerError

SERVICE_EXTRA = "pip install 'anonymixer[terminal]'"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .service import ServiceOptions, TerminalService, bind, server
    except ImportError as exc:
        raise AnonymixerError(f"terminal serve needs {exc.name}: {SERVICE_EXTRA}") from None
    from ..keys import load_key
    from . import Terminal
    from .guard import load_token

    token = load_token(args.token_file)        # refused before the model loads when too open
    options = ServiceOptions(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                             verify_rate=args.verify_rate, verify_burst=args.verify_burst)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise AnonymixerError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    logging.getLogger("anonymixer.terminal.service").setLevel(logging.INFO)
    with Terminal.open(args.db, load_key(args.key), model=args.model, detector=args.detector,
                       salt=args.salt) as terminal:
        service = TerminalService(terminal, token, options)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        if not _loopback(host):
            print(f"anonymixer: warning: listening on {host}, beyond this machine, over plain HTTP: "
                  "the token crosses the network in clear; put a TLS proxy in front", file=sys.stderr)
        print(f"anonymixer terminal: serving {args.db} on http://{shown}:{port}/ "
              f"(token from {args.token_file}; Ctrl-C stops)", flush=True)
        try:
            server(service.app).run(sockets=[sock])
        except KeyboardInterrupt:   # Ctrl-C or SIGTERM, re-raised by uvicorn once it has drained
            pass                    # the requests in flight: the normal way to stop a service
        finally:
            service.close()
    print("anonymixer terminal: stopped", flush=True)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def register_serve(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``terminal`` command group's subparsers ``sub``; returns its parser, for
    the options the CLI shares among its commands (``--trusted-key``)."""
    p = sub.add_parser("serve", help="HTTP service and operator page on a template store (bearer token)")
    p.add_argument("--db", required=True, help="the template store (SQLite file)")
    p.add_argument("--key", required=True, help="the site's key file")
    p.add_argument("--model", default=None, help="generator model (default: the store's; faces64 for a new store)")
    p.add_argument("--detector", default=None, metavar="yunet|dlib|PATH", help="face detector (default: yunet)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.add_argument("--token-file", required=True,
                   help="file holding the bearer token, mode 0600 (make one: (umask 077; openssl rand -hex 32 > FILE))")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--max-upload-mb", type=_positive_float, default=10.0,
                   help="largest request body in MiB; larger ones get 413 (default 10)")
    p.add_argument("--verify-rate", type=float, default=2.0,
                   help="verify/identify requests per second per client address after the burst; 0 turns "
                        "the limit off (default 2)")
    p.add_argument("--verify-burst", type=int, default=10, help="requests a client may send at once (default 10)")
    p.set_defaults(func=cmd_serve)
    return p
