"""The autocomplete server: torch-rnn-server's protocol for rnn-writer, a JSON API and a writing page.

``app.create_app`` builds the FastAPI application; ``python -m charrnn.serve`` runs it under uvicorn.
Nothing is imported here, so the generation workers (``workers``, ``batching``, ``generation``) start
without loading the web stack.
"""
