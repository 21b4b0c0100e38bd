"""Build the Triton model repository: the next classifier version, gated, plus the rest.

    maas build                        # --variant auto: every buildable variant, fastest that passes
    maas build --variant ort-int8     # one variant; exits non-zero if it fails the gate
    maas build --variant trt-fp16 --trt-opt-batch 16 --trt-max-batch 64   # GPU + TensorRT

Each build adds a numbered version to `classifier/` (model file, manifest.json, and model.py for
the Python backend), keeps the newest --keep-versions folders, and has Triton serve the newest
--serve-versions of them. Configs are generated (build/configs.py); labels and normalisation
come from the checkpoint. Everything is assembled in a temporary folder beside the target and
renamed into place, so a failed build leaves the repository exactly as it was.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maas import catalog
from maas import contract as C
from maas.build import candidates as cands
from maas.build import configs, image_classifier, manifest, variants
from maas.build.gate import GateError
from maas.build.tensorrt import EngineOptions, Profile, compute_capability
from maas.training.checkpoint import Checkpoint

# The committed model.py adapters live in <checkout>/model_repository.
SOURCE_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


@dataclass(frozen=True)
class BuildOptions:
    variant: str = "auto"
    tolerance: float | None = None  # accuracy points; None: each variant's default
    keep_versions: int = 3  # classifier version folders left on disk
    calibration_images: int = 256  # training images for INT8 calibration
    profile: Profile = field(default_factory=Profile)  # TensorRT's dynamic batch
    workspace_bytes: int = 1 << 30
    cache_dir: Path = Path("artifacts/tensorrt")  # timing and calibration caches, reused
    speed_seconds: float = 0.5  # per batch size, for the manifest's speed figures

    def __post_init__(self):
        if self.keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {self.keep_versions}")


def build_repository(
    checkpoint: str | Path,
    onnx_model: str | Path,
    target: str | Path,
    opts: configs.ServingOptions | None = None,
    build: BuildOptions | None = None,
) -> Path:
    opts = opts or configs.ServingOptions()
    build = build or BuildOptions()
    checkpoint, onnx_model, target = Path(checkpoint), Path(onnx_model), Path(target).resolve()
    ckpt = Checkpoint.load(checkpoint)
    if not onnx_model.is_file():
        raise FileNotFoundError(f"no ONNX model at {onnx_model}: run `maas export` first")
    wanted = variants.resolve(build.variant)
    onnx_sha = manifest.sha256(onnx_model)
    trt = EngineOptions(
        precision="fp32",  # set per variant
        profile=build.profile,
        workspace_bytes=build.workspace_bytes,
        timing_cache=build.cache_dir / "timing.cache",
        calibration_cache=build.cache_dir / f"calibration-{onnx_sha[:12]}.cache",
    )
    if (
        any(v.runtime == "tensorrt" for v in wanted)
        and opts.max_batch_size > build.profile.max_batch
    ):
        raise ValueError(
            f"max_batch_size {opts.max_batch_size} exceeds the TensorRT profile's max "
            f"{build.profile.max_batch}: raise --trt-max-batch or lower --max-batch-size"
        )

    pre = dataclasses.replace(ckpt.preprocessing(), max_pixels=opts.max_pixels)
    pipeline = catalog.image_classifier(pre, ckpt.class_names, opts.default_top_k)
    data = image_classifier.core_data(ckpt, pipeline.core, build.calibration_images)

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maas-build-") as scratch:
        found = cands.evaluate(
            data, onnx_model, wanted, Path(scratch),
            tolerance=build.tolerance,
            intra_op_threads=opts.intra_op_threads,
            trt=trt,
            speed_seconds=build.speed_seconds,
            stop_on_error=build.variant != "auto",
        )  # fmt: skip
        chosen = _choose(found)
        print(cands.table(found, chosen))
        if chosen is None:
            failed = [
                c.verdict.message() if c.verdict else f"{c.variant.name}: {c.error}" for c in found
            ]
            raise GateError("no variant passed; nothing written:\n  " + "\n  ".join(failed))

        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
        try:
            record = {
                "checkpoint": str(checkpoint),
                "checkpoint_sha256": manifest.sha256(checkpoint),
                "onnx": str(onnx_model),
                "onnx_sha256": onnx_sha,
            }
            version = _assemble(
                staging, target, pipeline, opts, build, chosen, data, record, trt.calibration_cache
            )
            _swap_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    print(f"built {target}: classifier version {version} = {chosen.variant.name}")
    return target


def _choose(found: list[cands.Candidate]) -> cands.Candidate | None:
    """The fastest at batch 64 (what dynamic batching feeds it) among those that passed."""
    passed = [c for c in found if c.passed]
    return max(passed, key=lambda c: c.speed.images_per_s[64], default=None)


def _assemble(root, previous, pipeline, opts, build, chosen, data, record, calibration_cache):
    for step in pipeline.steps:
        if step.kind == "python":
            _write_python_step(root / step.model, step, opts)
    (root / pipeline.name / "1").mkdir(parents=True)  # an ensemble still needs a version folder
    _write(root / pipeline.name / "config.pbtxt", configs.ensemble_config(pipeline, opts))
    core = pipeline.core
    # What a kept version must match to serve beside the new one: the core's tensors.
    io = {"input": list(core.inputs[0].dims), "classes": core.outputs[0].dims[0]}
    kept = _previous_versions(previous / C.CLASSIFIER, io)
    version = max([0, *_version_numbers(previous / C.CLASSIFIER)]) + 1
    classifier = root / C.CLASSIFIER
    classifier.mkdir()
    # The adapter's source stays at the model level too (Triton ignores it there), so a build
    # into the checkout's own model_repository/ keeps the committed file.
    shutil.copy2(_source(f"{C.CLASSIFIER}/model.py"), classifier / "model.py")
    for number in kept[-(build.keep_versions - 1) :] if build.keep_versions > 1 else []:
        shutil.copytree(previous / C.CLASSIFIER / str(number), classifier / str(number))
    _write_version(
        classifier / str(version), version, chosen, data, opts, build, io, record, calibration_cache
    )

    runtimes = {v: _manifest(classifier / str(v))["runtime"] for v in _version_numbers(classifier)}
    same = [v for v, rt in runtimes.items() if rt == chosen.variant.runtime]
    if chosen.variant.runtime == "onnxruntime":
        _write(classifier / "config.pbtxt", configs.classifier_config(core, opts, same))
        _write(
            classifier / "configs" / "onnxruntime.pbtxt",
            configs.classifier_onnxruntime_config(core, opts, same),
        )
        _write(
            classifier / "configs" / "onnxruntime_tensorrt.pbtxt",
            configs.classifier_onnxruntime_tensorrt_config(core, opts, same, build.workspace_bytes),
        )
    else:
        cc_files = {}
        for v in same:
            cc_files.update(_manifest(classifier / str(v)).get("cc_model_filenames", {}))
        _write(
            classifier / "config.pbtxt",
            configs.classifier_tensorrt_config(core, opts, same, build.profile.max_batch, cc_files),
        )
    _write_warmup_files(classifier, core)
    return version


def _write_python_step(folder: Path, step, opts) -> None:
    """A Python step: its committed adapter as version 1, its config, files and warm-up."""
    (folder / "1").mkdir(parents=True)
    shutil.copy2(_source(step.adapter), folder / "1" / "model.py")
    _write(folder / "config.pbtxt", configs.python_config(step, opts))
    for name, data in step.files.items():
        _write_bytes(folder / name, data)
    _write_warmup_files(folder, step)


def _write_warmup_files(folder: Path, step) -> None:
    for warm in step.warmup:
        for name, data in warm.inputs.items():
            if isinstance(data, bytes):
                # Triton reads TYPE_STRING warm-up data as a 4-byte little-endian length, then
                # the bytes, per element.
                path = folder / "warmup" / configs.warmup_file(warm, name)
                _write_bytes(path, struct.pack("<I", len(data)) + data)


def _write_version(
    folder: Path, version, chosen, data, opts, build, io, record, calibration_cache=None
) -> None:
    variant = chosen.variant
    folder.mkdir(parents=True)
    shutil.copy2(chosen.path, folder / variant.model_file)
    entry = {
        "version": version,
        "variant": variant.name,
        "runtime": variant.runtime,
        "precision": variant.precision,
        "model_file": variant.model_file,
        "size_bytes": chosen.size_bytes,
        "io": io,
        "source": record,
        "gate": {**chosen.verdict.record(), **data.record},
        "speed_in_process": {
            "latency_ms_batch1": round(chosen.speed.latency_ms_batch1, 4),
            "images_per_s": {str(b): round(v, 1) for b, v in chosen.speed.images_per_s.items()},
            "intra_op_threads": opts.intra_op_threads if variant.runtime == "onnxruntime" else None,
        },
        "libraries": manifest.library_versions(),
        "host": manifest.host(),
        "gpu_compute_capability": None,
    }
    if variant.runtime == "onnxruntime":
        shutil.copy2(_source(f"{C.CLASSIFIER}/model.py"), folder / "model.py")
        entry["onnxruntime"] = {"graph_optimized": True}
    else:
        cc = compute_capability()
        plan = f"model_sm{cc.replace('.', '')}.plan"
        (folder / variant.model_file).rename(folder / plan)
        entry.update(model_file=plan, gpu_compute_capability=cc, cc_model_filenames={cc: plan})
        entry["tensorrt"] = {
            "profile": asdict(build.profile),
            "workspace_bytes": build.workspace_bytes,
        }
        if variant.precision == "int8" and calibration_cache and calibration_cache.is_file():
            shutil.copy2(calibration_cache, folder / "calibration.cache")  # beside the engine
    _write_bytes(folder / "manifest.json", (json.dumps(entry, indent=2) + "\n").encode())


def _source(adapter: str) -> Path:
    """A committed adapter, by its path under model_repository/."""
    path = SOURCE_REPOSITORY / adapter
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: build runs from a maas source checkout")
    return path


def _version_numbers(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _previous_versions(model_dir: Path, io: dict) -> list[int]:
    """Earlier versions worth keeping: built by us, for a model of the same input/classes."""
    keep = []
    for v in _version_numbers(model_dir):
        path = model_dir / str(v) / "manifest.json"
        if path.is_file() and json.loads(path.read_text()).get("io") == io:
            keep.append(v)
    return keep


def _write(path: Path, config) -> None:
    configs.write_config(path, config)  # a refused config fails the build before the swap


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
