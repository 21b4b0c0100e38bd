"""An ONNX graph that Triton's onnxruntime backend loads: what the `onnx` and `ort-int8`
variants serve.

The graph is kept as exported (or quantised): standard operators only, never ONNX Runtime's
offline-optimised form, which may hold layout kernels of one ORT version and CPU (NCHWc). The
backend optimises at load, as the gate's session does. Triton 24.10's backend runs ONNX
Runtime 1.19, which loads IR version 10 and opset 21 at most (build/release.py): a newer IR
is lowered when the opsets allow (IR 11 only adds types that newer opsets use), a newer opset
is refused with what to export instead. `tests/e2e/test_deployable.py` loads every built graph
in ONNX Runtime 1.19.2 itself and compares its answers.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from maas.build.release import MAX_IR_VERSION, MAX_OPSET, TRITON_ONNXRUNTIME, TRITON_RELEASE
from maas.errors import NotPortable


def opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def portable(source: Path, out: Path) -> Path:
    """`source` written to `out` as Triton's onnxruntime backend can load it; NotPortable
    when it cannot be."""
    model = onnx.load(str(source))
    if opset(model) > MAX_OPSET:
        raise NotPortable(
            f"{source.name}: opset {opset(model)}, and Triton {TRITON_RELEASE}'s ONNX Runtime "
            f"{TRITON_ONNXRUNTIME} loads opset {MAX_OPSET} at most: export with opset_version="
            f"{MAX_OPSET} or lower"
        )
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def record(path: Path) -> dict:
    """For the manifest: what the served graph is, and the ONNX Runtime it is built to load on."""
    model = onnx.load(str(path), load_external_data=False)
    return {
        "ir_version": model.ir_version,
        "opset": opset(model),
        "loads_on_onnxruntime": f">={TRITON_ONNXRUNTIME}",
        "graph_optimized": False,
    }
