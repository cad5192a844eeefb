"""The HTTP side: a Starlette application over the decode loop (engine/server/worker.py).

    POST /v1/completions    OpenAI's legacy Completions (engine/server/schema.py has the fields)
    GET  /v1/models         the one model served
    GET  /health            200 once the model is loaded; 503 while loading or shutting down
    POST /tokenize          {"prompt": text} -> {"tokens": [...], "count": n, "max_model_len": n_positions}
    POST /detokenize        {"tokens": [...]} -> {"prompt": text}
    GET  /tokenizer_info    the end-of-text token, the context size (vLLM's shape)
    GET  /metrics           Prometheus' text format (engine/server/metrics.py)

Every error is OpenAI's body, {"error": {"message", "type", "param", "code"}}, with its status:
400 for a bad field (named in `param`), 401 for a missing or wrong key (with an API key set; /health
stays public), 404 for an unknown path or model, 413 for a body over the limit, 429 when the
queue is full and 503 while loading or shutting down (both with Retry-After).

Handlers run on the event loop and never touch the model's arithmetic: they check a request, queue it
for the decode thread, and pass on the events it sends back, as one JSON body or as server-sent
events (`data: {chunk}`, then `data: [DONE]`). A client that goes away cancels its request: its rows
leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .errors import APIError
from .metrics import Metrics
from .responses import CompletionResponse
from .schema import parse_completion, parse_detokenize, parse_json, parse_tokenize
from .worker import Work, Worker

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
CLIENT_GONE = 499  # nginx's status for a client that closed the connection (never seen by it)


class ServerState:
    """What the handlers share: the decode loop, the metrics and the server's settings."""

    def __init__(self, worker: Worker, metrics: Metrics, served_name: str, *, api_key, timeout, max_body_bytes):
        self.worker = worker
        self.metrics = metrics
        self.served_name = served_name
        self.api_key = api_key
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.started = int(time.time())

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            what = "no API key was given" if not given else "the API key is not valid"
            raise APIError(
                401, f"{what}: send 'Authorization: Bearer KEY' with the server's key", code="invalid_api_key"
            )

    def model(self):
        """The loaded model, or a 503 while it loads."""
        if not self.worker.ready.is_set():
            raise APIError(503, "the model is still loading", code="loading", retry_after=1)
        return self.worker.model


def state(request: Request) -> ServerState:
    return request.app.state.server


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = APIError(413, f"the request body is larger than the limit of {limit} bytes", code="body_too_large")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        if int(declared) > limit:
            raise too_large
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large
    return bytes(data)


async def read_json(request: Request):
    return parse_json(await read_body(request, state(request).max_body_bytes))


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def server_sent(chunks: list[dict]) -> str:
    return "".join(f"data: {json.dumps(chunk, ensure_ascii=False, separators=(',', ':'))}\n\n" for chunk in chunks)


class EventStream(StreamingResponse):
    """Server-sent events that call `on_close` when the response ends, however it ends (finished,
    or the client disconnected and Starlette cancelled the stream)."""

    def __init__(self, content, on_close):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


# ----------------------------------------------------------------------------------------------
# The endpoints


async def completions(request: Request) -> Response:
    s = state(request)
    s.check_key(request)
    model = s.model()
    body = await read_json(request)
    completion = parse_completion(body, model, s.served_name, s.worker.max_batch_size)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list] = asyncio.Queue()

    def deliver(events: list) -> None:  # on the decode thread
        # RuntimeError: the event loop has closed (a forced shutdown): nobody is listening.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, events)

    work = Work(completion, deliver, deadline=time.monotonic() + s.timeout)
    s.worker.submit(work)
    response = CompletionResponse(completion, model.tokenizer, s.served_name)
    disconnected = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        events = await next_events(queue, disconnected)
        if events is None:
            s.worker.cancel(work)
            return Response(status_code=CLIENT_GONE)
        chunks = response.apply(events)
        work.took()
        if response.error is not None:
            raise response.error
        if completion.stream:
            return EventStream(
                stream_events(chunks, queue, response, work),
                on_close=lambda: None if response.done else s.worker.cancel(work),
            )
        while not response.done:
            events = await next_events(queue, disconnected)
            if events is None:
                s.worker.cancel(work)
                return Response(status_code=CLIENT_GONE)
            response.apply(events)
            work.took()
        if response.error is not None:
            raise response.error
        return JSONResponse(response.body())
    except asyncio.CancelledError:  # a forced shutdown
        s.worker.cancel(work)
        raise
    finally:
        disconnected.cancel()


