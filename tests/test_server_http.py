"""The real server over HTTP: rnn-writer's protocol with good and bad input, and the JSON API."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from tests.support.server import assert_error, lowercase_checkpoint, raw_get, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(lowercase_checkpoint(tmp_path_factory.mktemp("model"))) as url:
        yield url


def js_encode(text: str) -> str:
    return quote(text, safe="!'()*")


def generate(server: str, query: str) -> httpx.Response:
    return raw_get(server, f"/generate?{query}")


def assert_success(reply: httpx.Response, sent: str) -> list[str]:
    """A reply rnn-writer accepts: no ``message``, and ``start_text`` decodes to what it sent.

    (rnn-writer compares ``decodeURIComponent(start_text).replace(/\\+/g, " ")``: it also turns a "+"
    of its own text into a space, so a prime with "+" never matches whatever the server echoes.)
    """
    assert reply.status_code == 200, reply.text[:500]
    body = reply.json()
    assert set(body) == {"start_text", "completions", "time"}
    assert body["start_text"] == js_encode(sent)
    if "+" not in sent:
        assert unquote(body["start_text"], errors="strict").replace("+", " ") == sent
    assert float(body["time"]) >= 0 and isinstance(body["completions"], list)
    return body["completions"]


def test_root_answers_json_without_a_message(server):
    reply = raw_get(server, "/")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert "message" not in reply.json() and reply.json()["model"]["has_uppercase"] is False


def test_completions_follow_torch_rnn_servers_rule(server):
    prime = "First Citizen:  before   we "
    reply = generate(server, f"start_text={js_encode(prime)}&n=5")
    assert reply.json()["start_text"] == js_encode(prime)  # byte for byte as the client sent it
    completions = assert_success(reply, prime)
    assert len(completions) == 5
    for c in completions:
        words = len(c.split())
        assert 3 <= words <= 20 and len(c) <= 140, c
        assert (c[-1] in "!?." and words > 3) or len(c) == 140, c


@pytest.mark.parametrize("n, count", [(None, 1), ("2", 2), ("11", 10), ("1000000000", 10)])
def test_n_defaults_to_one_and_is_capped_at_ten(server, n, count):
    query = "start_text=all%3A%20speak" + (f"&n={n}" if n else "")
    assert len(assert_success(generate(server, query), "all: speak")) == count


@pytest.mark.parametrize("query, words", [
    ("n=abc", "n='abc'"), ("n=0", "n='0'"), ("n=-1", "n='-1'"), ("n=1.5", "n='1.5'"), ("n=1e9", "n='1e9'"),
    ("n=", "n=''"), ("n=2&n=3", "n is given 2 times"), ("start_text=b", "start_text is given 2 times"),
    ("n=%FF", "n is not UTF-8"),
])
def test_bad_n_gets_a_json_message(server, query, words):
    assert words in assert_error(generate(server, f"start_text=a&{query}"), 400)


def test_missing_start_text_gets_a_message_and_empty_is_fine(server):
    assert "start_text is missing" in assert_error(generate(server, "n=2"), 400)
    assert "start_text is missing" in assert_error(generate(server, ""), 400)
    assert len(assert_success(generate(server, "start_text=&n=2"), "")) <= 2


def test_percent_in_the_prime_is_echoed_encoded(server):
    reply = generate(server, "start_text=100%25%20sure&n=1")
    assert reply.json()["start_text"] == "100%25%20sure"
    assert_success(reply, "100% sure")


@pytest.mark.parametrize("sent, text", [
    ("%ZZ", "%ZZ"), ("%00", "\x00"), ("a%0D%0Ab%0D%0A", "a\r\nb\r\n"), ("caf%C3%A9%20%F0%9F%98%80", "café 😀"),
    ("FIRST%20CITIZEN%3A%20BEFORE%20WE%20", "FIRST CITIZEN: BEFORE WE "), ("%2B%2B", "++"),
])
def test_odd_characters_get_completions(server, sent, text):
    completions = assert_success(generate(server, f"start_text={sent}&n=3"), text)
    assert 1 <= len(completions) <= 3


def test_invalid_utf8_gets_a_message(server):
    assert "UTF-8" in assert_error(generate(server, "start_text=ab%FFcd&n=2"), 400)


def test_long_and_huge_start_text(server):
    text = ("Before we proceed any further, hear me speak! " * 250)[:10_000]
    completions = assert_success(generate(server, f"start_text={js_encode(text)}&n=2"), text)
    assert len(completions) == 2
    started = time.monotonic()
    message = assert_error(generate(server, "start_text=" + "a" * 1_000_000 + "&n=2"), 413)
    assert "--max-start-text" in message and time.monotonic() - started < 10


def test_other_paths_and_methods_answer_json(server):
    assert_error(raw_get(server, "/nowhere"), 404)
    assert_error(httpx.post(f"{server}/generate"), 405)


def test_json_api_is_seeded_and_stops(server):
    ask = {"prime": "all:\n", "n": 3, "length": 120, "temperature": 1.0, "seed": 11}
    a = httpx.post(f"{server}/v1/generate", json=ask).json()
    assert "message" not in a and a["seed"] == 11 and a["prime"] == "all:\n"
    assert a["completions"] == httpx.post(f"{server}/v1/generate", json=ask).json()["completions"]
    other = httpx.post(f"{server}/v1/generate", json={**ask, "seed": 12}).json()["completions"]
    assert other != a["completions"]
    texts = [c["text"] for c in a["completions"]]
    assert all(len(t) == 120 and c["finish_reason"] == "length" for t, c in zip(texts, a["completions"], strict=True))
    cut = httpx.post(f"{server}/v1/generate", json={**ask, "stop": ["\n\n", "."]}).json()["completions"]
    for full, short in zip(texts, cut, strict=True):
        ends = [i for i in (full.find("\n\n"), full.find(".")) if i >= 0]
        assert short["text"] == full[:min(ends)] and short["finish_reason"] == "stop"


def test_json_api_tiny_top_p_is_the_most_likely_character(server):
    ask = {"prime": "all:\n", "length": 40, "seed": 3}
    greedy = httpx.post(f"{server}/v1/generate", json={**ask, "temperature": 0}).json()["completions"]
    tiny = httpx.post(f"{server}/v1/generate", json={**ask, "top_p": 1e-60}).json()["completions"]
    assert tiny == greedy and len(greedy[0]["text"]) == 40


def test_json_api_reports_what_the_model_cannot_read(server):
    reply = httpx.post(f"{server}/v1/generate", json={"prime": "ALL: é\x00", "length": 5, "top_k": 3, "top_p": 0.9})
    body = reply.json()
    assert reply.status_code == 200 and body["prime"] == "all: " and body["dropped"] == {"é": 1, "\x00": 1}
    greedy = httpx.post(f"{server}/v1/generate", json={"prime": "all:", "n": 4, "length": 30, "temperature": 0})
    assert len({c["text"] for c in greedy.json()["completions"]}) == 1


@pytest.mark.parametrize("body, words", [
    ({"n": 11}, "--max-n"), ({"length": 100_000}, "--max-length"), ({"prime": "a" * 20_000}, "--max-start-text"),
    ({"n": 0}, "n:"), ({"n": "abc"}, "n:"), ({"temperature": -1}, "temperature:"), ({"top_p": 0}, "top_p:"),
    ({"seed": -5}, "seed:"), ({"stop": ["x"] * 9}, "stop"), ({"stop": ""}, "stop"), ({"nonsense": 1}, "nonsense"),
    ('{"temperature": NaN}', "temperature:"), ('{"temperature": Infinity}', "temperature:"),
    ('{"top_p": NaN}', "top_p:"), ({"top_k": 0}, "top_k:"), ({"seed": 2**64}, "seed:"),
])
def test_json_api_refuses_bad_requests_naming_the_field(server, body, words):
    json_ = {"content-type": "application/json"}
    sent = {"content": body, "headers": json_} if isinstance(body, str) else {"json": body}  # str: NaN, Infinity
    assert words in assert_error(httpx.post(f"{server}/v1/generate", **sent), 422)


def test_json_api_refuses_bodies_that_are_not_json_or_too_big(server):
    not_json = httpx.post(f"{server}/v1/generate", content=b"{x", headers={"content-type": "application/json"})
    assert "JSON" in assert_error(not_json, 422)
    big = b'{"prime": "' + b"a" * 5_000_000 + b'"}'
    assert "--max-request-bytes" in assert_error(httpx.post(f"{server}/v1/generate", content=big), 413)


def test_health_docs_and_writing_page(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["model"]["rnn_size"] == 64 and health["pending"] == 0
    assert "swagger" in httpx.get(f"{server}/docs").text.lower()
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert {"/", "/generate", "/v1/generate", "/health", "/write"} <= set(paths)
    page = httpx.get(f"{server}/write")
    assert page.status_code == 200 and "<textarea" in page.text and "encodeURIComponent" in page.text


def test_idle_connections_with_default_flags_leave_requests_alone(server):
    address = urlsplit(server).hostname, urlsplit(server).port
    with ExitStack() as stack:
        for _ in range(120):  # uvicorn's limit_concurrency answered every request with text 503 past 64 of these
            stack.enter_context(socket.create_connection(address, timeout=10))
        reply = generate(server, "start_text=all%3A&n=2")
        assert reply.status_code == 200 and len(reply.json()["completions"]) == 2
