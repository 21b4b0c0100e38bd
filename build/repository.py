"""Build one family into the Triton model repository: the next version of its core model,
gated, plus its Python steps and ensembles; every other family's models are kept as they are.

    maas build                        # whatever is missing, every family (see maas.workspace)
    maas build image_classifier       # --variant auto: every buildable variant, fastest passing
    maas build forecaster --variant onnx
    maas build image_classifier --variant trt-fp16 --trt-opt-batch 16   # GPU + TensorRT

Each build adds a numbered version to the core model's folder (model file, manifest.json, and
the Python backend's adapter), keeps the newest --keep-versions folders, and has Triton serve
the newest --serve-versions of them. Configs are generated from the family's declaration
(maas.catalog via build/configs.py); labels, normalisation and window sizes come from the
checkpoint. Everything is assembled in a temporary folder beside the target and renamed into
place, so a failed build leaves the repository exactly as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maas import families
from maas.build import admission, configs, environment, manifest, portable, shipped, variants
from maas.build import candidates as cands
from maas.build.release import CONTAINER_PYTHON, TRITON_RELEASE
from maas.build.tensorrt import EngineOptions, Profile, builder_flags, compute_capability, plan_fits
from maas.errors import GateError
from maas.probe import PROBES_FILE, probe_file
from maas.spec import DTYPES

CORE_STEP = "onnx_core.OnnxCore"
log = logging.getLogger(__name__)  # every core model's Python-backend alternate


@dataclass(frozen=True)
class BuildOptions:
    variant: str = "auto"
    tolerance: float | None = None  # accuracy points; None: each variant's default
    keep_versions: int = 3  # classifier version folders left on disk
    calibration_images: int = 256  # training images for INT8 calibration
    profile: Profile = field(default_factory=Profile)  # TensorRT's dynamic batch
    workspace_bytes: int = 1 << 30
    cache_dir: Path = Path("artifacts/tensorrt")  # TensorRT timing caches, reused
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
    family: str = "image_classifier",
) -> Path:
    """A family's networks, from its checkpoint and exported ONNX, into `target`; `onnx_model`
    is its first ONNX file (the others lie beside it, see maas.families)."""
    opts = opts or configs.ServingOptions()
    build = build or BuildOptions()
    kind = families.get(family)
    stage = families.resolve(kind.build)
    ckpt = stage.load(checkpoint)
    files = kind.onnx_files(Path(onnx_model))
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}: run `maas export {family}` first")
    served = stage.pipelines(ckpt, opts, files)
    cores = core_steps(served)
    if len(cores) != len(files):
        raise ValueError(f"{family}: {len(cores)} core models but {len(files)} ONNX files")
    made = [
        (path, stage.core_data(ckpt, core, build.calibration_images))
        for core, path in zip(cores, files, strict=True)
    ]
    source = {"checkpoint": str(checkpoint), "checkpoint_sha256": manifest.sha256(checkpoint)}
    return build_pipelines(served, made, target, opts, build, kind.variants, source)


def core_steps(served) -> list:
    """The distinct core models of some pipelines, in order of first use."""
    found = {}
    for pipeline in served:
        for core in pipeline.cores:
            found.setdefault(core.model, core)
    return list(found.values())


def build_pipelines(
    served: tuple,
    cores: list[tuple[Path, cands.CoreData]],
    target: str | Path,
    opts: configs.ServingOptions,
    build: BuildOptions,
    allowed: tuple[str, ...],
    source: dict,
) -> Path:
    """Declared pipelines: each core model's variants made from its ONNX and gated, each
    winner versioned, every step and ensemble written; atomic (see the module docstring)."""
    target = Path(target).resolve()
    wanted = variants.resolve(build.variant, allowed)
    if (
        any(v.runtime == "tensorrt" for v in wanted)
        and opts.max_batch_size > build.profile.max_batch
    ):
        raise ValueError(
            f"max_batch_size {opts.max_batch_size} exceeds the TensorRT profile's max "
            f"{build.profile.max_batch}: raise --trt-max-batch or lower --max-batch-size"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maas-build-") as scratch:
        winners = []
        for onnx_model, data in cores:
            onnx_sha = manifest.sha256(onnx_model)
            trt = EngineOptions(
                precision="fp32",  # set per variant
                profile=build.profile,
                workspace_bytes=build.workspace_bytes,
                timing_cache_dir=build.cache_dir,
            )
            found = cands.evaluate(
                data, Path(onnx_model), wanted, Path(scratch) / data.core.model,
                tolerance=build.tolerance,
                intra_op_threads=opts.threads(data.core),
                trt=trt,
                speed_seconds=build.speed_seconds,
                stop_on_error=build.variant != "auto",
            )  # fmt: skip
            chosen = _choose(found)
            if len(cores) > 1:
                print(f"{data.core.model}:")
            print(cands.table(found, chosen))
            if chosen is None:
                failed = [
                    c.verdict.message() if c.verdict else f"{c.variant.name}: {c.error}"
                    for c in found
                ]
                raise GateError(
                    f"no variant of {data.core.model} passed; nothing written:\n  "
                    + "\n  ".join(failed)
                )
            record = {**source, "onnx": str(onnx_model), "onnx_sha256": onnx_sha}
            winners.append((chosen, data, record))

        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
        try:
            versions = _assemble(staging, target, served, opts, build, winners)
            _swap_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for (chosen, data, *_), version in zip(winners, versions, strict=True):
        print(f"built {target}: {data.core.model} version {version} = {chosen.variant.name}")
    return target


def _choose(found: list[cands.Candidate]) -> cands.Candidate | None:
    """The fastest at batch 64 (what dynamic batching feeds it) among those that passed."""
    passed = [c for c in found if c.passed]
    return max(passed, key=lambda c: c.speed.images_per_s[64], default=None)


def python_steps(served) -> list:
    """The distinct Python steps of some pipelines. A model that two pipelines share is one
    Triton model, so it is one Step object, declared once and used in both."""
    found = {}
    for pipeline in served:
        for step in pipeline.steps:
            if step.kind != "python":
                continue
            if found.setdefault(step.model, step) is not step:
                raise ValueError(f"{step.model} is declared differently by two pipelines")
    return list(found.values())


def _assemble(root, previous, served, opts, build, winners) -> list[int]:
    ours = {p.name for p in served} | {s.model for p in served for s in p.steps}
    if previous.is_dir():  # the other families' models, as they are
        for entry in previous.iterdir():
            if entry.name not in ours and not entry.name.startswith("."):
                copy = shutil.copytree if entry.is_dir() else shutil.copy2
                copy(entry, root / entry.name)
    for step in python_steps(served):
        _write_python_step(root / step.model, step, opts)
    for pipeline in served:
        if pipeline.ensemble:
            (root / pipeline.name / "1").mkdir(parents=True)  # an ensemble needs a version
            _write(root / pipeline.name / "config.pbtxt", configs.ensemble_config(pipeline, opts))
    versions = [
        _write_core(root, previous, opts, build, chosen, data, record)
        for chosen, data, record in winners
    ]
    # Admission control (maas.build.admission): at each pipeline's first step, unless another
    # pipeline runs that model further in (vae_decoder: vae_decode's first, vae_sample's third)
    # where a refusal would come after work; and, where asked, a bounded wait at every step
    # but a network a step calls from inside (the stream's: it has recorded the value by then).
    inner = {s.model for p in served for s in p.steps[1:]}
    entries = {p.entry.model: p.entry for p in served if p.entry.model not in inner}
    waits = {s.model for p in served for s in p.steps} if opts.queue_timeout_ms else set()
    waits -= {s.parameters.get("network") for p in served for s in p.steps}
    for model in entries.keys() | waits:  # only these change
        for path in (root / model / "config.pbtxt", *(root / model / "configs").glob("*")):
            config = configs.read_config(path)
            if model in entries:
                config = admission.admit(config, entries[model], opts)
            _write(path, admission.bound_wait(config, opts) if model in waits else config)
    # Every pipeline's probe request, for a probe that has no maas (deploy/k8s/probe.py).
    _write_bytes(root / PROBES_FILE, (json.dumps(probe_file(root), indent=1) + "\n").encode())
    return versions


def _write_core(root, previous, opts, build, chosen, data, record) -> int:
    """The core model's folder: kept versions, the new one, its configs; its new version."""
    core = data.core
    folder = root / core.model
    folder.mkdir()
    for name, data_file in core.files.items():  # its output's labels
        _write_bytes(folder / name, data_file)
    # What a kept version must match to serve beside the new one: the core's tensors, and what
    # the steps around it assume (labels, sizes, windows...; build/manifest.assumptions).
    io = {t.name: list(t.dims) for t in (*core.inputs, *core.outputs)}
    assumes = manifest.assumptions(root, core.model)
    kept = _previous_versions(previous / core.model, io, assumes)
    version = max([0, *_version_numbers(previous / core.model)]) + 1
    for number in kept[-(build.keep_versions - 1) :] if build.keep_versions > 1 else []:
        shutil.copytree(previous / core.model / str(number), folder / str(number))
    record = {"io": io, "source": record, "assumes": assumes}
    _write_version(folder / str(version), version, chosen, data, opts, build, record)

    runtimes = {v: manifest.read(folder / str(v))["runtime"] for v in _version_numbers(folder)}
    same = [v for v, rt in runtimes.items() if rt == chosen.variant.runtime]
    if chosen.variant.runtime == "onnxruntime":
        _write(folder / "config.pbtxt", configs.core_config(core, opts, same))
        environment.write_environment(folder)  # the Python alternate's: no storage keys
        _write(
            folder / "configs" / f"{configs.PYTHON_CONFIG}.pbtxt",
            configs.core_python_config(core, opts, same,
                                       {**shipped.stamps(), **environment.PARAMETER}),
        )  # fmt: skip
        _write(
            folder / "configs" / "onnxruntime_tensorrt.pbtxt",
            configs.core_onnxruntime_tensorrt_config(core, opts, same, build.workspace_bytes),
        )
    else:
        cc = compute_capability()
        # Triton looks each version's plan up by this GPU's compute capability, and the
        # config's max_batch_size must fit every served version's profile.
        fit = [v for v in same if plan_fits(manifest.read(folder / str(v)), cc, build.profile)]
        if sorted(fit) != sorted(same):
            unfit = sorted(set(same) - set(fit))
            log.warning("%s: kept versions %s not served: built for another GPU than sm %s or "
                        "a smaller max batch", core.model, unfit, cc)  # fmt: skip
        cc_files = {cc: manifest.read(folder / str(version))["cc_model_filenames"][cc]}
        _write(
            folder / "config.pbtxt",
            configs.core_tensorrt_config(core, opts, fit, build.profile.max_batch, cc_files),
        )
    _write_warmup_files(folder, core)
    return version


