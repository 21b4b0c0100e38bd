"""maas publish against a real S3 API (moto's server on 127.0.0.1), and the real tritonserver
serving the published copy with --model-repository=s3://...: the same answers as offline."""

from __future__ import annotations

import shutil

import numpy as np
import psutil

from maas.cli import main as cli
from maas.clients.client import Client
from maas.processes import stubs
from maas.publish import INDEX, S3Location, local_tree, publish, s3_client
from maas.runtime import names as C
from maas.serve import ServerConfig

PIPELINE = (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS, C.ENSEMBLE)


def _objects(client, where: S3Location) -> dict[str, int]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=where.bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def test_publish_then_serve_from_s3(
    s3, classifier_repository, tmp_path, heldout_png, offline, capsys, triton
):
    local = tmp_path / "repo"  # a copy: this test changes it
    shutil.copytree(classifier_repository, local)
    client = s3_client()
    client.create_bucket(Bucket="models")
    where = S3Location.parse("s3://models/prod")

    # --dry-run lists every file and sends nothing.
    assert cli(["publish", "s3://models/prod", "--repository", str(local), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert f"{len(local_tree(local))} to upload, 0 to delete" in listed
    assert _objects(client, where) == {}

    sent = []
    todo = publish(local, where, client, progress=sent.append)
    assert sent == todo.upload and len(sent) == len(local_tree(local))
    for model in PIPELINE:  # every model's files are up before its config
        mine = [i for i, f in enumerate(sent) if f.startswith(f"{model}/")]
        assert sent.index(f"{model}/config.pbtxt") == max(mine)
    objects = _objects(client, where)
    assert set(objects) == {f"prod/{f}" for f in local_tree(local)} | {f"prod/{INDEX}"}

    # Again: nothing changed, nothing sent. Then one changed file and one removed.
    assert publish(local, where, client).upload == []
    labels = local / C.POSTPROCESS / "labels.txt"
    labels.write_text(labels.read_text())  # same bytes: still unchanged
    assert publish(local, where, client, dry_run=True).upload == []
    stale = local / C.CLASSIFIER / "configs" / "stale.pbtxt"
    stale.write_text("# to be removed\n")
    assert publish(local, where, client).upload == [f"{C.CLASSIFIER}/configs/stale.pbtxt"]
    stale.unlink()
    again = publish(local, where, client)
    assert again.upload == [] and again.delete == [f"{C.CLASSIFIER}/configs/stale.pbtxt"]
    assert f"prod/{C.CLASSIFIER}/configs/stale.pbtxt" not in _objects(client, where)

    # tritonserver reads the published copy from S3 and answers as offline ONNX Runtime does.
    url = where.triton_url(s3["AWS_ENDPOINT_URL"])
    assert url.startswith("s3://127.0.0.1:")
    with triton(local, ServerConfig(served_from=url, env=s3)) as server:
        assert f"--model-repository={url}" in server.process.args
        with Client(server.url("grpc")) as served:
            got = served.classify(heldout_png[:16], top_k=3)
        # tritonserver has the storage key; no step's stub has it (each starts through its
        # env's activate script, which drops it), image step or numpy-only.
        secret, found = "AWS_SECRET_ACCESS_KEY", stubs(server.process.pid)
        assert psutil.Process(server.process.pid).environ()[secret] == s3[secret]
        assert found[C.PREPROCESS] and found[C.POSTPROCESS], found
        for model, pids in found.items():
            for pid in pids:  # read (it has the server's PATH), and without any AWS_ variable
                environ = psutil.Process(pid).environ()
                assert "PATH" in environ and not any(k.startswith("AWS_") for k in environ), model
    ids = np.array([[p.class_id for p in c.predictions] for c in got])
    np.testing.assert_array_equal(ids[:, 0], offline["ids"][:16, 0])


def test_publish_refuses_what_is_not_a_repository(s3, tmp_path, capsys):
    assert cli(["publish", "s3://models/x", "--repository", str(tmp_path)]) == 1
    assert "holds no model (config.pbtxt): run maas build" in capsys.readouterr().err
    assert cli(["publish", "models/x"]) == 1
    assert "is not an s3://BUCKET[/PREFIX] URL" in capsys.readouterr().err
