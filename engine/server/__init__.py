"""`gpt2 serve`: an OpenAI-compatible completions server with continuous batching.

The interfaces layer beside the command line (docs/architecture.md): it loads a model through the
facade and runs every request through one continuous batch (engine/generation/continuous.py) on
one decode thread. It needs the `serve` extra (Starlette, uvicorn, prometheus_client); the engine
below it never imports them. docs/serving.md documents the endpoints, fields and limits.

    schema.py      request bodies -> checked values (OpenAI's fields, the engine's extras)
    worker.py      the decode thread: queue, admission, the batch's steps, events
    responses.py   events -> OpenAI's completion objects and stream chunks
    metrics.py     Prometheus counters
    app.py         the Starlette application: endpoints, errors, streaming, disconnects
    run.py         uvicorn on our own socket; a shutdown that drains
"""

from .app import create_app
from .run import serve

__all__ = ["create_app", "serve"]
