"""Specification of anonymixer.keys: key files, fingerprints, salts and the bit-exact ``secret -> z``."""

import hashlib
import json
import logging
import os
import re
import traceback

import numpy as np
import pytest

from anonymixer import keys
from anonymixer.errors import AnonymixerError, KeyFileError
from anonymixer.keys import Key, derive_z, generate_key, load_key, resolve_salt, save_key

GOLDEN_SECRET = bytes(range(32))
GOLDEN_SALT = b"anonymixer-test-salt"
# Computed once and frozen (derivation anonymixer/keys/v2): any change of KDF, XOF, sampler or
# dtype changes every identity of every deployment.
GOLDEN_FINGERPRINT = "6253-e64c-9f21-2f06"
GOLDEN_Z_SHA256 = "7df2bee18b96da3890ef8169b8c96b60e89647c0a78316e19ae90e652ebad555"
GOLDEN_Z_HEAD = ["0x1.39e0540000000p-1", "0x1.377ace0000000p-2", "0x1.a958fa0000000p+0", "-0x1.1dfb1c0000000p-2"]
GOLDEN_ROTATION_HEAD = ["-0x1.bda83c7cbea80p-1", "-0x1.64997a6bc47c2p-2", "0x1.0223545f95806p-1"]
# The same secret under the built-in default salt (no salt given, $ANONYMIXER_SALT unset): a site
# that relies on the default keeps its identities only while these stay.
GOLDEN_DEFAULT_SALT = b"anonymixer/v1/default-deployment-salt"
GOLDEN_Z_DEFAULT_SALT_SHA256 = "f3f5aeace8346afe28698866121dc136a8ae23558fc7d05a1297d0de762b2457"
GOLDEN_Z_DEFAULT_SALT_HEAD = ["-0x1.e1a3660000000p-1", "0x1.7f58ae0000000p+1", "0x1.ad37640000000p-2",
                              "-0x1.569b8e0000000p-3"]

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def key():
    return Key(GOLDEN_SECRET)


@pytest.fixture
def key_file(tmp_path, key):
    path = tmp_path / "identity.key"
    save_key(key, path)
    return path


def _rewrite(path, mutate):
    record = json.loads(path.read_text())
    mutate(record)
    path.write_text(json.dumps(record))


def _assert_clean_error(excinfo, path):
    """One line, names the file, and no trace of the secret anywhere in the exception chain."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    rendered = "".join(traceback.format_exception(excinfo.value))
    secret_hex = GOLDEN_SECRET.hex()
    for piece in (secret_hex, secret_hex[:16], secret_hex[-16:]):
        assert piece not in rendered


# --- the bit-exact secret -> z ----------------------------------------------------------------

def test_golden_fingerprint(key):
    assert key.fingerprint == GOLDEN_FINGERPRINT


def test_golden_z_bytes(key):
    z = derive_z(key, GOLDEN_SALT)
    assert hashlib.sha256(z.tobytes()).hexdigest() == GOLDEN_Z_SHA256


def test_golden_z_first_values_exact(key):
    z = derive_z(key, GOLDEN_SALT)
    assert [float(v).hex() for v in z[:4]] == GOLDEN_Z_HEAD


def test_golden_rotation_stream_float64_exact(key):
    values = keys.derive_normals(key, GOLDEN_SALT, {"rotation": 3})["rotation"]
    assert values.dtype == np.float64
    assert [float(v).hex() for v in values] == GOLDEN_ROTATION_HEAD


def test_derivation_spec_is_versioned():
    assert keys.KEY_DERIVATION == "anonymixer/keys/v2"


def test_key_path_uses_no_numpy_random_generator(key, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("numpy.random used on the key path")

    for name in ("Generator", "Philox", "PCG64", "default_rng", "standard_normal", "normal", "seed"):
        monkeypatch.setattr(np.random, name, refuse)
    z = derive_z(key, GOLDEN_SALT)
    assert hashlib.sha256(z.tobytes()).hexdigest() == GOLDEN_Z_SHA256


def test_streams_follow_the_documented_spec(key):
    """SHAKE-256 of prefix + name + NUL + scrypt seed, 53-bit uniforms, then the normal quantile.

    The reference quantile is Python's ``statistics.NormalDist`` (its own AS241, possibly C)."""
    import statistics

    seed = hashlib.scrypt(GOLDEN_SECRET, salt=GOLDEN_SALT, n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=32)
    raw = hashlib.shake_256(b"anonymixer/v2/project\0" + seed).digest(8 * 64)
    uniforms = [((int.from_bytes(raw[i:i + 8], "little") >> 12) + 0.5) / 2**52 for i in range(0, len(raw), 8)]
    expected = [statistics.NormalDist().inv_cdf(u) for u in uniforms]
    got = keys.derive_normals(key, GOLDEN_SALT, {"project": 64})["project"]
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


