"""maas publish's pure parts: S3 URLs, the upload order that never shows half a model, and
the change set between the local tree and the published index."""

from __future__ import annotations

import pytest

from maas.publish import S3Location, local_tree, plan, upload_order


def test_s3_urls():
    where = S3Location.parse("s3://models/prod/repo/")
    assert (where.bucket, where.prefix) == ("models", "prod/repo")
    assert where.key("classifier/config.pbtxt") == "prod/repo/classifier/config.pbtxt"
    assert S3Location.parse("s3://models").key("a") == "a"
    # Triton's forms: AWS, then another endpoint (http is its default scheme there).
    assert where.triton_url() == "s3://models/prod/repo"
    assert where.triton_url("http://127.0.0.1:9000") == "s3://127.0.0.1:9000/models/prod/repo"
    assert where.triton_url("https://minio:443") == "s3://https://minio:443/models/prod/repo"
    for bad in ("models/repo", "gs://models/repo", "s3:///repo"):
        with pytest.raises(ValueError, match="s3://BUCKET"):
            S3Location.parse(bad)


def test_every_models_files_go_up_before_any_config():
    files = [
        "classifier/config.pbtxt", "classifier/3/model.onnx", "classifier/configs/ort.pbtxt",
        "postprocess/config.pbtxt", "postprocess/labels.txt", "postprocess/1/model.py",
        "image_classifier/config.pbtxt", "image_classifier/1/",
    ]  # fmt: skip
    order = sorted(files, key=upload_order)
    configs = [i for i, f in enumerate(order) if f.endswith("/config.pbtxt")]
    versions = [i for i, f in enumerate(order) if f.split("/")[1].isdigit()]
    assert min(configs) > max(i for i, f in enumerate(order) if i not in configs)
    assert max(versions) < min(i for i, f in enumerate(order) if i not in versions)
    # An alternate config (configs/NAME.pbtxt) is a model's other file, not its config.
    assert order.index("classifier/configs/ort.pbtxt") < min(configs)


def test_plan_sends_only_what_changed_and_removes_what_is_gone():
    published = {"a/config.pbtxt": "1", "a/1/model.py": "2", "a/2/model.py": "3"}
    local = {"a/config.pbtxt": "1x", "a/1/model.py": "2", "a/3/model.py": "4"}
    todo = plan(local, published)
    assert todo.upload == ["a/3/model.py", "a/config.pbtxt"]
    assert todo.delete == ["a/2/model.py"] and todo.unchanged == 1
    assert "2 to upload, 1 to delete, 1 unchanged" in todo.describe()
    assert plan(local, local).upload == [] and plan(local, local).unchanged == 3


def test_local_tree_hashes_files_keeps_empty_folders_and_leaves_caches_out(tmp_path):
    (tmp_path / "m" / "1" / "__pycache__").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text("x = 1\n")
    (tmp_path / "m" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\n')
    (tmp_path / "e" / "1").mkdir(parents=True)  # an ensemble's empty version folder
    tree = local_tree(tmp_path)
    assert sorted(tree) == ["e/1/", "m/1/model.py", "m/config.pbtxt"]
    assert all(len(digest) == 64 for digest in tree.values())
