"""Readiness of a Triton serving a maas repository: one real request through every pipeline.

    python3 probe.py --probes /etc/maas/probe/probes.json [--url http://127.0.0.1:8000]

Triton's /v2/health/ready says 200 while a Python step's stub is dead and every request
through it fails; this probe sends each pipeline's request (probes.json, which `maas build`
writes beside the models) and exits 1, naming what failed, unless every one answers with all
its outputs. The standard library alone: it runs with the stock container's python3, as a
Kubernetes exec probe (deploy/k8s/triton.yaml). Inference needs no key unless the server asks
for one: then give its file with --client-key-file (a mounted Secret).
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import time
import urllib.error
import urllib.request

# Triton datatype -> struct format of one element (little-endian); BYTES are length-prefixed.
FORMATS = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q", "UINT8": "B", "INT8": "b",
           "UINT32": "I", "UINT64": "Q", "BOOL": "?"}  # fmt: skip


SALTS = 100_000  # as maas.probe.salted: distinct requests before they repeat


def binary(tensor: dict, salt: int) -> bytes:
    """A probe input's values as Triton's binary tensor extension carries them, made distinct
    by `salt` as maas.probe.salted does (a cached answer would hide a dead step): image bytes
    get 8 bytes after their end, floats move by up to a tenth, a seed becomes the salt."""
    k = salt % SALTS + 1
    kind, data = tensor["datatype"], tensor["data"]
    if kind == "BYTES":
        items = [base64.b64decode(v) + k.to_bytes(8, "big") for v in data]
        return b"".join(struct.pack("<I", len(v)) + v for v in items)
    if kind in ("FP32", "FP64"):
        data = [v + (abs(v) + 1) * 1e-6 * k for v in data]
    elif kind == "INT64":
        data = [k] * len(data)
    return struct.pack(f"<{len(data)}{FORMATS[kind]}", *data)


def request(pipeline: dict, sequence_id: int) -> tuple[bytes, int]:
    """(body, JSON header length) of one probe request."""
    blobs = [binary(t, sequence_id) for t in pipeline["inputs"]]
    header = {
        "inputs": [
            {"name": t["name"], "datatype": t["datatype"], "shape": t["shape"],
             "parameters": {"binary_data_size": len(b)}}
            for t, b in zip(pipeline["inputs"], blobs, strict=True)
        ],
        # Outputs come back binary too: a PNG is no JSON string.
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in pipeline["outputs"]],
    }  # fmt: skip
    if pipeline.get("sequence"):
        header["parameters"] = {"sequence_id": sequence_id, "sequence_start": True,
                                "sequence_end": True}  # fmt: skip
    text = json.dumps(header).encode()
    return text + b"".join(blobs), len(text)


def probe(url: str, name: str, pipeline: dict, key: str | None, timeout: float) -> str | None:
    """None when the pipeline answered with every output, else what went wrong."""
    body, header = request(pipeline, sequence_id=(1 << 62) + time.time_ns() // 1_000_000)
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(header)}  # fmt: skip
    if key:
        headers["client-key"] = key
    call = urllib.request.Request(f"{url}/v2/models/{name}/infer", body, headers, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            size = response.headers.get("Inference-Header-Content-Length")
            content = response.read()
            answer = json.loads(content[: int(size)] if size else content)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read().decode(errors='replace')[:300]}"
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    sizes = {o["name"]: o.get("parameters", {}).get("binary_data_size", 0)
             for o in answer.get("outputs", [])}  # fmt: skip
    missing = sorted(n for n in pipeline["outputs"] if not sizes.get(n))
    return f"no {', '.join(missing)} in the answer" if missing else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probes", required=True, help="probes.json, as maas build writes it")
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="Triton's HTTP endpoint")
    ap.add_argument("--client-key-file", help="the inference key, where the server needs one")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    args = ap.parse_args(argv)
    with open(args.probes) as f:
        pipelines = json.load(f)["pipelines"]
    key = None
    if args.client_key_file:
        with open(args.client_key_file) as f:
            key = f.read().strip()
    failed = {}
    for name, pipeline in pipelines.items():
        error = probe(args.url.rstrip("/"), name, pipeline, key, args.timeout)
        if error is not None:
            failed[name] = error
    for name, error in failed.items():
        print(f"{name}: {error}", file=sys.stderr)
    print(f"{len(pipelines) - len(failed)} of {len(pipelines)} pipelines answered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