def test_streams_are_domain_separated(key):
    streams = keys.derive_normals(key, GOLDEN_SALT, {"z": 16, "rotation": 16})
    assert not np.array_equal(streams["z"], streams["rotation"])
    assert np.array_equal(streams["z"].astype(np.float32), derive_z(key, GOLDEN_SALT, dim=16))


def test_a_longer_stream_starts_with_the_shorter_one(key):
    seed = keys.key_seed(key, GOLDEN_SALT)
    assert np.array_equal(keys.stream_normals(seed, "z", 100)[:10], keys.stream_normals(seed, "z", 10))


def test_own_log_matches_libm_to_an_ulp_or_two():
    import math

    for x in (1e-300, 2.0**-54, 1e-10, 0.001, 0.0749, 0.3, 0.7071067811865476, 0.999999):
        assert keys._log(x) == pytest.approx(math.log(x), rel=5e-16)


def test_extreme_uniforms_give_finite_tails():
    lowest = keys._normal_quantile(0.5 * 2.0**-52)
    highest = keys._normal_quantile(((2**52 - 1) + 0.5) * 2.0**-52)
    assert highest == -lowest
    assert 8.0 < highest < 8.5


def test_golden_z_under_the_default_salt(monkeypatch, key):
    monkeypatch.delenv("ANONYMIXER_SALT", raising=False)
    z = derive_z(key)
    assert [float(v).hex() for v in z[:4]] == GOLDEN_Z_DEFAULT_SALT_HEAD
    assert hashlib.sha256(z.tobytes()).hexdigest() == GOLDEN_Z_DEFAULT_SALT_SHA256


def test_z_is_float32_of_requested_dim(key):
    z = derive_z(key, GOLDEN_SALT, dim=18)
    assert z.shape == (18,) and z.dtype == np.float32


def test_z_rejects_non_positive_dim(key):
    with pytest.raises(ValueError, match="dim"):
        derive_z(key, GOLDEN_SALT, dim=0)


def test_same_secret_and_salt_give_identical_z(key):
    assert np.array_equal(derive_z(key, GOLDEN_SALT), derive_z(Key(GOLDEN_SECRET), GOLDEN_SALT))


def test_different_salt_gives_different_z(key):
    assert not np.array_equal(derive_z(key, GOLDEN_SALT), derive_z(key, b"another-deployment"))


def test_different_secret_gives_different_z(key):
    other = Key(bytes(range(1, 33)))
    assert not np.array_equal(derive_z(key, GOLDEN_SALT), derive_z(other, GOLDEN_SALT))


def test_z_is_approximately_standard_normal(key):
    z = derive_z(key, GOLDEN_SALT).astype(np.float64)
    assert abs(z.mean()) < 0.2
    assert abs(z.std() - 1.0) < 0.15


def test_str_salt_is_utf8_encoded(key):
    assert np.array_equal(derive_z(key, "anonymixer-test-salt"), derive_z(key, GOLDEN_SALT))


# --- salts ------------------------------------------------------------------------------------

