"""Shared fixtures: a seeded random tiny model and a fixed key (built once per session)."""

import pytest

from anonymixer.keys import Key
from anonymixer.models.bundle import random_bundle

# Not a real key: a fixed secret so that test results are reproducible.
TEST_SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))


@pytest.fixture(scope="session")
def tiny_bundle():
    return random_bundle("tiny", seed=0)


@pytest.fixture
def key():
    return Key(TEST_SECRET)


@pytest.fixture
def other_key():
    return Key(OTHER_SECRET)


@pytest.fixture
def key_file(tmp_path, capsys):
    """A key written by `anonymixer keygen` (the CLI's own path), output swallowed."""
    from anonymixer.cli import main

    path = tmp_path / "site.key"
    assert main(["keygen", "--out", str(path)]) == 0
    capsys.readouterr()
    return path


def cli_refuses(capsys, args, *needles):
    """``anonymixer ARGS`` exits 2 with one line on stderr, no traceback, containing every needle."""
    from anonymixer.cli import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


@pytest.fixture
def reuse_tiny_model(monkeypatch, tiny_bundle):
    """Build random:tiny once per session rather than once per command; the CLI is otherwise real."""
    import anonymixer.models.bundle as bundle

    real = bundle.random_bundle
    monkeypatch.setattr(bundle, "random_bundle",
                        lambda name, seed=0: tiny_bundle if (name, seed) == ("tiny", 0) else real(name, seed))


@pytest.fixture
def read_only_outputs(monkeypatch):
    """Creating one of our temporary output files (``anonymixer.atomic``) fails with EROFS, as in a
    read-only folder (root writes anywhere, so chmod cannot stand in for it)."""
    import errno
    import os

    from anonymixer.atomic import PARTIAL_MARK

    real = os.open

    def read_only(path, flags, *args, **kwargs):
        if PARTIAL_MARK in str(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)


@pytest.fixture
def keys(tmp_path, capsys):
    """``(old key file, new key file)`` made by ``anonymixer keygen`` (a re-key's revoked and new keys)."""
    from anonymixer.cli import main

    old, new = tmp_path / "old.key", tmp_path / "new.key"
    assert main(["keygen", "--out", str(old)]) == 0 and main(["keygen", "--out", str(new)]) == 0
    capsys.readouterr()
    return old, new