def _write_python_step(folder: Path, step, opts) -> None:
    """A Python step, self-contained (build/shipped.py): version 1 with its code, its
    environment (the packages it needs beyond numpy; no storage keys), its config with the
    stamps, files and warm-up."""
    cls = shipped.check(step)
    shipped.write_version(folder / "1", step.adapter)
    needs = cls.NEEDS if cls is not None else ()
    packages = environment.write_environment(folder, needs)
    parameters = {**step.config_parameters, **shipped.stamps(), **environment.PARAMETER}
    if needs and CONTAINER_PYTHON not in environment.pythons(packages):
        log.warning(
            "%s: %s for Python %s (Triton %s's container) is not in %s: this step loads "
            "only where the stub runs Python %s", step.model, ", ".join(needs), CONTAINER_PYTHON,
            TRITON_RELEASE, environment.wheelhouse(), ", ".join(environment.pythons(packages)),
        )  # fmt: skip
    _write(folder / "config.pbtxt", configs.python_config(step, opts, parameters))
    for name, data in step.files.items():
        _write_bytes(folder / name, data)
    _write_warmup_files(folder, step)


def _write_warmup_files(folder: Path, step) -> None:
    for warm in step.warmup:
        for name, data in warm.inputs.items():
            if isinstance(data, str):
                continue  # zero or random: Triton makes it
            if step.tensor(name).dtype == "BYTES":
                # Triton reads TYPE_STRING warm-up data as, per element, a 4-byte
                # little-endian length and the bytes.
                blob = b"".join(struct.pack("<I", len(v)) + v for v in data.reshape(-1))
            else:
                blob = np.ascontiguousarray(data, DTYPES[step.tensor(name).dtype]).tobytes()
            _write_bytes(folder / "warmup" / configs.warmup_file(warm, name), blob)


