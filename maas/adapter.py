"""What the Python-backend adapters in model_repository/ share.

    responses = answer_each(pb_utils, requests, self._answer, SeriesError, C.HISTORY)

Triton hands a model every request of a dynamic batch at once; each must get its own response,
and a request the pure functions refuse must get its own INVALID_ARG error naming the tensor,
while its batch-mates are answered.
"""

from __future__ import annotations

from collections.abc import Callable


def answer_each(
    pb_utils, requests, answer: Callable, refused: type[Exception], tensor: str | None = None
):
    """One InferenceResponse per request: answer(request) -> output tensors, or the error
    (prefixed with `tensor`'s name; None: the message names it already)."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(answer(request)))
        except refused as e:
            message = f"{tensor}: {e}" if tensor else str(e)
            error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            responses.append(pb_utils.InferenceResponse(error=error))
    return responses