async def next_events(queue: asyncio.Queue, disconnected: asyncio.Future) -> list | None:
    """The next events of the decode loop, or None if the client disconnected first."""
    getting = asyncio.ensure_future(queue.get())
    await asyncio.wait({getting, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    if getting.done():
        return getting.result()
    getting.cancel()
    return None


async def stream_events(first_chunks: list[dict], queue: asyncio.Queue, response: CompletionResponse, work: Work):
    if first_chunks:
        yield server_sent(first_chunks)
    while not response.done:
        events = await queue.get()
        chunks = response.apply(events)
        if chunks:
            yield server_sent(chunks)
        work.took()
    if response.error is not None:
        yield server_sent([response.error.body()])
    if response.request.include_usage:
        yield server_sent([response.usage_chunk()])
    yield "data: [DONE]\n\n"


async def models(request: Request) -> Response:
    s = state(request)
    s.check_key(request)
    model = s.model()
    card = {
        "id": s.served_name,
        "object": "model",
        "created": s.started,
        "owned_by": "gpt2-engine",
        "max_model_len": model.config.n_positions,
    }
    return JSONResponse({"object": "list", "data": [card]})


async def health(request: Request) -> Response:
    worker = state(request).worker
    if worker.load_error is not None:
        return JSONResponse({"status": "failed", "error": str(worker.load_error)}, status_code=503)
    if not worker.ready.is_set():
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
    if worker.draining:
        return JSONResponse({"status": "shutting down"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def tokenize(request: Request) -> Response:
    s = state(request)
    s.check_key(request)
    model = s.model()
    ids = parse_tokenize(await read_json(request), model, s.served_name)
    return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": model.config.n_positions})


async def tokenizer_info(request: Request) -> Response:
    """What a client needs to tokenize as the server does (vLLM's shape; lm-evaluation-harness
    looks for it to use /tokenize and /detokenize instead of a tokenizer of its own)."""
    s = state(request)
    s.check_key(request)
    model = s.model()
    end = model.tokenizer.decode([model.config.eos_token_id])
    return JSONResponse(
        {
            "tokenizer_class": "GPT2Tokenizer (tiktoken's gpt2 encoding)",
            "eos_token": end,
            "bos_token": end,
            "pad_token": None,
            "model_max_length": model.config.n_positions,
            "vocab_size": model.tokenizer.n_vocab,
        }
    )


async def detokenize(request: Request) -> Response:
    s = state(request)
    s.check_key(request)
    model = s.model()
    ids = parse_detokenize(await read_json(request), model, s.served_name)
    return JSONResponse({"prompt": model.tokenizer.decode(ids)})


async def metrics(request: Request) -> Response:
    s = state(request)
    s.check_key(request)
    body, content_type = s.metrics.exposition()
    return Response(body, media_type=content_type)


ROUTES = [
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/tokenize", tokenize, methods=["POST"]),
    Route("/detokenize", detokenize, methods=["POST"]),
    Route("/tokenizer_info", tokenizer_info, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]


# ----------------------------------------------------------------------------------------------
# Errors and request counts


async def api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return error_response(error)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"there is no endpoint {request.url.path}"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(error.detail)
    return error_response(APIError(error.status_code, message))


async def internal_error(request: Request, error: Exception) -> Response:
    return error_response(APIError(500, "internal error: the server's log has the details"))


class CountRequests:
    """ASGI middleware: count every answered request by endpoint and status code."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self.endpoints = {route.path for route in ROUTES}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [CLIENT_GONE]

        async def send_counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            status[0] = 500
            raise
        finally:
            endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
            self.metrics.requests.labels(endpoint, str(status[0])).inc()


def create_app(
    load,
    *,
    served_name: str,
    max_batch_size: int = 16,
    max_queue: int = 64,
    timeout: float = 600.0,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    threads: int | str | None = None,
    on_load_error=lambda error: None,
) -> Starlette:
    """The application. `load()` returns the model; it runs on the decode thread at start-up, and
    /health answers 503 until it has returned."""
    metrics_ = Metrics()
    worker = Worker(
        load,
        max_batch_size=max_batch_size,
        max_queue=max_queue,
        metrics=metrics_,
        threads=threads,
        on_load_error=on_load_error,
    )
    server = ServerState(worker, metrics_, served_name, api_key=api_key, timeout=timeout, max_body_bytes=max_body_bytes)

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, worker.stop)

    app = Starlette(
        routes=ROUTES,
        exception_handlers={APIError: api_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.server = server
    app.add_middleware(CountRequests, metrics=metrics_)
    return app
