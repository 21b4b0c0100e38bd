"""Compute is scarce: beyond capacity a request is refused (Triton's queue policies: a pipeline's
first step full, or a wait too long at any step, maas.build.admission; the front door's bound on
requests in flight, maas.balancer) instead of waiting in an unbounded queue, and what was
admitted is answered right; a repeated request is answered from Triton's response cache without
running a step, with the same bytes. Figures (the overload curve, the cache's gain) are in
benchmarks/admission.py's run, not here."""

from __future__ import annotations

import asyncio
import shutil
import urllib.request

import pytest

from maas.build.configs import read_config, write_config
from maas.clients.client import AsyncClient, Client, Retry
from maas.clients.errors import Overloaded
from maas.runtime import names as C
from maas.serve import ServerConfig
from maas.server_config import SERVE_CACHE_MB

SCHEMES = ["http", "grpc"]


@pytest.fixture(scope="module", params=["queue", "wait"])
def small_queue(request, classifier_repository, tmp_path_factory, triton):
    """The classifier alone, bounded one way or the other: its first step admitting 2 waiting
    requests at most (max_queue_size), or, built with queue_timeout_ms alone, every step
    refusing a request that waited 20 ms in its queue."""
    repo = tmp_path_factory.mktemp("admission") / "repo"
    if request.param == "queue":
        shutil.copytree(classifier_repository, repo)
        path = repo / C.PREPROCESS / "config.pbtxt"
        config = read_config(path)
        assert config.dynamic_batching.default_queue_policy.max_queue_size == 64  # the build's
        config.dynamic_batching.default_queue_policy.max_queue_size = 2
        write_config(path, config)
    else:
        from maas.build.configs import ServingOptions
        from maas.build.repository import BuildOptions, build_repository

        checkpoint, onnx = (request.getfixturevalue(f) for f in ("checkpoint_path", "onnx_path"))
        wait_alone = ServingOptions(max_queue_size=0, queue_timeout_ms=20)
        build_repository(checkpoint, onnx, repo, wait_alone,
                         BuildOptions(variant="onnx", speed_seconds=0.1))  # fmt: skip
        for path in [*repo.glob("*/config.pbtxt"), *repo.glob("*/configs/*.pbtxt")]:
            config = read_config(path)  # every step bounded, not the ensemble (no queue)
            wait = config.dynamic_batching.default_queue_policy.default_timeout_microseconds
            assert wait == (0 if config.platform == "ensemble" else 20_000), path
    why = {"queue": "Exceeds maximum queue size", "wait": "Request timeout expired"}
    with triton(repo) as server:
        yield server, why[request.param]


