"""Admission control as Triton's own queue policies: what the steps of a pipeline do with
requests beyond what the server can carry (docs/operate.md, admission control).

Two bounds, each a `ServingOptions` field: `max_queue_size`, the requests waiting at a
pipeline's first step (refused at once beyond it, before any step works on them), and
`queue_timeout_ms`, the time a request may wait in any step's queue. Measured with Triton 2.51
(docs/operate.md): a queue held full at its max_queue_size stalls that model's batcher
(gan_generator alone, offered 288 requests/s of 32 rows: 26 answers/s with 0.4 of 2 cores
busy), a bounded wait does not (232/s, 1.7 cores busy); and only a bound at every step holds
when a later step is the slower one (the generator's network at COUNT 32).
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from maas.build.configs import PRIORITIES, ServingOptions
from maas.spec import Step


def admit(config: mc.ModelConfig, step: Step, opts: ServingOptions) -> mc.ModelConfig:
    """A pipeline's first step: its queue bounded (ServingOptions.max_queue_size), so that a
    request beyond it is refused before any step works on it. A step that keeps sequences
    admits at least one waiting request per sequence it holds (each may send its next step at
    once). An unbatched first step gets Triton's dynamic batcher for this alone (with
    max_batch_size 0 it batches nothing; without one its queue has no policy). The bound holds
    at each priority level."""
    if opts.max_queue_size:
        bound = max(opts.max_queue_size, step.sequences.capacity if step.sequences else 0)
        config.dynamic_batching.MergeFrom(mc.ModelDynamicBatching(**PRIORITIES))
        policy = config.dynamic_batching.default_queue_policy
        policy.max_queue_size = bound
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
    return config


def bound_wait(config: mc.ModelConfig, opts: ServingOptions) -> mc.ModelConfig:
    """Any step (not an ensemble, which has no queue of its own): a request that has waited
    ServingOptions.queue_timeout_ms in its queue is refused, gRPC UNAVAILABLE or HTTP 503
    "Request timeout expired" (maas's clients: Overloaded, retried with back-off), not at once
    but when Triton finds it expired. A refusal at a later step comes after the steps before it
    worked; the bound on every step is what keeps an admitted request's wait bounded wherever
    the bottleneck is. An unbatched step gets a dynamic batcher for the policy alone (it
    batches nothing). The build leaves out a network a step calls from inside (the stream's)."""
    if opts.queue_timeout_ms and config.platform != "ensemble":
        policy = config.dynamic_batching.default_queue_policy
        policy.default_timeout_microseconds = opts.queue_timeout_ms * 1000
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
    return config