def _write_version(folder: Path, version, chosen, data, opts, build, record: dict) -> None:
    """The version's model file and manifest; `record`: its io, source and assumes."""
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
        "io": record["io"],
        "source": record["source"],
        "assumes": record["assumes"],
        "gate": {**chosen.verdict.record(), **data.record},
        "speed_in_process": {
            "latency_ms_batch1": round(chosen.speed.latency_ms_batch1, 4),
            "images_per_s": {str(b): round(v, 1) for b, v in chosen.speed.images_per_s.items()},
            "intra_op_threads": opts.threads(data.core)
            if variant.runtime == "onnxruntime"
            else None,
        },
        "libraries": manifest.library_versions(),
        "host": manifest.host(),
        "gpu_compute_capability": None,
    }
    if variant.runtime == "onnxruntime":
        shipped.write_version(folder, CORE_STEP)  # configs/python.pbtxt's code
        entry["onnx"] = portable.record(folder / variant.model_file)
    else:
        cc = compute_capability()
        plan = f"model_sm{cc.replace('.', '')}.plan"
        (folder / variant.model_file).rename(folder / plan)
        entry.update(model_file=plan, gpu_compute_capability=cc, cc_model_filenames={cc: plan})
        entry["tensorrt"] = {
            "profile": asdict(build.profile),
            "workspace_bytes": build.workspace_bytes,
            "builder_flags": builder_flags(variant.precision),  # TF32 always cleared
            # INT8 scales: Q/DQ nodes calibrated by onnxruntime.quantization (build/quantize.py)
            "quantization": "explicit Q/DQ" if variant.precision == "int8" else None,
            "triton_release": TRITON_RELEASE,
        }
    manifest.write(folder, entry)


def _version_numbers(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _previous_versions(model_dir: Path, io: dict, assumes: dict) -> list[int]:
    """Earlier versions worth keeping: built by us, for the same tensors, by steps that
    assumed what the new build's steps assume; the others are named and left out (served
    with these steps, they would answer wrongly: other labels, sizes, windows)."""
    keep, dropped = [], {}
    for v in _version_numbers(model_dir):
        entry = manifest.read(model_dir / str(v))
        if entry.get("io") != io:
            continue
        differ = manifest.differences(entry.get("assumes", {}), assumes)
        if differ:
            dropped[v] = differ
        else:
            keep.append(v)
    for v, differ in dropped.items():
        log.warning("%s version %s not kept: built for other steps (%s)", model_dir.name, v,
                    "; ".join(differ))  # fmt: skip
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