def flood(url: str, images) -> tuple[list[Overloaded], list[tuple[int, object]]]:
    """Every image at once, no retries: the refusals, and (index, answer) for the rest."""

    async def all_at_once():
        async with AsyncClient(url, retry=Retry(attempts=1)) as client:

            async def one(i):
                try:
                    [answer] = await client.classify([images[i]])
                    return i, answer
                except Overloaded as e:
                    return i, e

            return await asyncio.wait_for(asyncio.gather(*map(one, range(len(images)))), 60)

    outcomes = asyncio.run(all_at_once())
    refused = [e for _, e in outcomes if isinstance(e, Overloaded)]
    return refused, [(i, a) for i, a in outcomes if not isinstance(a, Overloaded)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_beyond_capacity_requests_are_refused_and_the_admitted_answered_right(
    small_queue, heldout_png, offline, scheme
):
    small_queue, why = small_queue
    images = heldout_png[:200]
    refused, answered = flood(small_queue.url(scheme), images)
    assert refused and answered, (len(refused), len(answered))
    assert all("overloaded, retry later" in str(e) for e in refused)
    assert all(why in str(e) for e in refused), refused[0]
    assert {e.status for e in refused} == {"503" if scheme == "http" else "StatusCode.UNAVAILABLE"}
    for i, answer in answered:  # nothing admitted is lost or answered wrongly
        assert answer.top.label == offline["labels"][i, 0].decode()
    with Client(small_queue.url(scheme)) as client:  # and the server serves on
        assert client.classify(images[:3])[0].top.label == offline["labels"][0, 0].decode()


def ensemble_failures(server) -> tuple[int, int]:
    """The classifier pipeline's answered and failed (refused included) requests, Triton's
    statistics."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(C.ENSEMBLE).model_stats[0].inference_stats
    return stats.success.count, stats.fail.count


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_front_door_refuses_beyond_its_requests_in_flight_before_a_replica_sees_them(
    server, heldout_png, offline, scheme
):
    """nginx in front of the server, 2 inference requests in flight a replica: a flood of 100
    is answered in part, the rest refused at the door (503 / UNAVAILABLE, Overloaded) without
    reaching Triton (its failure count stays), and what was admitted is answered right."""
    from maas.access import Ports
    from maas.balancer import Balancer, Nginx, has_nginx

    if not has_nginx():
        pytest.skip("nginx or its njs module missing")
    ports, images = Ports.free(), heldout_png[:100]
    lb = Balancer(http=ports.http, grpc=ports.grpc, inflight_per_replica=2)
    with Nginx([server.ports], lb):
        answered_before, failed_before = ensemble_failures(server)
        refused, answered = flood(lb.url(scheme), images)
        assert refused and answered, (len(refused), len(answered))
        assert all("in flight at this front door" in str(e) for e in refused), refused[0]
        expected = "503" if scheme == "http" else "StatusCode.UNAVAILABLE"
        assert {e.status for e in refused} == {expected}
        for i, answer in answered:
            assert answer.top.label == offline["labels"][i, 0].decode()
        answered_after, failed_after = ensemble_failures(server)
        assert failed_after == failed_before  # the refused never reached the server
        assert answered_after >= answered_before + len(answered)
        with Client(lb.url(scheme)) as client:  # and the door serves on
            assert client.classify(images[:3])[0].top.label == offline["labels"][0, 0].decode()


@pytest.fixture(scope="module")
def cached(repository, tmp_path_factory, triton):
    """The generator alone, served as `maas serve` serves it: with Triton's response cache."""
    repo = tmp_path_factory.mktemp("cached") / "repo"
    for model in (C.GENERATOR, C.GAN_NOISE, C.GAN_GENERATOR, C.GAN_PNG):
        shutil.copytree(repository / model, repo / model)
    with triton(repo, ServerConfig(cache_mb=SERVE_CACHE_MB)) as server:
        yield server


def cache_counts(server, model: str) -> tuple[int, int]:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(model).model_stats[0].inference_stats
    return stats.cache_hit.count, stats.cache_miss.count


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_repeated_request_is_a_cache_hit_with_the_same_bytes(cached, model_counts, scheme):
    """The generator with one seed twice: the second answer is Triton's cached one (its
    statistics say so, and no step ran), byte for byte the first."""
    seed = 4242 if scheme == "http" else 4243
    with Client(cached.url(scheme)) as client:
        hits, misses = cache_counts(cached, C.GENERATOR)
        steps = model_counts(C.GAN_PNG, cached)
        first = client.generate(7, seed, 3)
        assert cache_counts(cached, C.GENERATOR) == (hits, misses + 1)
        ran = model_counts(C.GAN_PNG, cached)
        assert ran[0] == steps[0] + 1
        again = client.generate(7, seed, 3)
        assert cache_counts(cached, C.GENERATOR) == (hits + 1, misses + 1)
        assert model_counts(C.GAN_PNG, cached) == ran  # answered without running a step
        assert again == first
        other = client.generate(7, seed + 10, 3)  # another request is computed
        assert other != first and cache_counts(cached, C.GENERATOR)[1] == misses + 2
    url = f"http://127.0.0.1:{cached.ports.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        metrics = answer.read().decode()
    assert f'nv_cache_num_hits_per_model{{model="{C.GENERATOR}",version="1"}}' in metrics


def test_what_is_cached_and_where_the_queue_is_bounded(repository):
    """Every ensemble enables the cache, the stream (which keeps state) does not; each
    pipeline's first step, and no other model (no network: where it runs inside another
    pipeline a refusal would come after work), bounds its queue."""
    from maas.probe import read_configs

    configs = read_configs(repository)
    # vae_decoder leads vae_decode but runs inside vae_sample and vae_reconstruct: unbounded.
    entries = {C.PREPROCESS, C.FORECASTER_PREPROCESS, C.FORECASTER_STREAM, C.VAE_PREPROCESS,
               C.VAE_NOISE, C.GAN_NOISE, "colours_preprocess"}  # fmt: skip
    for name, config in configs.items():
        assert config.response_cache.enable == (config.platform == "ensemble"), name
        bound = config.dynamic_batching.default_queue_policy.max_queue_size
        if name == C.FORECASTER_STREAM:  # one waiting request per sequence it holds
            assert bound == int(config.parameters[C.MAX_SEQUENCES].string_value) == 4096
        else:
            assert bound == (64 if name in entries else 0), name
