"""`maas publish`: a built model repository to S3-compatible object storage, for servers that
start with `--model-repository=s3://...` (a fleet, a Kubernetes Deployment).

    maas publish s3://BUCKET/PREFIX [--repository model_repository] [--dry-run]

Credentials and endpoint are boto3's usual ones (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for MinIO or a local stand-in), so the same command points
at AWS S3 or anything that speaks its API.

What a server can see mid-publish is never half a model: a model's version folders go first,
then its other files (labels, warm-up data, alternate configs), its config.pbtxt last; a
server that loads the model meanwhile either finds the old config (whose versions are still
there: nothing is deleted until every config is up) or the new one with all its files in
place. Removed files go last. Re-publishing sends only what changed: the published tree's
SHA-256 per file is kept beside it (INDEX), compared with the local tree's.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from maas.errors import OptionError, PublishError

INDEX = ".maas-published.json"  # {relative path: sha256} of what the last publish uploaded
SKIP = ("__pycache__", ".pyc")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; "" for the bucket's root

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise OptionError(f"{url!r} is not an s3://BUCKET[/PREFIX] URL")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def triton_url(self, endpoint: str | None = None) -> str:
        """The --model-repository value for tritonserver: s3://BUCKET/PREFIX on AWS, with the
        endpoint's host:port first for another S3 service (Triton's form for one)."""
        where = f"{self.bucket}/{self.prefix}".rstrip("/")
        if not endpoint:
            return f"s3://{where}"
        host = urlparse(endpoint)
        scheme = "" if host.scheme == "http" else f"{host.scheme}://"
        return f"s3://{scheme}{host.netloc}/{where}"


@dataclass
class Plan:
    upload: list[str] = field(default_factory=list)  # in the order they go up
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0

    def describe(self) -> str:
        lines = [f"upload {p}" for p in self.upload] + [f"delete {p}" for p in self.delete]
        lines.append(
            f"{len(self.upload)} to upload, {len(self.delete)} to delete, "
            f"{self.unchanged} unchanged"
        )
        return "\n".join(lines)


def local_tree(repository: Path) -> dict[str, str]:
    """Every file a server needs (relative POSIX path -> SHA-256); caches left out. An empty
    folder (an ensemble's version folder) is "path/": object storage has no folders, so it
    goes up as an empty object with that key, which Triton lists as a folder."""
    tree = {}
    for path in sorted(repository.rglob("*")):
        relative = path.relative_to(repository).as_posix()
        if any(s in relative for s in SKIP):
            continue
        if path.is_file():
            tree[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() and not any(path.iterdir()):
            tree[f"{relative}/"] = hashlib.sha256(b"").hexdigest()
    return tree


def upload_order(relative: str) -> tuple[int, str]:
    """0: files inside a version folder (MODEL/N/...); 1: a model's other files; 2: its
    config.pbtxt. Sorting by this uploads every model's contents before any config."""
    parts = PurePosixPath(relative).parts
    if len(parts) > 1 and parts[1].isdigit() and (len(parts) > 2 or relative.endswith("/")):
        return 0, relative
    return (2 if parts[-1] == "config.pbtxt" and len(parts) == 2 else 1), relative


def plan(local: dict[str, str], published: dict[str, str]) -> Plan:
    changed = [p for p, digest in local.items() if published.get(p) != digest]
    return Plan(
        upload=sorted(changed, key=upload_order),
        delete=sorted(set(published) - set(local)),
        unchanged=len(local) - len(changed),
    )


def endpoint_url() -> str | None:
    """Another S3 service than AWS's (MinIO, a local stand-in): boto3's own variable."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url())


def published_index(client, where: S3Location) -> dict[str, str]:
    try:
        body = client.get_object(Bucket=where.bucket, Key=where.key(INDEX))["Body"].read()
    except client.exceptions.NoSuchKey:
        return {}
    return json.loads(body)


def publish(
    repository: Path, where: S3Location, client=None, dry_run: bool = False, progress=None
) -> Plan:
    """Upload what changed, in upload_order, then delete what is gone, then the index.
    `progress(relative)` is called after each object (a tqdm bar's update, say); what S3
    refuses (no credentials, no bucket, no endpoint) is a PublishError."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not (repository.is_dir() and any(repository.glob("*/config.pbtxt"))):
        raise FileNotFoundError(f"{repository} holds no model (config.pbtxt): run maas build")
    try:
        return _publish(repository, where, client or s3_client(), dry_run, progress)
    except (BotoCoreError, ClientError) as e:
        raise PublishError(f"{type(e).__name__}: {e}") from None


def _publish(repository: Path, where: S3Location, client, dry_run: bool, progress) -> Plan:
    local = local_tree(repository)
    todo = plan(local, published_index(client, where))
    if dry_run:
        return todo
    for relative in todo.upload:
        if relative.endswith("/"):  # an empty folder
            client.put_object(Bucket=where.bucket, Key=where.key(relative), Body=b"")
        else:
            client.upload_file(str(repository / relative), where.bucket, where.key(relative))
        if progress:
            progress(relative)
    for relative in todo.delete:
        client.delete_object(Bucket=where.bucket, Key=where.key(relative))
        if progress:
            progress(relative)
    body = json.dumps(local, indent=1, sort_keys=True).encode()
    client.put_object(Bucket=where.bucket, Key=where.key(INDEX), Body=body)
    return todo
