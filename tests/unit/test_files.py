"""maas.files.atomic_write: what every writer of a file someone else reads goes through (configs
Triton loads, nginx's conf with keys, the fleet's state and admin key, checkpoints)."""

from __future__ import annotations

import stat

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from maas.build.configs import read_config, write_config
from maas.files import atomic_write


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text("old\n")

    def half(f):
        f.write(b"new, half of it")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt"]


def test_a_planted_link_is_replaced_not_followed_and_the_file_is_private(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's\n")
    path = tmp_path / "nginx.conf"
    path.symlink_to(victim)
    atomic_write(path, lambda f: f.write(b"keys\n"))
    assert victim.read_text() == "someone else's\n"
    assert not path.is_symlink() and path.read_text() == "keys\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_config_is_written_whole_and_readable_by_the_server(tmp_path):
    """Triton may run as another user (a container's): a config is 0644, as the build's other
    files, not private."""
    path = tmp_path / "m" / "config.pbtxt"
    write_config(path, mc.ModelConfig(name="m", backend="python", max_batch_size=4))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_config(path).max_batch_size == 4
    assert [p.name for p in path.parent.iterdir()] == ["config.pbtxt"]
