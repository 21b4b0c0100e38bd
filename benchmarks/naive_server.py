"""(c) What a user might write instead of Triton: FastAPI + ONNX Runtime, one request one
inference, one process. Written as a competent user would: uvicorn, one ONNX Runtime session
created at start-up with one thread per request (requests run in Starlette's thread pool, and
ONNX Runtime and Pillow release the GIL, so two requests use both cores), the same transforms.

    python -m maas.benchmarks.naive_server --port 8080
    curl --data-binary @artifacts/samples/00_4.png localhost:8080/classify
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Module level: FastAPI resolves the handler's annotations (strings here) in this namespace.
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from maas.benchmarks.inprocess import Pipeline


def create_app(onnx: Path, checkpoint: Path):
    from maas.runtime.images import ImageError
    from maas.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(checkpoint)
    pipe = Pipeline(onnx, ckpt.preprocessing(), ckpt.class_names, threads=1)
    app = FastAPI()

    @app.post("/classify")
    async def classify(request: Request) -> dict:
        body = await request.body()
        try:
            # Off the event loop: decoding and inference release the GIL, so requests overlap.
            labels, scores, ids = await run_in_threadpool(pipe, [body])
        except ImageError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        return {
            "labels": [label.decode() for label in labels[0]],
            "scores": scores[0].tolist(),
            "class_ids": ids[0].tolist(),
        }

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", type=Path, default=Path("artifacts/model.onnx"))
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args(argv)
    app = create_app(args.onnx, args.checkpoint)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
