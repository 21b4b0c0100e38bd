"""What runs inside Triton: every Python step maas serves, with the pure transforms it calls.

`maas build` copies this folder, as it is installed, into each Python-backend model's version
folder as `maas_runtime/`, and writes that model's `model.py` as one import of its step class
(e.g. `from maas_runtime.images import Preprocess as TritonPythonModel`), so a built repository
needs no maas where it is served: a stock tritonserver loads it (Triton puts the version folder
on the stub's sys.path). So the modules here import only each other (relative imports), the
standard library and numpy; `images` alone needs Pillow, which the build ships in the model's
own environment (EXECUTION_ENV_PATH), and `onnx_core` ONNX Runtime, which only the Python-backend
alternate of a core model uses (`maas serve` on a tritonserver without the onnxruntime backend).

    errors     the root of maas's errors, and Refused (a request a step turns down)
    names      the tensor and model names the repository, its steps and the clients agree on
    metrics    the steps' own metrics on /metrics, and StepMetrics that records them
    step       StepModel, the base of every step: config, parameters, metrics, one answer or
               one error per request of a batch
    images     decode, resize, lay out; Preprocess
    classify   softmax, top-k; Postprocess
    series     the forecaster's scaling and interval; ForecasterPreprocess, ForecasterPostprocess
    stream     ForecasterStream: a Triton sequence's window, the network called through BLS
    generate   seeds, noise, images to PNG; Noise, Png
    png        a PNG writer on zlib alone
    onnx_core  OnnxCore: any core network on ONNX Runtime in the Python backend
"""