def test_salt_defaults_without_value_or_env(monkeypatch):
    monkeypatch.delenv("ANONYMIXER_SALT", raising=False)
    assert resolve_salt(None) == GOLDEN_DEFAULT_SALT


def test_salt_from_env_beats_default(monkeypatch):
    monkeypatch.setenv("ANONYMIXER_SALT", "site-a")
    assert resolve_salt(None) == b"site-a"


def test_explicit_salt_beats_env(monkeypatch):
    monkeypatch.setenv("ANONYMIXER_SALT", "site-a")
    assert resolve_salt("site-b") == b"site-b"


def test_derive_z_uses_env_salt_when_none_given(monkeypatch, key):
    monkeypatch.setenv("ANONYMIXER_SALT", GOLDEN_SALT.decode())
    assert hashlib.sha256(derive_z(key).tobytes()).hexdigest() == GOLDEN_Z_SHA256


def test_empty_salt_is_rejected():
    with pytest.raises(AnonymixerError, match="empty"):
        resolve_salt(b"")


def test_empty_env_salt_is_rejected(monkeypatch):
    monkeypatch.setenv("ANONYMIXER_SALT", "")
    with pytest.raises(AnonymixerError, match="ANONYMIXER_SALT"):
        resolve_salt(None)


# --- the Key object -------------------------------------------------------------------------------

def test_fingerprint_is_four_groups_of_four_hex():
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", generate_key().fingerprint)


def test_generated_keys_differ():
    assert generate_key() != generate_key()


def test_repr_and_str_show_fingerprint_not_secret(key):
    for text in (repr(key), str(key)):
        assert GOLDEN_SECRET.hex() not in text
        assert GOLDEN_FINGERPRINT in text


def test_key_rejects_wrong_secret_length():
    with pytest.raises(ValueError, match="32 bytes") as excinfo:
        Key(b"\xab" * 31)
    assert "ab" * 31 not in str(excinfo.value)


# --- saving -----------------------------------------------------------------------------------

def test_saved_file_has_documented_format(key_file, key):
    record = json.loads(key_file.read_text(encoding="utf-8"))
    assert record == {"format": "anonymixer-key", "version": 1,
                      "secret": GOLDEN_SECRET.hex(), "fingerprint": GOLDEN_FINGERPRINT}


@posix_only
def test_save_creates_mode_0600(key_file):
    assert os.stat(key_file).st_mode & 0o777 == 0o600


def test_save_refuses_to_overwrite(key_file):
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="--force") as excinfo:
        save_key(generate_key(), key_file)
    _assert_clean_error(excinfo, key_file)
    assert key_file.read_bytes() == before


