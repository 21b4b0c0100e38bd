"""BLS alternative to the ensemble, for benchmarks/compare.py: one Python model that calls
preprocess, classifier and postprocess itself (Triton's Business Logic Scripting). All requests
of a batch run concurrently (async BLS), each through the three models in turn."""

import asyncio

import triton_python_backend_utils as pb_utils

from maas.runtime import names as C


class TritonPythonModel:
    async def _one(self, request):
        async def call(model, inputs, outputs):
            response = await pb_utils.InferenceRequest(
                model_name=model, requested_output_names=outputs, inputs=inputs
            ).async_exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            return response

        pre = await call(
            C.PREPROCESS, [pb_utils.get_input_tensor_by_name(request, C.IMAGE)], [C.PIXELS]
        )
        logits = await call(C.CLASSIFIER, pre.output_tensors(), [C.LOGITS])
        inputs = list(logits.output_tensors())
        top_k = pb_utils.get_input_tensor_by_name(request, C.TOP_K)
        if top_k is not None:
            inputs.append(top_k)
        post = await call(C.POSTPROCESS, inputs, [C.LABELS, C.SCORES, C.CLASS_IDS])
        return pb_utils.InferenceResponse(post.output_tensors())

    async def execute(self, requests):
        results = await asyncio.gather(*(self._one(r) for r in requests), return_exceptions=True)
        return [
            r
            if not isinstance(r, Exception)
            else pb_utils.InferenceResponse(error=pb_utils.TritonError(str(r)))
            for r in results
        ]
