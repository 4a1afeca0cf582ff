"""The HTTP API (FastAPI): synchronous scoring, the durable intake, decisions, labels and operations.

Build it with :func:`create_app` and serve it with uvicorn.
"""

from fraudstream.api.app import create_app

__all__ = ["create_app"]
