"""A contract test of MAAS's handling of TensorRT, not a test of TensorRT.

TensorRT cannot be installed here, so `FakeTensorRT` stands in for the `tensorrt` module: it
has only what build/tensorrt.py calls and returns what the TensorRT 10.5 Python API documents
it may return (None from create_timing_cache, get_timing_cache, build_serialized_network,
deserialize_cuda_engine and create_execution_context; False from set_timing_cache and
set_input_shape; a DeprecationWarning from the implicit-INT8 calibration setters since 10.1).
The GPU tests (-m gpu) run the real path where TensorRT and a GPU exist.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from maas.build import tensorrt as T
from maas.spec import Step, Tensor

CORE = Step("m", "core", inputs=(Tensor("X", "FP32", (3,)),), outputs=(Tensor("Y", "FP32", (2,)),))


class Behaviour:
    """What the double returns; each test changes what it needs."""

    def __init__(self):
        self.plan: bytes | None = b"PLAN"
        self.accept_cache = lambda data: True  # set_timing_cache's answer for a cache's data
        self.create_cache = lambda data: FakeTimingCache(data)
        self.final_cache = "cache"  # get_timing_cache: "cache" or None
        self.engine = True
        self.context = True
        self.log: list = []  # what maas did, in order


class FakeTimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self) -> bytes:
        return b"TIMING"


def fake_module(b: Behaviour) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.5.0"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Config:
        def __init__(self):
            self.flags: set[str] = {"TF32"}  # TensorRT's default

        def set_memory_pool_limit(self, pool, size):
            pass

        def add_optimization_profile(self, profile):
            b.log.append(("profile", profile.shapes))

        def set_flag(self, flag):
            self.flags.add(flag)

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def create_timing_cache(self, data):
            return b.create_cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            ok = b.accept_cache(cache.data)
            b.log.append(("set_timing_cache", cache.data, ok))
            return ok

        def get_timing_cache(self):
            return FakeTimingCache(b"") if b.final_cache else None

        @property
        def int8_calibrator(self):
            return self._calibrator

        @int8_calibrator.setter
        def int8_calibrator(self, calibrator):
            warnings.warn("int8_calibrator is deprecated", DeprecationWarning, stacklevel=2)
            self._calibrator = calibrator

        def set_calibration_profile(self, profile):
            warnings.warn("set_calibration_profile is deprecated", DeprecationWarning, 2)
            b.log.append(("calibration_profile", profile.shapes))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return object()

        def create_builder_config(self):
            b.config = Config()
            return b.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            b.log.append(("build", sorted(config.flags)))
            return b.plan

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0

        def parse(self, data):
            return True

    class Context:
        def __init__(self):
            self.shapes = {}

        def set_input_shape(self, name, shape):
            return shape[0] <= 4  # the engine's profile: batch 1..4

        def set_tensor_address(self, name, pointer):
            self.shapes[name] = pointer

    class Engine:
        def create_execution_context(self):
            return Context() if b.context else None

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if b.engine else None

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.Context = Context
    return trt


@pytest.fixture
def fake(monkeypatch, tmp_path):
    behaviour = Behaviour()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_module(behaviour))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 9))
    writes = []
    real_write = T.atomic_write

    def logged_write(path, write):
        writes.append(Path(path).name)
        real_write(path, write)

    monkeypatch.setattr(T, "atomic_write", logged_write)
    behaviour.writes = writes
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    behaviour.onnx = onnx
    return behaviour


def build(fake, tmp_path, precision="fp16", calibration=(), **kw):
    options = T.EngineOptions(precision, timing_cache_dir=tmp_path / "caches", **kw)
    return T.build_engine(fake.onnx, tmp_path / "model.plan", CORE, options, calibration)


def test_the_plan_is_written_before_the_cache_which_is_keyed_by_version_and_gpu(fake, tmp_path):
    build(fake, tmp_path)
    assert fake.writes == ["model.plan", "timing-trt10.5.0-sm89.cache"]
    assert (tmp_path / "caches" / "timing-trt10.5.0-sm89.cache").read_bytes() == b"TIMING"
    # The next build on the same TensorRT and GPU reads it.
    build(fake, tmp_path)
    assert ("set_timing_cache", b"TIMING", True) in fake.log


def test_a_refused_cache_falls_back_to_a_fresh_one(fake, tmp_path, capsys):
    (tmp_path / "caches").mkdir()
    (tmp_path / "caches" / "timing-trt10.5.0-sm89.cache").write_bytes(b"OTHER GPU")
    fake.accept_cache = lambda data: data != b"OTHER GPU"  # set_timing_cache -> False
    build(fake, tmp_path)
    assert (tmp_path / "model.plan").read_bytes() == b"PLAN"
    assert "from another TensorRT or GPU; not used" in capsys.readouterr().err
    assert [e for e in fake.log if e[0] == "set_timing_cache"][-1] == (
        "set_timing_cache",
        b"",
        True,
    )


def test_an_unreadable_cache_and_a_missing_final_cache_keep_the_plan(fake, tmp_path, capsys):
    (tmp_path / "caches").mkdir()
    (tmp_path / "caches" / "timing-trt10.5.0-sm89.cache").write_bytes(b"CORRUPT")
    fake.create_cache = lambda data: None if data else FakeTimingCache(data)
    fake.final_cache = None  # get_timing_cache -> None
    build(fake, tmp_path)
    err = capsys.readouterr().err
    assert "could not read the timing cache" in err and "timing cache not saved" in err
    assert (tmp_path / "model.plan").read_bytes() == b"PLAN"


def test_a_failed_build_is_a_clear_error_and_writes_nothing(fake, tmp_path):
    fake.plan = None
    with pytest.raises(T.TensorRTError, match="failed to build the engine"):
        build(fake, tmp_path)
    assert fake.writes == []


@pytest.mark.parametrize(
    ("precision", "flags"),
    [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])],
)
def test_fp32_means_fp32_and_the_flags_are_the_recorded_ones(fake, tmp_path, precision, flags):
    batches = [{"X": np.zeros((16, 3), np.float32)}] if precision == "int8" else ()
    build(fake, tmp_path, precision, calibration=batches)
    [(_, built)] = [e for e in fake.log if e[0] == "build"]
    assert built == sorted(flags) == sorted(T.builder_flags(precision))  # TF32 cleared


def test_int8_calibrates_on_its_own_fixed_profile_and_its_warnings_stay_inside(fake, tmp_path):
    batches = [{"X": np.zeros((16, 3), np.float32)}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as pytest's config does for maas.*
        build(fake, tmp_path, "int8", calibration=batches)
    [(_, shapes)] = [e for e in fake.log if e[0] == "calibration_profile"]
    assert shapes == {"X": ((16, 3), (16, 3), (16, 3))}
    [(_, served)] = [e for e in fake.log if e[0] == "profile"]
    assert served["X"][0] == (1, 3)  # the served profile starts at batch 1


def test_int8_without_a_full_calibration_batch_is_refused(fake, tmp_path):
    with pytest.raises(ValueError, match="fewer calibration rows than the OPT batch"):
        build(fake, tmp_path, "int8", calibration=[])
    assert fake.writes == []


def test_a_plan_must_take_batch_1():
    with pytest.raises(ValueError, match="must take batch 1"):
        T.Profile(2, 16, 64)


@pytest.mark.parametrize(("engine", "context", "message"), [
    (False, True, "usually a plan built by another TensorRT version or for another GPU"),
    (True, False, "could not create an execution context"),
])  # fmt: skip
def test_an_engine_that_does_not_load_is_a_clear_error(fake, tmp_path, engine, context, message):
    fake.engine, fake.context = engine, context
    (tmp_path / "model.plan").write_bytes(b"PLAN")
    with pytest.raises(T.TensorRTError, match=message):
        T.engine_runner(tmp_path / "model.plan", CORE, 4)


def test_a_shape_outside_the_profile_is_refused_by_name(fake):
    import torch

    context = sys.modules["tensorrt"].Context()
    T.bind_inputs(context, {"X": torch.zeros(4, 3)})
    with pytest.raises(T.TensorRTError, match=r"input X: shape \(5, 3\) is outside"):
        T.bind_inputs(context, {"X": torch.zeros(5, 3)})


def test_calibrator_callback_errors_are_logged_not_swallowed(fake, tmp_path, capsys):
    trt = sys.modules["tensorrt"]
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache's folder should be
    calibrator = T._entropy_calibrator(trt, [], 16, blocked / "calibration.cache")
    calibrator.write_calibration_cache(b"CACHE")
    assert "not written" in capsys.readouterr().err
    assert calibrator.read_calibration_cache() is None


def test_kept_plans_serve_only_where_they_fit():
    from maas.build.repository import plan_fits

    profile = {"min_batch": 1, "opt_batch": 16, "max_batch": 64}
    entry = {"cc_model_filenames": {"8.9": "model_sm89.plan"}, "tensorrt": {"profile": profile}}
    assert plan_fits(entry, "8.9", T.Profile(1, 16, 64))
    assert not plan_fits(entry, "9.0", T.Profile(1, 16, 64))  # built on another GPU
    assert not plan_fits(entry, "8.9", T.Profile(1, 16, 128))  # profile max too small


def test_serve_refuses_plans_it_cannot_load(tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    from maas.build.configs import write_config
    from maas.serve import plan_problems

    folder = tmp_path / "m"
    config = mc.ModelConfig(name="m", platform="tensorrt_plan", max_batch_size=8)
    config.version_policy.specific.versions.append(1)
    write_config(folder / "config.pbtxt", config)
    (folder / "1").mkdir()
    (folder / "1" / "manifest.json").write_text(json.dumps({"libraries": {"tensorrt": "10.7.0"}}))
    [no_backend] = plan_problems(tmp_path, False, None)
    assert "no tensorrt backend" in no_backend
    [other] = plan_problems(tmp_path, True, "10.5.0")
    assert "built with TensorRT 10.7.0, this tritonserver loads TensorRT 10.5.0" in other
    assert plan_problems(tmp_path, True, "10.7.1") == []  # same major.minor
    assert plan_problems(tmp_path, True, None) == []  # unknown: Triton will say
