"""What every route needs: the model, the completion rule, the limits and the worker pool."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from charrnn.server.capacity import Capacity
from charrnn.server.loading import ServedModel
from charrnn.server.options import CompletionRule, Limits


@dataclass(frozen=True)
class ServerContext:
    model: ServedModel
    rule: CompletionRule
    limits: Limits
    capacity: Capacity


def get_context(request: Request) -> ServerContext:
    """FastAPI dependency: the context stored on the app by ``create_app``."""
    return request.app.state.context
