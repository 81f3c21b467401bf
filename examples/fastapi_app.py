"""Starting Aiki runs from an asyncio web app (FastAPI), with no trio in sight.

``aiki.client`` is written against anyio, so it runs on FastAPI's asyncio loop as it is:
open it once in the app's lifespan, then start runs and await their results in request
handlers. The workflow code itself runs in trio workers elsewhere, e.g.::

    aiki worker examples.order_processing:order_processing --redis-url redis://...
    AIKI_REDIS_URL=redis://... uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request

import aiki
from examples.order_processing import order_processing_v1


def create_app(redis_url: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiki.client(redis_url=redis_url) as client:
            app.state.aiki = client
            yield

    app = FastAPI(title="orders", lifespan=lifespan)

    @app.post("/orders")
    async def create_order(order: dict[str, Any], request: Request) -> dict[str, Any]:
        client: aiki.Client = request.app.state.aiki
        handle = await order_processing_v1.start(client, order)
        try:
            result = await handle.wait_for_completion(timeout=30.0)
        except aiki.WorkflowFailed as exc:
            raise HTTPException(422, f"order failed: {exc.error_message}") from None
        return {"run_id": handle.id, "result": result}

    @app.get("/orders/{run_id}")
    async def order_status(run_id: str, request: Request) -> dict[str, Any]:
        client: aiki.Client = request.app.state.aiki
        try:
            run = await client.get_run(run_id)
        except aiki.RunNotFound:
            raise HTTPException(404, f"no order run {run_id}") from None
        return {"run_id": run.id, "status": run.status, "result": run.result}

    return app


app = create_app(os.environ.get("AIKI_REDIS_URL", "redis://127.0.0.1:6379"))