@posix_only
def test_overwrite_replaces_and_keeps_0600(tmp_path):
    path = tmp_path / "identity.key"
    path.write_text("old")
    os.chmod(path, 0o644)
    new = generate_key()
    save_key(new, path, overwrite=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key(path) == new
    assert os.listdir(tmp_path) == ["identity.key"]  # no temp file left behind


def test_failed_overwrite_leaves_no_temp_file(tmp_path, key):
    target = tmp_path / "identity.key"
    (target / "occupied").mkdir(parents=True)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(KeyFileError) as excinfo:
        save_key(key, target, overwrite=True)
    _assert_clean_error(excinfo, target)
    assert sorted(os.listdir(tmp_path)) == ["identity.key"]


def test_save_into_missing_directory_is_clear(tmp_path, key):
    path = tmp_path / "nope" / "identity.key"
    with pytest.raises(KeyFileError, match="does not exist") as excinfo:
        save_key(key, path)
    _assert_clean_error(excinfo, path)


# --- loading ----------------------------------------------------------------------------------

def test_round_trip_keeps_fingerprint_and_z(key_file, key):
    loaded = load_key(key_file)
    assert loaded.fingerprint == key.fingerprint
    assert np.array_equal(derive_z(loaded, GOLDEN_SALT), derive_z(key, GOLDEN_SALT))


def test_load_accepts_file_without_fingerprint(key_file):
    _rewrite(key_file, lambda r: r.pop("fingerprint"))
    assert load_key(key_file).fingerprint == GOLDEN_FINGERPRINT


def test_load_missing_file(tmp_path):
    path = tmp_path / "missing.key"
    with pytest.raises(KeyFileError, match="does not exist") as excinfo:
        load_key(path)
    _assert_clean_error(excinfo, path)


def test_load_directory(tmp_path):
    with pytest.raises(KeyFileError, match="directory") as excinfo:
        load_key(tmp_path)
    _assert_clean_error(excinfo, tmp_path)


@posix_only
@pytest.mark.skipif(os.name == "posix" and os.geteuid() == 0, reason="root reads any file")
def test_load_unreadable_file(key_file):
    os.chmod(key_file, 0)
    with pytest.raises(KeyFileError, match="permission denied") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_permission_error_is_reported(key_file, monkeypatch):
    # Simulated, so that it also runs as root (where chmod 000 does not stop reads).
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(key_file))

    monkeypatch.setattr(keys.os, "open", deny)
    with pytest.raises(KeyFileError, match="permission denied") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_empty_file(key_file):
    key_file.write_bytes(b"")
    with pytest.raises(KeyFileError, match="empty") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_truncated_json(key_file):
    key_file.write_bytes(key_file.read_bytes()[:-40])
    with pytest.raises(KeyFileError, match="not a JSON key file") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_non_utf8_file(key_file):
    key_file.write_bytes(b"\xff\xfe" + key_file.read_bytes())
    with pytest.raises(KeyFileError, match="not a JSON key file") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_wrong_format(key_file):
    _rewrite(key_file, lambda r: r.update(format="something-else"))
    with pytest.raises(KeyFileError, match="not an anonymixer key file") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_json_that_is_not_an_object(key_file):
    key_file.write_text(json.dumps([GOLDEN_SECRET.hex()]))
    with pytest.raises(KeyFileError, match="not an anonymixer key file") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_wrong_version(key_file):
    _rewrite(key_file, lambda r: r.update(version=2))
    with pytest.raises(KeyFileError, match="version 2") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_secret_of_wrong_length(key_file):
    _rewrite(key_file, lambda r: r.update(secret=r["secret"][:-1]))
    with pytest.raises(KeyFileError, match="64 lowercase hexadecimal") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_secret_with_non_hex_characters(key_file):
    _rewrite(key_file, lambda r: r.update(secret="z" + r["secret"][1:]))
    with pytest.raises(KeyFileError, match="64 lowercase hexadecimal") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


def test_load_fingerprint_mismatch(key_file):
    _rewrite(key_file, lambda r: r.update(secret="ff" + r["secret"][2:]))
    with pytest.raises(KeyFileError, match="does not match") as excinfo:
        load_key(key_file)
    _assert_clean_error(excinfo, key_file)


@posix_only
def test_load_warns_when_group_or_others_can_read(key_file, caplog):
    os.chmod(key_file, 0o644)
    with caplog.at_level(logging.WARNING, logger="anonymixer.keys"):
        load_key(key_file)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(key_file) in warnings[0].getMessage() and "chmod 600" in warnings[0].getMessage()
    assert GOLDEN_SECRET.hex() not in caplog.text


@posix_only
def test_load_is_quiet_for_mode_0600(key_file, caplog):
    with caplog.at_level(logging.WARNING, logger="anonymixer.keys"):
        load_key(key_file)
    assert not caplog.records


def test_logs_never_contain_the_secret(tmp_path, caplog):
    path = tmp_path / "identity.key"
    with caplog.at_level(logging.DEBUG):
        save_key(Key(GOLDEN_SECRET), path)
        save_key(Key(GOLDEN_SECRET), path, overwrite=True)
        os.chmod(path, 0o644)
        derive_z(load_key(path), GOLDEN_SALT)
    assert caplog.records  # the test would be vacuous without log output
    assert GOLDEN_SECRET.hex() not in caplog.text
