"""A contract test of what maas asks TensorRT for, not a test of TensorRT.

TensorRT cannot be installed here, and maas reaches it only through Polygraphy's loaders
(build/tensorrt.py), which install without it and import it lazily. So these tests build the
loaders without calling them and read back what they were asked for (the profile, the
precision flags, the workspace, the timing cache), and run maas's handling of a missing, broken
or wrong TensorRT for real. The Q/DQ graph trt-int8 hands to TensorRT: test_quantize.py; the
real build where TensorRT and a GPU exist: -m gpu, test_tensorrt_gpu.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from maas.build import tensorrt as T
from maas.errors import BuildError, MaasError, TensorRTError, TensorRTUnavailable
from maas.spec import Step, Tensor

CORE = Step(
    "m",
    "core",
    inputs=(Tensor("X", "FP32", (3, 8, 8)), Tensor("M", "FP32", (4,))),
    outputs=(Tensor("Y", "FP32", (2,)),),
)
WORKSPACE = "WORKSPACE"  # what the double's MemoryPoolType.WORKSPACE is
NO_TENSORRT = importlib.util.find_spec("tensorrt") is None
without_tensorrt = pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT is installed here")


def tensorrt_double(version: str) -> types.ModuleType:
    """A `tensorrt` module with only what maas reads before a build: its version and the
    workspace pool's name. Nothing in it builds; a test that reached TensorRT would fail."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=WORKSPACE)
    return trt


def loaders(tmp_path, precision="fp16", cache_file=None, **kw) -> T.Loaders:
    options = T.EngineOptions(precision, **kw)
    trt = tensorrt_double("10.5.0")
    return T.engine_loaders(tmp_path / "model.onnx", CORE, options, trt, cache_file)


# What the loaders ask for ----------------------------------------------------------------


def test_one_profile_from_batch_1_to_max_for_every_input(tmp_path):
    made = loaders(tmp_path, profile=T.Profile(1, 8, 32))
    [profile] = made.config.profiles
    assert list(profile) == ["X", "M"]  # every input, in the step's order
    x, m = profile["X"], profile["M"]
    assert (x.min, x.opt, x.max) == ((1, 3, 8, 8), (8, 3, 8, 8), (32, 3, 8, 8))
    assert (m.min, m.opt, m.max) == ((1, 4), (8, 4), (32, 4))
    # The network is parsed from the given ONNX, and the build uses that network and config.
    assert made.network.path == str(tmp_path / "model.onnx")
    assert made.build._network is made.network and made.build._config is made.config


@pytest.mark.parametrize(
    ("precision", "flags"), [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])]
)
def test_precision_flags_are_the_recorded_ones_and_tf32_is_off(tmp_path, precision, flags):
    config = loaders(tmp_path, precision).config
    assert T.builder_flags(precision) == flags  # what the manifest records
    assert (config.fp16, config.int8) == ("FP16" in flags, "INT8" in flags)
    assert config.tf32 is False  # TensorRT's default is on: fp32 would run in TF32
    assert (config.bf16, config.fp8) == (False, False)
    # INT8 is explicit (the graph's Q/DQ nodes): no implicit calibrator, ever.
    assert config.calibrator is None


def test_the_workspace_limit_is_the_workspace_pool(tmp_path):
    config = loaders(tmp_path, workspace_bytes=3 << 20).config
    assert config.memory_pool_limits == {WORKSPACE: 3 << 20}


def test_a_timing_cache_is_read_only_if_it_exists_and_always_saved(tmp_path):
    cache = T.timing_cache_file(tmp_path, "10.5.0", "8.9")
    first = loaders(tmp_path, cache_file=cache)
    assert first.config.timing_cache_path is None  # not there: Polygraphy would warn
    assert first.build.timing_cache_path == str(cache)
    cache.write_bytes(b"TIMING")
    again = loaders(tmp_path, cache_file=cache)
    assert again.config.timing_cache_path == str(cache)
    assert again.build.timing_cache_path == str(cache)
    none = loaders(tmp_path, cache_file=None)
    assert none.config.timing_cache_path is None and none.build.timing_cache_path is None


def test_a_timing_cache_per_tensorrt_version_and_gpu():
    folder = Path("caches")
    assert T.timing_cache_file(folder, "10.5.0", "8.9") == folder / "timing-trt10.5.0-sm89.cache"
    names = {
        T.timing_cache_file(folder, version, cc).name
        for version in ("10.5.0", "10.7.0")
        for cc in ("8.9", "9.0")
    }
    assert len(names) == 4


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((0, 1, 1), "1 <= min <= opt <= max"),
        ((1, 32, 16), "1 <= min <= opt <= max"),
        ((8, 4, 64), "1 <= min <= opt <= max"),
        ((2, 16, 64), "must take batch 1"),
    ],
)
def test_a_profile_is_ordered_and_starts_at_batch_1(bad, message):
    with pytest.raises(ValueError, match=message):
        T.Profile(*bad)


# build_engine, with the TensorRT call replaced ------------------------------------------


