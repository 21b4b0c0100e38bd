"""Keys stay out of reach without a server: a short key is refused, the fleet's key file is
made afresh in a private folder (a planted link is not followed), and `maas rollout` to an
https:// URL never sends the admin key in the clear."""

from __future__ import annotations

import socket
import stat
import threading

import pytest

from maas.access import ADMIN_HEADER, Keys
from maas.errors import MaasError
from maas.fleet import write_key
from maas.rollout import _client, loaded_versions

KEY = "admin-secret-0123456789"


def test_keys_shorter_than_16_bytes_are_refused(tmp_path, monkeypatch):
    with pytest.raises(MaasError, match="at least 16"):
        Keys(admin="short")
    with pytest.raises(MaasError, match="at least 16"):
        Keys(client="fifteen-bytes!!")
    (tmp_path / "admin.key").write_text("0123456789\n")
    with pytest.raises(MaasError, match=r"admin\.key: a key of 10 bytes"):
        Keys.from_env(tmp_path / "admin.key")
    monkeypatch.setenv("MAAS_CLIENT_KEY", "abc")
    with pytest.raises(MaasError, match="MAAS_CLIENT_KEY: a key of 3 bytes"):
        Keys.from_env()
    assert len(Keys().admin) >= 16 and Keys(client="x" * 16).client == "x" * 16


def test_the_key_file_is_private_and_a_planted_link_is_not_followed(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    (state / "admin.key").symlink_to(victim)
    write_key(state / "admin.key", KEY)
    assert victim.read_text() == "someone else's file\n"  # the link was replaced, not followed
    key = state / "admin.key"
    assert not key.is_symlink() and key.read_text() == KEY + "\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_rollout_over_https_never_sends_the_key_in_the_clear():
    """A listener that records what reaches it: https:// gets a TLS handshake (no key in it)
    and fails; the same request over http:// shows the key, so the check can fail."""
    seen: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def accept():
        for _ in range(2):
            conn, _ = listener.accept()
            conn.settimeout(2)
            try:
                seen.append(conn.recv(65536))
            except OSError:
                seen.append(b"")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    headers = {ADMIN_HEADER: KEY}
    for scheme in ("https", "http"):
        with pytest.raises(Exception):  # noqa: B017 - no server answers either way
            loaded_versions(_client(f"{scheme}://127.0.0.1:{port}"), "classifier", headers)
    thread.join(10)
    listener.close()
    tls, plain = seen
    assert KEY.encode() not in tls and tls[:1] == b"\x16"  # a TLS handshake record
    assert KEY.encode() in plain
