"""sha256_file: the digest behind every manifest, sidecar and bundle hash, against hashlib itself."""

import hashlib

from anonymixer.digest import sha256_file


def test_sha256_of_a_known_message_is_the_fips_180_value(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_file_of_several_read_chunks_hashes_whole(tmp_path):
    data = bytes(range(256)) * (10 * 4096 + 3)  # 10 MiB + 768 bytes: ten full 1 MiB reads and a tail
    path = tmp_path / "big"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