@pytest.fixture
def tensorrt_10(monkeypatch):
    """A TensorRT 10 double found by Polygraphy's lazy import, and a GPU of compute
    capability 8.9 as torch would report it."""
    import torch

    trt = tensorrt_double("10.5.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(T, "compute_capability", lambda: "8.9")
    return trt


def builds_with(monkeypatch, build):
    """The real loaders of every build_engine call, recorded, with only their build (the
    call into TensorRT) replaced by `build`."""
    made = []
    real = T.engine_loaders

    def recorded(*args):
        made.append(real(*args))
        return dataclasses.replace(made[-1], build=build)

    monkeypatch.setattr(T, "engine_loaders", recorded)
    return made


def test_build_engine_writes_the_plan_and_keys_its_timing_cache(tensorrt_10, monkeypatch, tmp_path):
    made = builds_with(monkeypatch, lambda: b"PLAN")
    options = T.EngineOptions("int8", timing_cache_dir=tmp_path / "caches")
    out = T.build_engine(tmp_path / "qdq.onnx", tmp_path / "model.plan", CORE, options)
    assert out == tmp_path / "model.plan" and out.read_bytes() == b"PLAN"
    cache = tmp_path / "caches" / "timing-trt10.5.0-sm89.cache"  # this TensorRT and GPU
    assert (tmp_path / "caches").is_dir()
    assert made[0].build.timing_cache_path == str(cache)
    assert made[0].config.timing_cache_path is None
    assert made[0].config.int8 and made[0].network.path == str(tmp_path / "qdq.onnx")
    cache.write_bytes(b"TIMING")  # what Polygraphy saves after a real build
    T.build_engine(tmp_path / "qdq.onnx", tmp_path / "model.plan", CORE, options)
    assert made[1].config.timing_cache_path == str(cache)


def test_a_failed_build_is_one_tensorrt_error_and_writes_nothing(
    tensorrt_10, monkeypatch, tmp_path
):
    from polygraphy.logger import G_LOGGER

    def fails():  # as Polygraphy reports a parser error: logged, then raised
        G_LOGGER.critical("Failed to parse ONNX model. See error log for details.\nIn node 3")

    builds_with(monkeypatch, fails)
    options = T.EngineOptions("fp16")
    with pytest.raises(TensorRTError) as err:
        T.build_engine(tmp_path / "model.onnx", tmp_path / "out" / "model.plan", CORE, options)
    assert str(err.value) == (
        "TensorRT could not build model.onnx; its log above says why: "
        "Failed to parse ONNX model. See error log for details."
    )
    assert isinstance(err.value, MaasError)  # the CLI says it in one line
    assert not (tmp_path / "out").exists()


def test_polygraphy_errors_become_one_line_and_its_logger_is_put_back(capfd, monkeypatch):
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    monkeypatch.setattr(G_LOGGER, "colors", True)  # as on a terminal
    severity = G_LOGGER.module_severity.get()
    with pytest.raises(TensorRTError) as err, T._polygraphy("TensorRT could not load x.plan"):
        G_LOGGER.info("BUILDER-INFO")  # TensorRT's INFO lines would bury the build's table
        G_LOGGER.warning("A-WARNING")
        inside = G_LOGGER.colors  # no colour codes in a build's log (with `colored` there)
        G_LOGGER.critical("\n  Deserialization failed\nsecond line")
    assert str(err.value) == "TensorRT could not load x.plan: Deserialization failed"
    assert err.value.__cause__ is None and err.value.__suppress_context__
    said = capfd.readouterr().out
    assert "A-WARNING" in said and "BUILDER-INFO" not in said and inside is False
    assert (G_LOGGER.colors, G_LOGGER.module_severity.get()) == (True, severity)
    # Without a `failed`, Polygraphy's own exception passes through.
    with pytest.raises(PolygraphyException), T._polygraphy():
        G_LOGGER.critical("left as it is")


# engine_runner, with Polygraphy's TrtRunner replaced --------------------------------------


class RunnerDouble:
    """TrtRunner as engine_runner uses it: infer() records each feed and answers
    Y = (X[:, 0, 0, 0], M[:, 0]) per row in one output buffer it reuses, as the real runner
    does."""

    def __init__(self, engine, name):
        self.engine, self.name = engine, name
        self.feeds: list[dict[str, np.ndarray]] = []
        self._buffer = np.full((64, 2), np.nan, np.float32)

    def activate(self):
        pass

    def infer(self, feed, check_inputs=True):
        self.feeds.append(feed)
        rows = len(feed["X"])
        self._buffer[:rows] = np.stack([feed["X"][:, 0, 0, 0], feed["M"][:, 0]], axis=1)
        return {"Y": self._buffer[:rows]}

    def deactivate(self):
        pass


@pytest.fixture
def runners(tensorrt_10, monkeypatch):
    """engine_runner's TrtRunner replaced by RunnerDouble (the engine loader it is given stays
    Polygraphy's, never called); the doubles it made."""
    import polygraphy.backend.trt

    made: list[RunnerDouble] = []

    def trt_runner(engine, name):
        made.append(RunnerDouble(engine, name))
        return made[-1]

    monkeypatch.setattr(polygraphy.backend.trt, "TrtRunner", trt_runner)
    return made


def test_a_plan_that_does_not_load_is_a_tensorrt_error_naming_the_likely_cause(
    runners, monkeypatch, tmp_path
):
    """A failed activate() (Polygraphy's, for a plan of another TensorRT or GPU) is one
    TensorRTError naming the plan, this TensorRT and GPU, and the likely cause."""
    from polygraphy.logger import G_LOGGER

    def deserialization_fails(self):  # as Polygraphy's EngineFromBytes reports it
        G_LOGGER.critical("Could not deserialize engine. See log for details.")

    monkeypatch.setattr(RunnerDouble, "activate", deserialization_fails)
    plan = tmp_path / "model.plan"
    with pytest.raises(TensorRTError) as err:
        T.engine_runner(plan, CORE, 8)
    assert str(err.value) == (
        f"TensorRT could not load {plan}: usually a plan built by another TensorRT version or "
        f"for another GPU (this one: 10.5.0, sm 8.9): "
        f"Could not deserialize engine. See log for details."
    )
    assert isinstance(err.value, MaasError)
    assert len(runners) == 1


def test_a_batch_over_the_profile_max_runs_in_chunks_and_comes_back_in_order(runners, tmp_path):
    """Rows past the profile's max are fed in chunks of at most max_batch, each a contiguous
    array, and the outputs are joined in the rows' order (copied out of the runner's reused
    buffer)."""
    run = T.engine_runner(tmp_path / "model.plan", CORE, 8)
    rows = np.arange(20, dtype=np.float32)
    x = np.asfortranarray(np.broadcast_to(rows[:, None, None, None], (20, 3, 8, 8)))
    m = np.broadcast_to(-rows[:, None], (20, 4)).copy()
    out = run({"X": x, "M": m})
    [runner] = runners
    assert [{k: v.shape for k, v in feed.items()} for feed in runner.feeds] == [
        {"X": (n, 3, 8, 8), "M": (n, 4)} for n in (8, 8, 4)
    ]
    assert all(a.flags.c_contiguous for feed in runner.feeds for a in feed.values())
    assert list(out) == ["Y"]
    np.testing.assert_array_equal(out["Y"], np.stack([rows, -rows], axis=1))


# No TensorRT, a broken one, another version ----------------------------------------------


@without_tensorrt
def test_without_tensorrt_load_says_what_to_install_in_one_line(capfd, monkeypatch, tmp_path):
    from polygraphy import config

    # Even where POLYGRAPHY_AUTOINSTALL_DEPS=1, Polygraphy must not pip-install an unpinned
    # TensorRT: its install command here only leaves a mark.
    mark = tmp_path / "installed"
    monkeypatch.setattr(config, "AUTOINSTALL_DEPS", True)
    monkeypatch.setattr(config, "ASK_BEFORE_INSTALL", False)
    monkeypatch.setattr(config, "INSTALL_CMD", [sys.executable, "-c", f"open({str(mark)!r}, 'w')"])
    with pytest.raises(TensorRTUnavailable) as err:
        T.load_tensorrt()
    assert str(err.value) == T.INSTALL_HINT and "pip install 'maas[tensorrt]'" in T.INSTALL_HINT
    assert isinstance(err.value, BuildError)
    assert not mark.exists() and config.AUTOINSTALL_DEPS is False
    said = capfd.readouterr()
    assert said.out == "" and said.err == ""  # Polygraphy's several lines are not shown


@without_tensorrt
def test_without_tensorrt_build_engine_and_engine_runner_refuse_and_write_nothing(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    options = T.EngineOptions("fp16", timing_cache_dir=tmp_path / "caches")
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        T.build_engine(onnx_file, tmp_path / "model.plan", CORE, options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no plan, no caches
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        T.engine_runner(tmp_path / "model.plan", CORE, 4)


def test_a_tensorrt_that_does_not_import_is_named_with_its_cause(monkeypatch, tmp_path):
    broken = tmp_path / "site" / "tensorrt"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file')\n"
    )
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(TensorRTUnavailable) as err:
        T.load_tensorrt()
    assert str(err.value) == (
        "TensorRT is installed but does not import (libnvinfer.so.10: cannot open shared object "
        "file): pip install 'maas[tensorrt]'"
    )


@pytest.mark.parametrize("version", ["8.6.1", "11.0.0"])
def test_another_tensorrt_major_version_is_refused(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt_double(version))
    with pytest.raises(TensorRTUnavailable) as err:
        T.load_tensorrt()
    assert str(err.value) == (
        f"TensorRT {version} found; maas is written for TensorRT 10: pip install 'maas[tensorrt]'"
    )


def test_tensorrt_10_needs_a_gpu_and_is_then_the_module_polygraphy_uses(monkeypatch):
    import torch

    trt = tensorrt_double("10.5.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TensorRTUnavailable, match="TensorRT needs a CUDA GPU and torch sees none"):
        T.load_tensorrt()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loaded = T.load_tensorrt()
    assert loaded.__version__ == "10.5.0" and loaded.MemoryPoolType is trt.MemoryPoolType
