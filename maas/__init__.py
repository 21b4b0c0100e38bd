"""maas: models as a service on Triton.

Stages, one subpackage each (each lives in the top-level folder of the same name):

    maas.training   train each family (CNN, GRU forecaster, VAE, GAN) and export it to ONNX
    maas.build      gate and version the networks into a Triton model repository (build/)
    maas.clients    call every served pipeline over Triton's HTTP/gRPC protocols (clients/)
    maas.benchmarks measure the served pipelines (benchmarks/)

plus the served pipelines declared as data (maas.spec: the vocabulary; maas.catalog: the
table), what runs inside Triton (maas.runtime: each Python step and the pure transforms it
calls, shipped inside the built repository), the tritonserver launcher (maas.serve with
maas.access, maas.backends and maas.processes; maas.probe), operations (maas.health,
maas.fleet, maas.rollout, maas.publish), the command line (maas.cli) and the one error root
(maas.errors.MaasError).
"""

__version__ = "0.1.0"

from pathlib import Path as _Path

# The stage folders are subpackages of maas: maas.build is build/, and so on. A wheel puts them
# inside maas/ (see package-dir in pyproject.toml). A source checkout keeps them beside maas/
# and without __init__.py, so the top-level name `build` stays PyPA's even when the checkout is
# on sys.path (`python -m build` run from it); here they join maas's search path instead.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "build" / "repository.py").is_file():
    __path__.append(str(_checkout))
