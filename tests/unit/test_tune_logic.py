"""`maas tune`'s pure parts: rewriting a config for a trial, and the search."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from maas import catalog
from maas.benchmarks.tune import SPACE, Outcome, Trial, apply, choose, confirm, search
from maas.build import configs


def test_apply_rewrites_batching_instances_and_clamps_warmup(checkpoint):
    opts = configs.ServingOptions()
    pipeline = catalog.image_classifier(checkpoint.preprocessing(), checkpoint.class_names)
    trial = Trial(
        queue_delay_us=0,
        preferred_batch=32,
        max_batch_size=16,
        preprocess_instances=2,
        classifier_instances=2,
        postprocess_instances=1,
    )
    cls = apply(configs.core_config(pipeline.core, opts, [1]), trial)
    assert cls.max_batch_size == 16 and cls.dynamic_batching.max_queue_delay_microseconds == 0
    assert list(cls.dynamic_batching.preferred_batch_size) == [16]  # capped at max_batch_size
    assert cls.instance_group[0].count == 2
    assert max(w.batch_size for w in cls.model_warmup) <= 16
    assert int(cls.parameters["intra_op_thread_count"].string_value) >= 1
    alternate = apply(configs.core_python_config(pipeline.core, opts, [1]), trial)
    assert alternate.instance_group[0].count == 2 and alternate.max_batch_size == 16
    assert int(alternate.parameters["intra_op_threads"].string_value) >= 1
    ens = apply(configs.ensemble_config(pipeline, opts), trial)
    assert ens.max_batch_size == 16 and not ens.HasField("dynamic_batching")
    assert apply(configs.python_config(pipeline.steps[0], opts), trial).instance_group[0].count == 2


def test_search_walks_one_parameter_at_a_time_and_respects_the_budget():
    base = Trial(500, 0, 64, 1, 1, 1)

    def evaluate(t: Trial) -> Outcome:
        # A made-up landscape: more instances help, a long delay breaks the latency budget.
        ips = 100.0 + 10 * t.postprocess_instances + 5 * t.preprocess_instances
        feasible = t.queue_delay_us < 2000
        return Outcome(t, {16: ips}, {16: 10.0 if feasible else 999.0}, 0, feasible)

    outcomes = search(base, evaluate, SPACE, log=lambda _: None)
    assert outcomes[0].trial == base
    assert (
        len(outcomes) == len({o.trial for o in outcomes}) <= 1 + sum(len(v) for v in SPACE.values())
    )
    best = choose(outcomes, tie=0)  # throughput alone (no latency at low load in this landscape)
    assert best.trial.postprocess_instances == 2 and best.trial.preprocess_instances == 2
    assert best.trial.queue_delay_us != 2000


def test_choose_prefers_low_latency_among_throughput_ties():
    """A batching delay that buys 2% throughput loses to none at all: idle latency decides
    among trials within the tie; outside it, throughput does."""
    delayed = Outcome(Trial(500, 16, 64, 1, 2, 1), {16: 1020.0}, {16: 20.0}, 0, True, 4.5)
    prompt = Outcome(Trial(0, 0, 64, 1, 2, 1), {16: 1000.0}, {16: 20.0}, 0, True, 2.6)
    assert choose([delayed, prompt]) is prompt
    assert choose([delayed, prompt], tie=0.01) is delayed
    broken = Outcome(Trial(0, 0, 64, 1, 1, 1), {16: 990.0}, {16: 20.0}, 3, False, 1.0)
    assert choose([delayed, prompt, broken]) is prompt  # errors: never chosen
    # A latency edge within the noise does not buy 12% less throughput.
    lucky = Outcome(Trial(100, 0, 64, 1, 1, 1), {16: 900.0}, {16: 20.0}, 0, True, 2.5)
    assert choose([delayed, prompt, lucky]) is prompt


def test_confirm_measures_the_default_and_the_best_again_and_averages():
    """A lucky first window does not crown a trial: the default and the best `top` are measured
    again, their throughputs averaged and their worst p99 kept, and only they are chosen from."""
    default = Outcome(Trial(0, 0, 64, 1, 1, 1), {4: 1000.0}, {4: 10.0}, 0, True, 2.0)
    lucky = Outcome(Trial(0, 0, 64, 1, 1, 2), {4: 1300.0}, {4: 10.0}, 0, True, 2.0)
    steady = Outcome(Trial(0, 0, 64, 1, 2, 1), {4: 1200.0}, {4: 10.0}, 0, True, 2.0)
    slow = Outcome(Trial(500, 0, 64, 1, 1, 1), {4: 800.0}, {4: 10.0}, 0, True, 2.0)
    again = {default.trial: 1000.0, lucky.trial: 900.0, steady.trial: 1200.0}
    measured = []

    def evaluate(t: Trial) -> Outcome:
        measured.append(t)
        p99 = 30.0 if t == steady.trial else 10.0
        return Outcome(t, {4: again[t]}, {4: p99}, 0, True, 2.0)

    confirmed = confirm([default, lucky, steady, slow], evaluate, top=2, log=lambda _: None)
    assert measured == [default.trial, lucky.trial, steady.trial]  # not the slow one
    by_trial = {o.trial: o for o in confirmed}
    assert by_trial[lucky.trial].images_per_s[4] == 1100.0  # (1300 + 900) / 2
    assert by_trial[steady.trial].p99_ms[4] == 30.0  # the worse of its two runs
    assert choose(confirmed, tie=0).trial == steady.trial


def test_main_lists_each_trial_once_and_chooses_among_the_confirmed(tmp_path, monkeypatch):
    """`maas tune`'s own loop with the measurement stood in: after the confirmation round,
    tuning.csv holds each trial once (its merged figures where it was measured again), and
    the winner is a confirmed trial, not the one a lucky first window favoured."""
    from maas.benchmarks import tune
    from maas.runtime.images import Preprocessing

    opts = configs.ServingOptions()
    pipeline = catalog.image_classifier(Preprocessing(32, 32), [str(i) for i in range(10)])
    repo = tmp_path / "repo"
    for config in (
        *(
            configs.python_config(step, opts)
            for step in pipeline.steps
            if step is not pipeline.core
        ),
        configs.core_config(pipeline.core, opts, [1]),
    ):
        configs.write_config(repo / config.name / "config.pbtxt", config)
    runs: dict[Trial, int] = {}

    def measure(source, trial, *args, **kwargs) -> Outcome:
        runs[trial] = runs.get(trial, 0) + 1
        lucky = trial.postprocess_instances == 2 and runs[trial] == 1  # then 500
        ips = 1300.0 if lucky else 500.0 if trial.postprocess_instances == 2 else 1000.0
        return Outcome(trial, {4: ips}, {4: 10.0}, 0, True, 2.0)

    monkeypatch.setattr(tune, "measure", measure)
    monkeypatch.setattr(tune, "load_images", lambda checkpoint: [])
    space = {"postprocess_instances": [1, 2], "max_batch_size": [16]}
    best = tune.main(["--repository", str(repo), "--concurrency", "4", "--confirm", "2",
                      "--space", json.dumps(space), "--out", str(tmp_path / "out")])  # fmt: skip
    rows = (tmp_path / "out" / "tuning.csv").read_text().splitlines()[1:]
    assert len(rows) == len(runs) == 3  # default, postprocess 2, max batch 16: once each
    assert sum(runs.values()) == 6  # each measured twice: the default and the two best again
    assert best.trial.postprocess_instances != 2  # (1300 + 500) / 2 loses to 1000
    summary = json.loads((tmp_path / "out" / "tuning.json").read_text())
    assert summary["trials"] == 3 and summary["chosen"]["config"] == dataclasses.asdict(best.trial)


def test_shipped_defaults_are_the_tuned_configuration():
    """The repository `maas build` writes by default is what `maas tune` chose on this machine
    kind; tuning.json says what it was measured on."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "tuning.json"
    summary = json.loads(path.read_text())
    assert summary["measured_on"]["cores"] and summary["measured_on"]["cpu"]
    chosen = summary["chosen"]["config"]
    assert dataclasses.asdict(Trial.from_options(configs.ServingOptions())) == chosen
    assert set(SPACE) <= set(chosen)
