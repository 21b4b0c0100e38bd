"""`maas rollout` / `maas rollback`: move a served model to another version on every replica,
one replica at a time, while traffic flows, through Triton's model-control API.

    maas rollout classifier --to 4        # the fleet's replicas (maas fleet), or --url ...
    maas rollback classifier              # back to the version it served before the last rollout

On each replica, with the version to come already in the repository (maas build, then maas
publish for an S3 fleet):
1. load the model with both versions (its config with version_policy {old, new});
2. probe: a real request (the ensemble's probe input, maas.probe) through each ensemble that
   runs the model, its steps called one by one with the new version pinned. A failed load or
   probe puts the replica back on the old version alone and stops the rollout there (the
   replicas done so far keep the new version: run rollback);
3. load the model with the new version alone: Triton finishes the old version's in-flight
   requests and unloads it.
Ensembles run a model's latest loaded version (model_version -1), so an older version (a
rollback) takes traffic only at step 3, after its probe; a newer one takes it as soon as it is
ready in step 1, and its probe follows within milliseconds. Pinning the ensembles to a version
would close that gap, but reloading an ensemble reloads its composing models from the
repository's configs, which unloaded the second version mid-rollout and left the ensemble
without a version (every request failed, measured here): so maas does not.
The loaded configs live in the server: a replica started again serves what its repository's
config.pbtxt says, so make a rollout permanent by building/publishing that config too.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maas.errors import RolloutError


@dataclass
class ReplicaRollout:
    replica: str
    model: str
    before: list[int]
    after: list[int]
    seconds: float = 0.0
    probed: list[str] = field(default_factory=list)


def _client(address: str):
    """An HTTP client for a replica: "host:port" or "http://host:port", plain; "https://...",
    over TLS, verified against the system's CAs (SSL_CERT_FILE names another bundle), so the
    admin key is never sent in the clear to a URL that said https."""
    import tritonclient.http as httpclient

    from maas.clients.connection import parse_url

    scheme, host = parse_url(address)
    if scheme not in ("http", "https"):
        raise RolloutError(f"{address}: a replica's URL is http:// or https://")
    return httpclient.InferenceServerClient(
        host, ssl=scheme == "https", network_timeout=300, connection_timeout=10
    )


def loaded_versions(client, model: str, headers=None) -> list[int]:
    return sorted(
        int(m["version"])
        for m in client.get_model_repository_index(headers=headers)
        if m["name"] == model and m.get("state") == "READY" and m.get("version")
    )


def ensembles_using(client, model: str, headers=None) -> dict[str, dict]:
    """Loaded ensemble -> its config (JSON, as the server has it), for each that runs `model`."""
    out = {}
    for entry in client.get_model_repository_index(headers=headers):
        if entry.get("state") != "READY" or entry["name"] == model:
            continue
        config = client.get_model_config(entry["name"])
        steps = config.get("ensemble_scheduling", {}).get("step", [])
        if any(s["model_name"] == model for s in steps):
            out[entry["name"]] = config
    return out


def _with_versions(config: dict, versions: list[int]) -> dict:
    config = copy.deepcopy(config)
    config["version_policy"] = {"specific": {"versions": [str(v) for v in versions]}}
    return config


def walk_steps(
    client, ensemble: dict, request: dict[str, np.ndarray], pin: dict[str, int], headers=None
):
    """Run an ensemble's request step by step, each step's model called directly (a pinned
    version where `pin` names one): the ensemble's data path, without the ensemble. An input
    the request leaves out and no step makes (an optional one) is left out. Returns every
    tensor by its ensemble name."""
    import tritonclient.http as httpclient

    from maas.clients.tensors import infer_inputs

    steps = list(ensemble["ensemble_scheduling"]["step"])
    made = {target for s in steps for target in s["output_map"].values()}
    tensors = dict(request)
    while steps:
        ready = [
            s for s in steps if all(v in tensors or v not in made for v in s["input_map"].values())
        ]
        if not ready:
            raise RolloutError(f"{ensemble['name']}: its steps wait on each other")
        for step in ready:
            inputs = {k: tensors[v] for k, v in step["input_map"].items() if v in tensors}
            version = pin.get(step["model_name"])
            result = client.infer(
                step["model_name"], infer_inputs(httpclient, inputs),
                model_version=str(version) if version is not None else "", headers=headers,
            )  # fmt: skip
            for output, target in step["output_map"].items():
                value = result.as_numpy(output)
                if value is None or value.size == 0:
                    raise RolloutError(f"{step['model_name']} returned no {output}")
                tensors[target] = value
            steps.remove(step)
    return tensors


def rollout_replica(
    address: str,
    model: str,
    to: int,
    requests: dict[str, dict[str, np.ndarray]],
    headers: dict[str, str],
    log=print,
) -> ReplicaRollout:
    """Steps 1-3 of the module doc on one replica (its HTTP address); `headers`: the admin
    key (and the client key where inference needs one), maas.access.Keys.headers."""
    started = time.monotonic()
    client = _client(address)
    try:
        before = loaded_versions(client, model, headers)
        done = ReplicaRollout(address, model, before, [to])
        if before == [to]:
            log(f"{address}: {model} already serves version {to}")
            return done
        if not before:
            raise RolloutError(f"{address}: {model} is not loaded")
        config = client.get_model_config(model)
        ensembles = ensembles_using(client, model, headers)
        try:
            # 1. Both versions. Ensembles run a model's latest loaded version (model_version
            # -1): a newer version takes the traffic as it becomes ready, an older one not yet.
            both = _with_versions(config, sorted({*before, to}))
            client.load_model(model, config=json.dumps(both), headers=headers)
            for name, ensemble in ensembles.items():  # 2. probe the new version
                if name not in requests:
                    raise RolloutError(f"no probe request for {name} in the local repository")
                walk_steps(client, ensemble, requests[name], {model: to}, headers)
                done.probed.append(name)
        except Exception as e:
            old = _with_versions(config, before)
            client.load_model(model, config=json.dumps(old), headers=headers)
            raise RolloutError(
                f"{address}: version {to} of {model} refused, the replica is back on {before}: {e}"
            ) from None
        # 3. The new version alone: the old one finishes what it has in flight and goes.
        new = _with_versions(config, [to])
        client.load_model(model, config=json.dumps(new), headers=headers)
        after = loaded_versions(client, model, headers)
        done.after, done.seconds = after, time.monotonic() - started
        log(f"{address}: {model} {before} -> {after} in {done.seconds:.1f} s "
            f"(probed through {', '.join(done.probed) or 'no ensemble'})")  # fmt: skip
        return done
    finally:
        client.close()


def check_version(repository: Path, model: str, to: int) -> None:
    """RolloutError unless version `to` of `model` is in the repository and was built for the
    steps the repository now has around it (its manifest's `assumes`): old weights served with
    another build's labels, sizes or windows would answer wrongly and pass every probe."""
    from maas.build.manifest import FILE, assumptions, differences, read

    if not (repository / model / str(to) / FILE).is_file():
        raise RolloutError(f"{model} has no version {to} in {repository}")
    differ = differences(read(repository / model / str(to)).get("assumes", {}),
                         assumptions(repository, model))  # fmt: skip
    if differ:
        raise RolloutError(
            f"{model} version {to} was built for other steps than {repository} has "
            f"({'; '.join(differ)}): rebuild it from its checkpoint instead"
        )


def rollout(
    addresses: list[str], model: str, to: int, repository: Path, headers: dict[str, str], log=print
) -> list[ReplicaRollout]:
    """Every replica in turn (HTTP addresses), once the version is checked against the
    repository's steps; stops at the first replica that refuses."""
    from maas.probe import Probes

    check_version(repository, model, to)
    requests = Probes.of(repository).ensembles
    return [rollout_replica(a, model, to, requests, headers, log) for a in addresses]
