"""Triton Python-backend model: the network's scaled forecast (SCALED_FORECAST) with its
window's LOC and SCALE, and an optional HORIZON -> FORECAST, LOWER, UPPER in the series' units.

A thin adapter over maas.series. Each request keeps its own horizon (1 to the model's; the
model's when not given); a request asking for another gets its own INVALID_ARG error.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, answer_each
from maas.metrics import FORECASTS
from maas.series import SeriesError, Window, check_horizon, forecast
from maas.spec import floats


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        [steps] = pb_utils.get_input_config_by_name(config, C.SCALED_FORECAST)["dims"]
        lower, upper = floats(params["lower"]), floats(params["upper"])
        self.window = Window(length=0, horizon=int(steps), lower=lower, upper=upper)
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _horizon(self, request) -> int:
        tensor = pb_utils.get_input_tensor_by_name(request, C.HORIZON)
        if tensor is None:
            return self.window.horizon
        values = np.unique(tensor.as_numpy())
        if len(values) != 1:
            raise SeriesError("must be the same for every series of a request")
        return check_horizon(int(values[0]), self.window.horizon)

    def _answer(self, request):
        k = self._horizon(request)
        scaled, loc, scale = (
            pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            for name in (C.SCALED_FORECAST, C.LOC, C.SCALE)
        )
        names = (C.FORECAST, C.LOWER, C.UPPER)
        values = forecast(scaled, loc, scale, self.window)
        self.metrics.count(FORECASTS, len(scaled))
        return [pb_utils.Tensor(n, v[:, :k]) for n, v in zip(names, values, strict=True)]

    def execute(self, requests):
        return answer_each(pb_utils, requests, self._answer, SeriesError, C.HORIZON, self.metrics)
