"""The built repository: every config parses with Triton's ModelConfig schema and is wired
consistently; the build is atomic; kept TensorRT plans are served only where they load."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from maas import catalog
from maas.backends import plan_problems
from maas.build import configs, shipped
from maas.build.configs import read_config, write_config
from maas.build.repository import BuildOptions, build_repository
from maas.build.tensorrt import Profile, plan_fits
from maas.errors import ConfigError
from maas.runtime import names as C
from maas.runtime.images import decode
from maas.runtime.series import Window

FAST = BuildOptions(variant="onnx", speed_seconds=0.05)


def all_configs(root: Path) -> dict[Path, mc.ModelConfig]:
    paths = [*root.glob("*/config.pbtxt"), *root.glob("*/configs/*.pbtxt")]
    return {p: read_config(p) for p in paths}


def test_every_config_parses_with_tritons_schema(repository):
    parsed = all_configs(repository)
    assert {p.parent.name if p.name == "config.pbtxt" else p.name for p in parsed} == {
        C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS, C.ENSEMBLE,
        C.FORECASTER_PREPROCESS, C.FORECASTER_RNN, C.FORECASTER_POSTPROCESS, C.FORECASTER,
        C.FORECASTER_STREAM,
        C.VAE_ENCODE, C.VAE_DECODE, C.VAE_RECONSTRUCT, C.VAE_SAMPLE, C.VAE_PREPROCESS,
        C.VAE_ENCODER, C.VAE_DECODER, C.VAE_PNG, C.VAE_NOISE, C.VAE_SAMPLE_PNG,
        C.GENERATOR, C.GAN_NOISE, C.GAN_GENERATOR, C.GAN_PNG,
        "colours", "colours_preprocess", "colours_model", "colours_postprocess",  # a user's own
        "python.pbtxt", "onnxruntime_tensorrt.pbtxt",
    }  # fmt: skip
    # Each core model runs on Triton's onnxruntime backend as written, with both alternates.
    for core in (C.CLASSIFIER, C.FORECASTER_RNN, C.VAE_ENCODER, C.VAE_DECODER, C.GAN_GENERATOR):
        assert read_config(repository / core / "config.pbtxt").backend == "onnxruntime"
        assert {p.name for p in (repository / core / "configs").iterdir()} == {
            "python.pbtxt", "onnxruntime_tensorrt.pbtxt",
        }  # fmt: skip
    # One request is one call where it asks for COUNT images from one SEED; its core model,
    # which gets those COUNT rows as a batch, batches like every other.
    unbatched = {C.VAE_SAMPLE, C.VAE_NOISE, C.VAE_SAMPLE_PNG, C.GENERATOR, C.GAN_NOISE, C.GAN_PNG}
    for path, config in parsed.items():
        if config.name in unbatched:
            assert config.max_batch_size == 0, path  # a dynamic batcher only for admission:
            assert not config.dynamic_batching.preferred_batch_size, path
            continue
        assert config.max_batch_size > 0, path
        # Every other model batches dynamically: the stream too (it keeps its sequences).
        assert config.platform == "ensemble" or config.HasField("dynamic_batching"), path
        assert not config.HasField("sequence_batching"), path
        assert config.name == path.parent.name or path.parent.name == "configs"


def test_the_stream_is_one_instance_batched_dynamically_with_its_capacity():
    """Whatever the options say, the stream runs as one instance (its sequences live in that
    stub); no sequence batcher (its backlog held new STARTs hostage); its table's bounds come
    from the declaration."""
    window = Window(48, 12, (-1.0,) * 12, (1.0,) * 12)
    (step,) = catalog.forecaster_stream(window, idle_seconds=30).steps
    opts = configs.ServingOptions(instances={C.FORECASTER_STREAM: 4, C.PREPROCESS: 3})
    config = configs.python_config(step, opts)
    assert [g.count for g in config.instance_group] == [1]
    assert config.HasField("dynamic_batching") and not config.HasField("sequence_batching")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params[C.IDLE_SECONDS] == "30" and int(params[C.MAX_SEQUENCES]) >= 1024
    assert set(shipped.check(step).PARAMETERS) == set(step.config_parameters)


def test_every_python_model_ships_the_installed_runtime_and_says_which(repository):
    """Each Python-backend model's version folder holds maas.runtime as installed (the same
    bytes) and a model.py that imports its step from it; its config stamps the version and
    hash; each has an environment, named as Triton documents, whose activate script drops
    the server's storage keys, and only the image steps' brings a package (Pillow)."""
    runtime = {p.name: p.read_bytes() for p in shipped.runtime_files()}
    folders = [p.parent for p in repository.glob("*/1/model.py")]
    folders += [p.parent for p in repository.glob(f"{C.CLASSIFIER}/*/model.py")]
    assert len(folders) > 15
    for folder in folders:
        copied = {p.name: p.read_bytes() for p in (folder / "maas_runtime").glob("*.py")}
        assert copied == runtime, folder
        model = (folder / "model.py").read_text()
        assert "from maas_runtime." in model and "import maas\n" not in model, folder
    for config in (read_config(p) for p in repository.glob("*/config.pbtxt")):
        if config.backend != "python":
            continue
        stamps = {k: v.string_value for k, v in config.parameters.items()}
        assert stamps["maas_runtime_sha256"] == shipped.runtime_sha256(), config.name
        # Every step's stub starts through its env's activate script (no storage keys); the
        # image steps' env brings Pillow too.
        assert stamps["EXECUTION_ENV_PATH"] == "$$TRITON_MODEL_DIRECTORY/env", config.name
        activate = (repository / config.name / "env" / "bin" / "activate").read_text()
        assert "$(compgen -v AWS_)" in activate, config.name
        images = config.name in (C.PREPROCESS, C.VAE_PREPROCESS, "colours_preprocess")
        assert ("PYTHONPATH" in activate) == images, config.name
    for core in (C.CLASSIFIER, C.FORECASTER_RNN, C.VAE_ENCODER, C.VAE_DECODER, C.GAN_GENERATOR):
        python = read_config(repository / core / "configs" / "python.pbtxt")  # the alternate
        env = python.parameters["EXECUTION_ENV_PATH"].string_value
        assert env == "$$TRITON_MODEL_DIRECTORY/env", core
        assert (repository / core / "env" / "bin" / "activate").is_file(), core


def test_composing_models_batch_and_warm_up(repository):
    parsed = {
        p.parent.name: c for p, c in all_configs(repository).items() if p.name == "config.pbtxt"
    }
    for name in (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS):
        assert parsed[name].HasField("dynamic_batching"), name
        assert parsed[name].model_warmup, name
    # No delay and no preferred size (an idle instance answers at once), warm-ups at batch 1:
    # every config loads at whatever max_batch_size a tool such as Model Analyzer gives it.
    for config in parsed.values():
        assert config.dynamic_batching.max_queue_delay_microseconds == 0, config.name
        assert not config.dynamic_batching.preferred_batch_size, config.name
        assert {w.batch_size for w in config.model_warmup} <= {1}, config.name
    warm = parsed[C.PREPROCESS].model_warmup[0].inputs[C.IMAGE].input_data_file
    blob = (repository / C.PREPROCESS / "warmup" / warm).read_bytes()
    (length,) = struct.unpack("<I", blob[:4])  # Triton's TYPE_STRING element: length, bytes
    assert length == len(blob) - 4 and decode(blob[4:]).size == (32, 32)


def test_ensemble_wiring_matches_the_composing_models(repository):
    parsed = {
        p.parent.name: c for p, c in all_configs(repository).items() if p.name == "config.pbtxt"
    }
    ensemble = parsed[C.ENSEMBLE]
    produced = {i.name for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = parsed[step.model_name]
        assert set(step.input_map) <= {i.name for i in model.input}
        assert set(step.output_map) <= {o.name for o in model.output}
        assert set(step.input_map.values()) <= produced, f"{step.model_name} reads unset tensors"
        produced |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= produced
    # Shapes agree across the hand-offs: preprocess output = classifier input, etc.
    assert parsed[C.PREPROCESS].output[0].dims == parsed[C.CLASSIFIER].input[0].dims
    assert parsed[C.CLASSIFIER].output[0].dims == parsed[C.POSTPROCESS].input[0].dims == [10]


def test_the_native_config_and_its_python_alternate_serve_the_same_versions(repository):
    parsed = all_configs(repository)
    ort_cfg = parsed[repository / C.CLASSIFIER / "config.pbtxt"]
    py_cfg = parsed[repository / C.CLASSIFIER / "configs" / "python.pbtxt"]
    assert ort_cfg.backend == "onnxruntime" and py_cfg.backend == "python"
    assert not ort_cfg.optimization.HasField("graph")  # the backend optimises at load
    assert ort_cfg.input == py_cfg.input and ort_cfg.output == py_cfg.output
    assert ort_cfg.version_policy == py_cfg.version_policy
    assert list(py_cfg.version_policy.specific.versions) == [1]
    assert (repository / C.CLASSIFIER / "1" / "model.onnx").is_file()
    trt_cfg = parsed[repository / C.CLASSIFIER / "configs" / "onnxruntime_tensorrt.pbtxt"]
    accelerators = trt_cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt", "cuda"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert accelerators[0].parameters["trt_engine_cache_path"].endswith(f"/{C.CLASSIFIER}")
    assert trt_cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    # One portable graph for every provider: standard operators, never ORT's offline form.
    import onnx

    served = onnx.load(str(repository / C.CLASSIFIER / "1" / "model.onnx"))
    assert not trt_cfg.default_model_filename and served.ir_version <= 10
    assert {n.domain for n in served.graph.node} <= {"", "ai.onnx"}


def test_labels_come_from_the_checkpoint_and_normalisation_is_the_networks(repository, checkpoint):
    for model in (C.POSTPROCESS, C.CLASSIFIER):
        labels = (repository / model / "labels.txt").read_text().splitlines()
        assert labels == checkpoint.class_names
    classifier = read_config(repository / C.CLASSIFIER / "config.pbtxt")
    assert classifier.output[0].label_filename == "labels.txt"  # the classification extension
    assert classifier.input[0].format == mc.ModelInput.FORMAT_NCHW
    pre = read_config(repository / C.PREPROCESS / "config.pbtxt")
    stamps = {"maas_version", "maas_runtime_sha256", "EXECUTION_ENV_PATH"}
    assert set(pre.parameters) - stamps == {"max_pixels"}  # no constants: the network's own


def test_read_config_names_the_file_and_what_triton_would_refuse(repository, tmp_path):
    misspelt = tmp_path / "misspelt.pbtxt"
    misspelt.write_text('name: "x"\nmax_batch_sise: 4\n')
    with pytest.raises(ConfigError, match=rf"{misspelt}.*max_batch_sise"):
        configs.read_config(misspelt)
    # Valid for the schema, refused by Triton at load (a tool that lowers max_batch_size
    # without the preferred size does this); tests/e2e/test_launcher.py shows Triton agree.
    config = configs.read_config(repository / C.PREPROCESS / "config.pbtxt")
    config.dynamic_batching.preferred_batch_size[:] = [16]
    config.max_batch_size = 8
    refused = tmp_path / "preprocess" / "config.pbtxt"
    with pytest.raises(ConfigError, match=r"preferred size 16 must be <= max_batch_size 8"):
        configs.write_config(refused, config)
    assert not refused.exists()
    refused.parent.mkdir()
    refused.write_text(configs.to_pbtxt(config))
    with pytest.raises(ConfigError, match=rf"{refused}: model 'preprocess'"):
        configs.read_config(refused)
    config.dynamic_batching.preferred_batch_size[:] = [0]
    assert configs.check(config) == ["dynamic batching preferred size 0 must be positive"]


def test_failed_build_leaves_repository_untouched(tmp_path, checkpoint_path, onnx_path):
    target = build_repository(checkpoint_path, onnx_path, tmp_path / "repo", build=FAST)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(FileNotFoundError, match="maas export"):
        build_repository(checkpoint_path, tmp_path / "missing.onnx", target)
    with pytest.raises(ValueError, match="max_batch_size"):
        build_repository(
            checkpoint_path, onnx_path, target, configs.ServingOptions(max_batch_size=0)
        )
    after = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging folder left


# Kept TensorRT plans and the server's TensorRT ----------------------------------------


def test_kept_plans_serve_only_where_they_fit():
    profile = {"min_batch": 1, "opt_batch": 16, "max_batch": 64}
    entry = {"cc_model_filenames": {"8.9": "model_sm89.plan"}, "tensorrt": {"profile": profile}}
    assert plan_fits(entry, "8.9", Profile(1, 16, 64))
    assert not plan_fits(entry, "9.0", Profile(1, 16, 64))  # built on another GPU
    assert not plan_fits(entry, "8.9", Profile(1, 16, 128))  # profile max too small


def test_serve_refuses_plans_it_cannot_load(tmp_path):
    folder = tmp_path / "m"
    config = mc.ModelConfig(name="m", platform="tensorrt_plan", max_batch_size=8)
    config.version_policy.specific.versions.append(1)
    write_config(folder / "config.pbtxt", config)
    (folder / "1").mkdir()
    built = {"libraries": {"tensorrt": "10.7.0.23"}}  # the wheel's version: a 4th number
    (folder / "1" / "manifest.json").write_text(json.dumps(built))
    [no_backend] = plan_problems(tmp_path, False, None)
    assert "no tensorrt backend" in no_backend
    for other_release in ("10.5.0", "10.7.1"):  # a plan is only good on its own X.Y.Z
        [other] = plan_problems(tmp_path, True, other_release)
        assert (
            f"built with TensorRT 10.7.0.23, this tritonserver loads TensorRT {other_release}"
            in other
        )
    assert plan_problems(tmp_path, True, "10.7.0") == []  # libnvinfer's name: X.Y.Z only
    assert plan_problems(tmp_path, True, None) == []  # unknown: Triton will say


def test_a_bounded_wait_covers_every_step_but_a_network_called_from_inside(
    tmp_path, forecaster_path, forecaster_onnx
):
    """queue_timeout_ms on both forecaster pipelines: every step's queue refuses a request
    that waited that long, but not forecaster_rnn's, which the stream calls from inside
    after recording the value (a refusal there is no refusal of the stream's request)."""
    opts = configs.ServingOptions(queue_timeout_ms=50)
    fast = BuildOptions(variant="onnx", speed_seconds=0.1)
    repo = build_repository(
        forecaster_path, forecaster_onnx, tmp_path / "r", opts, fast, "forecaster"
    )
    waits = {
        path.relative_to(repo).as_posix(): read_config(path).dynamic_batching.default_queue_policy
        for path in [*repo.glob("*/config.pbtxt"), *repo.glob("*/configs/*.pbtxt")]
    }
    bounded = {p for p, policy in waits.items() if policy.default_timeout_microseconds == 50_000}
    steps = {f"{m}/config.pbtxt" for m in (C.FORECASTER_PREPROCESS, C.FORECASTER_POSTPROCESS,
                                           C.FORECASTER_STREAM)}  # fmt: skip
    assert bounded == steps, sorted(waits)
