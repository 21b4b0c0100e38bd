"""The generative families' gates refuse an undertrained network, and nothing is written."""

from __future__ import annotations

import pytest

from maas.build.repository import BuildOptions, build_repository
from maas.errors import GateError


def test_an_undertrained_vae_fails_its_gate_and_nothing_is_written(tmp_path, checkpoint_path):
    from maas.training.vae import VAEConfig, export_vae, train_vae

    out = tmp_path / "vae" / "checkpoint.pt"
    train_vae(VAEConfig(out=str(out), epochs=1, judge=str(checkpoint_path), plot=False))
    export_vae(out, out.with_name("encoder.onnx"))
    target = tmp_path / "repo"
    with pytest.raises(GateError) as err:
        build_repository(
            out, out.with_name("encoder.onnx"), target,
            build=BuildOptions(variant="onnx", speed_seconds=0.05), family="vae",
        )  # fmt: skip
    assert "no variant of vae_encoder passed; nothing written" in str(err.value)
    assert "reconstructions keeping their digit gate failed for onnx" in str(err.value)
    assert "under the floor of 95.00%" in str(err.value)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]  # no staging folder left behind
