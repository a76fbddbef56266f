"""The autocomplete server: torch-rnn-server's protocol for rnn-writer, a JSON API and a writing page.

``create_app`` builds the FastAPI application; ``python -m charrnn.serve`` runs it under uvicorn.
"""

from charrnn.server.app import create_app
from charrnn.server.loading import ServedModel, load_served_model
from charrnn.server.options import CompletionRule, Limits

__all__ = ["CompletionRule", "Limits", "ServedModel", "create_app", "load_served_model"]
