"""`maas tune` on a tiny search space writes configs that Triton loads."""

from __future__ import annotations

import json
import shutil

from maas.benchmarks.tune import main, write_trial
from maas.build.configs import read_config
from maas.runtime import names as C


def test_tune_tiny_space_writes_loadable_configs(repository, checkpoint_path, tmp_path):
    applied = tmp_path / "applied"
    shutil.copytree(repository, applied)
    best = main([
        "--repository", str(repository), "--checkpoint", str(checkpoint_path),
        # The confirmation round is tests/unit/test_tune_logic.py's: 3 trials, 3 servers.
        "--concurrency", "4", "--window", "0.5", "--confirm", "0", "--p99-budget", "10000",
        "--warmup", "0.2", "--max-windows", "1",  # what is checked is the search, not its figures
        "--space", json.dumps({"postprocess_instances": [2], "max_batch_size": [16]}),
        "--out", str(tmp_path / "results"), "--apply", str(applied),
    ])  # fmt: skip
    assert best is not None
    summary = json.loads((tmp_path / "results" / "tuning.json").read_text())
    assert summary["trials"] == 3 and summary["measured_on"]["cores"] >= 1
    assert summary["chosen"]["config"] == {
        k: getattr(best.trial, k) for k in summary["chosen"]["config"]
    }
    rows = (tmp_path / "results" / "tuning.csv").read_text().splitlines()
    assert len(rows) == 4 and "images_per_s_c4" in rows[0]
    configs = {p.parent.name: read_config(p) for p in applied.glob("*/config.pbtxt")}
    assert configs[C.POSTPROCESS].instance_group[0].count == best.trial.postprocess_instances
    tuned = (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS, C.ENSEMBLE)
    assert {configs[n].max_batch_size for n in tuned} == {best.trial.max_batch_size}
    # The other families' models are not what this search measures: left byte for byte.
    for path in [*repository.glob("*/config.pbtxt"), *repository.glob("*/configs/*.pbtxt")]:
        if path.relative_to(repository).parts[0] not in tuned:
            assert (applied / path.relative_to(repository)).read_bytes() == path.read_bytes()
    # What --apply wrote is what the chosen trial served (each trial's server loaded, warmed up
    # and answered its configs, the alternates under configs/ too): the same bytes.
    served = write_trial(repository, tmp_path / "served", best.trial)
    written = [*served.glob("*/config.pbtxt"), *served.glob("*/configs/*.pbtxt")]
    assert {p.parent.name for p in written} >= set(tuned)
    for path in written:
        assert path.read_bytes() == (applied / path.relative_to(served)).read_bytes(), path
