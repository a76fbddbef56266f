"""The autocomplete server: ``python -m charrnn.serve --ckpt PATH [--host 127.0.0.1] [--port 8080]``.

See :mod:`charrnn.server` for the protocol, the JSON API and the writing page.
"""

import sys

SERVER_PACKAGES = {"fastapi", "uvicorn", "starlette", "pydantic"}  # the `serve` extra


def main(argv: list[str] | None = None) -> int:
    try:
        from charrnn.server.cli import main as serve
    except ModuleNotFoundError as e:
        if e.name not in SERVER_PACKAGES:
            raise
        print(f"error: the server needs {e.name}, which is not installed: pip install -e '.[serve]' "
              "(or run `make serve`, which installs it)", file=sys.stderr)
        return 2
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
