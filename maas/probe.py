"""One real request through every ensemble a repository serves, made from the repository alone.

Triton's ready endpoint answers 200 even when a Python step cannot run, so the launcher calls
an ensemble ready only once such a request has come back. The request is each required input's
warm-up data, taken from the step that consumes it: a grey image for the classifier; whatever
a family declares (maas.spec.Warmup) for the others, and for a user's own pipeline too.

    requests = probe_requests(Path("model_repository"))   # {"image_classifier": {...}}
    probe(client, "image_classifier", requests["image_classifier"])

`Probes` is the same for every served pipeline at once, streams included (a sequence model
gets a one-request sequence): the launcher's start-up check and maas.health's watchdog.
"""

from __future__ import annotations

import base64
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from maas.build.configs import NAMES, numpy_dtype, read_config
from maas.errors import ProbeError
from maas.runtime import names as C


def _strings(blob: bytes) -> list[bytes]:
    """Triton's TYPE_STRING warm-up data: each element a 4-byte little-endian length, bytes."""
    out, at = [], 0
    while at < len(blob):
        (length,) = struct.unpack_from("<I", blob, at)
        out.append(blob[at + 4 : at + 4 + length])
        at += 4 + length
    return out


def _warmup_value(folder: Path, spec: mc.ModelWarmup.Input, batched: bool) -> np.ndarray:
    """One batch row of a warm-up input (an unbatched model's: the whole input), as the array
    a client would send."""
    name, dtype = NAMES[spec.data_type], numpy_dtype(spec.data_type)
    shape = [1, *spec.dims] if batched else list(spec.dims)
    if spec.input_data_file:
        blob = (folder / "warmup" / spec.input_data_file).read_bytes()
        if name == "BYTES":
            values = np.array(_strings(blob), dtype=object)
        else:
            values = np.frombuffer(blob, dtype=dtype)
        return values[: int(np.prod(shape))].reshape(shape)
    if spec.random_data:
        return np.random.default_rng(0).random(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


def read_configs(repository: Path, config_name: str | None = None) -> dict[str, mc.ModelConfig]:
    """model -> the config Triton serves: configs/<config_name>.pbtxt where the model has one
    (tritonserver --model-config-name), else config.pbtxt."""
    out = {}
    for path in sorted(repository.glob("*/config.pbtxt")):
        named = path.parent / "configs" / f"{config_name}.pbtxt"
        out[path.parent.name] = read_config(named if config_name and named.is_file() else path)
    return out


def probe_requests(
    repository: Path, configs: dict[str, mc.ModelConfig] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """ensemble name -> {input name: one batch row} for its required inputs."""
    configs = read_configs(repository) if configs is None else configs
    out = {}
    for name, ensemble in configs.items():
        if ensemble.platform != "ensemble":
            continue
        request = {}
        for tensor in ensemble.input:
            if tensor.optional:
                continue
            request[tensor.name] = _probe_input(repository, configs, ensemble, tensor.name)
        out[name] = request
    return out


def _probe_input(repository, configs, ensemble, tensor: str) -> np.ndarray:
    for step in ensemble.ensemble_scheduling.step:
        for model_input, source in step.input_map.items():
            if source != tensor:
                continue
            for warm in configs[step.model_name].model_warmup:
                if model_input in warm.inputs:
                    return _warmup_value(
                        repository / step.model_name,
                        warm.inputs[model_input],
                        batched=ensemble.max_batch_size > 0,
                    )
    raise ProbeError(
        f"{ensemble.name}: no step that reads {tensor} has warm-up data for it, so there is "
        f"nothing to probe the ensemble with"
    )


def probe(client, ensemble: str, request: dict[str, np.ndarray], headers=None) -> None:
    """Send the request (tritonclient.http client); raise ProbeError unless every output of the
    ensemble comes back (with one batch row, where the ensemble is batched)."""
    import tritonclient.http as httpclient

    from maas.clients.tensors import infer_inputs

    inputs = infer_inputs(httpclient, request)
    try:
        outputs = [o["name"] for o in client.get_model_metadata(ensemble)["outputs"]]
        batched = client.get_model_config(ensemble).get("max_batch_size", 0) > 0
        result = client.infer(ensemble, inputs, headers=headers)
    except Exception as e:
        raise ProbeError(f"the probe request failed in {ensemble}: {e}") from None
    for name in outputs:
        value = result.as_numpy(name)
        if value is None or value.size == 0 or (batched and value.shape[0] != 1):
            raise ProbeError(f"the probe through {ensemble} returned no {name}")


# Correlation IDs the probes use for a stream: far above what clients pick, one per check.
PROBE_SEQUENCE_BASE = 1 << 62
SALTS = 100_000  # distinct probe requests before they repeat (deploy/k8s/probe.py: the same)


def salted(request: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The probe request made distinct by `n`. Triton's response cache keys on the input
    bytes, and an answer from the cache would hide a dead step: encoded images get 8 bytes of
    `n` after their end (where decoders stop reading), floats move by k millionths of their
    size plus one (k up to SALTS: at most a tenth), a seed (INT64) becomes k; counts and
    classes (INT32) stay."""
    k = n % SALTS + 1
    out = {}
    for name, value in request.items():
        if value.dtype == object:
            value = np.array([bytes(v) + k.to_bytes(8, "big") for v in value.flat], object)
            value = value.reshape(request[name].shape)
        elif value.dtype.kind == "f":
            value = value + (np.abs(value) + 1) * 1e-6 * k
        elif value.dtype == np.int64:
            value = np.full_like(value, k)
        out[name] = value.astype(request[name].dtype)
    return out


@dataclass
class Probes:
    """One request for every pipeline a repository serves: each ensemble (its warm-up data)
    and each sequence model (zeros, as a sequence of one request)."""

    ensembles: dict[str, dict[str, np.ndarray]]
    streams: dict[str, dict[str, np.ndarray]]
    steps: dict[str, list[str]]  # pipeline -> the models it runs
    headers: dict[str, str] = field(default_factory=dict)  # a client key (maas.access.Keys)
    _sequence: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def of(cls, repository: Path, headers: dict[str, str] | None = None) -> Probes:
        configs = read_configs(repository)
        streams = {
            name: {t.name: np.zeros([1, *t.dims], numpy_dtype(t.data_type)) for t in c.input}
            for name, c in configs.items()
            if C.MAX_SEQUENCES in c.parameters  # a step that keeps sequences (spec.Sequences)
        }
        steps = {name: [name] for name in streams}
        for name, c in configs.items():
            if c.platform == "ensemble":
                steps[name] = [s.model_name for s in c.ensemble_scheduling.step]
        return cls(probe_requests(repository, configs), streams, steps, dict(headers or {}))

    def models(self, pipeline: str) -> list[str]:
        return self.steps.get(pipeline, [])

    def run(self, client) -> dict[str, str | None]:
        """pipeline -> None when it answered, else the error (tritonclient.http client)."""
        import tritonclient.http as httpclient

        from maas.clients.tensors import infer_inputs

        out: dict[str, str | None] = {}
        salt = next(self._sequence)
        for name, request in self.ensembles.items():
            try:
                probe(client, name, salted(request, salt), self.headers)
                out[name] = None
            except ProbeError as e:
                out[name] = str(e)
        for name, request in self.streams.items():
            sequence = PROBE_SEQUENCE_BASE + salt
            try:
                client.infer(name, infer_inputs(httpclient, request), sequence_id=sequence,
                             sequence_start=True, sequence_end=True,
                             headers=self.headers)  # fmt: skip
                out[name] = None
            except Exception as e:
                out[name] = f"the probe request failed in {name}: {e}"
        return out


PROBES_FILE = "probes.json"  # at a built repository's top level (Triton reads folders only)


def probe_file(repository: Path) -> dict:
    """What deploy/k8s/probe.py sends (probes.json): each pipeline's probe request as plain
    JSON (BYTES base64), its outputs, and whether it is a sequence model."""
    from tritonclient.utils import np_to_triton_dtype

    configs = read_configs(repository)
    probes = Probes.of(repository)
    pipelines = {}
    for name, request in {**probes.ensembles, **probes.streams}.items():
        inputs = []
        for tensor, value in request.items():
            flat = value.reshape(-1)
            data = (
                [base64.b64encode(bytes(v)).decode() for v in flat]
                if value.dtype == object
                else flat.tolist()
            )
            inputs.append({"name": tensor, "datatype": np_to_triton_dtype(value.dtype),
                           "shape": list(value.shape), "data": data})  # fmt: skip
        pipelines[name] = {
            "inputs": inputs,
            "outputs": [o.name for o in configs[name].output],
            "sequence": name in probes.streams,
        }
    return {"pipelines": pipelines}
