"""What maas raises on purpose: one root, and the one place that turns an error into words.

    MaasError                        the root (maas.runtime.errors: it exists inside Triton too)
    ├── Refused                      a request's input a Python step turns down (INVALID_ARG)
    │   ├── ImageError               not a usable image (maas.runtime.images)
    │   ├── SeriesError              a history or horizon the forecaster cannot use
    │   └── GenerationError          a seed, count or digit out of range
    ├── OptionError                  an option or argument out of its range
    ├── ServerError                  tritonserver did not start or serve (maas.serve)
    │   └── Interrupted              SIGINT/SIGTERM during start-up; it has been stopped
    ├── ProbeError                   a probe request through a pipeline failed (maas.probe)
    ├── RolloutError                 a replica refused a version (maas.rollout)
    ├── PublishError                 S3 refused the repository (maas.publish)
    ├── ConfigError                  a config.pbtxt Triton would refuse (maas.build.configs)
    ├── BuildError                   a build that wrote nothing, because
    │   ├── GateError                a variant lost more quality than allowed
    │   ├── ContractError            a user's ONNX cannot be served as it is
    │   ├── NotPortable              a graph the target Triton's ONNX Runtime cannot load
    │   ├── PackagingError           a package a step needs cannot be shipped with it
    │   ├── StepDeclarationError     a declared step does not match its class
    │   └── TensorRTUnavailable      no TensorRT, or no GPU for it, here (maas.build.tensorrt)
    ├── ExportError                  ONNX and PyTorch disagree (maas.training.export)
    ├── TensorRTError                TensorRT (through Polygraphy) failed to build, load or run
    └── ClientError                  talking to a server (maas.clients.errors: its own tree)

`explain` is how the CLI (maas.cli.main) says any of them: one line, exit code 1.
"""

from __future__ import annotations

import signal

from maas.runtime.errors import MaasError, Refused

__all__ = ["MaasError", "Refused"]


class OptionError(MaasError, ValueError):
    """An option or argument out of its range; the message says which and why."""


class ServerError(MaasError, RuntimeError):
    """tritonserver failed to start or a model failed to load; the message holds its log."""


class Interrupted(ServerError):
    """SIGINT or SIGTERM arrived while the server was starting; it has been stopped."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} during start-up")
        self.signum = signum


class ProbeError(MaasError, RuntimeError):
    """The probe request failed or came back without its outputs."""


class RolloutError(MaasError, RuntimeError):
    """A replica refused the new version (load or probe failed); what was done is said."""


class PublishError(MaasError, RuntimeError):
    """S3 refused what `maas publish` asked (credentials, bucket, endpoint): said by boto."""


class ConfigError(MaasError, ValueError):
    """A config.pbtxt that Triton would refuse; the message names the file and the field."""


class BuildError(MaasError):
    """A build that stopped before writing anything; the message says why."""


class GateError(BuildError, RuntimeError):
    """A variant lost more quality than allowed; nothing was written."""


class ContractError(BuildError, ValueError):
    """A user's ONNX cannot be served as it stands; the message names the tensor, what was
    found, and the flag that would change it."""


class NotPortable(BuildError, ValueError):
    """A graph the target Triton's ONNX Runtime cannot load."""


class PackagingError(BuildError):
    """A package a step needs could not be put into its environment."""


class StepDeclarationError(BuildError, ValueError):
    """A declared Python step whose class or parameters do not match maas.runtime."""


class ExportError(MaasError, RuntimeError):
    """The exported graph does not match the PyTorch model."""


class TensorRTUnavailable(BuildError, RuntimeError):
    """This machine cannot build (or run) TensorRT engines: TensorRT is missing, of another
    major version, or has no CUDA GPU; the message says what to install. A trt-* variant
    asked for by name is refused with it before anything is built."""


class TensorRTError(MaasError, RuntimeError):
    """TensorRT, through Polygraphy, failed to build, load or run a plan; the message says
    which and the usual cause (Polygraphy has logged TensorRT's own words above it)."""


def explain(error: BaseException) -> str:
    """One line for a person: a client error with its kind (ServerUnavailable, InvalidInput
    ...), a file error with its path, anything else as it says itself."""
    from maas.clients.errors import ClientError

    if isinstance(error, ClientError):
        return f"{type(error).__name__}: {error}"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)
