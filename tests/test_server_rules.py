"""The server's pure parts: query decoding, the percent-encoded echo, the completion rule, its bounds."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import torch

from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from charrnn.server.batching import Batcher
from charrnn.server.generation import Completions, Continuation, Continuations, Draft, legacy_prime
from charrnn.server.loading import ServedModel
from charrnn.server.options import CompletionRule, Limits
from charrnn.server.query import QueryError, encode_uri_component, read_generate_query
from charrnn.vocab import Vocab


def query(raw: str, max_n: int = 10) -> tuple[str, str, int]:
    q = read_generate_query(raw.encode("ascii"), max_n=max_n, default_n=1, max_start_text=100)
    return q.start_text, q.echo, q.n


def test_echo_is_what_encode_uri_component_makes():
    # Values from JavaScript: encodeURIComponent("100% sure ü!*'()~-_.;/?:@&=+$,#")
    assert encode_uri_component("100% sure ü!*'()~-_.;/?:@&=+$,#") == \
        "100%25%20sure%20%C3%BC!*'()~-_.%3B%2F%3F%3A%40%26%3D%2B%24%2C%23"
    assert encode_uri_component("😀\r\n\x00") == "%F0%9F%98%80%0D%0A%00"


def test_query_decoding_and_echo():
    assert query("start_text=100%25%20sure&n=3") == ("100% sure", "100%25%20sure", 3)
    assert query("start_text=a+b") == ("a b", "a%20b", 1)  # form encoding: + is a space
    assert query("start_text=%ZZ%2") == ("%ZZ%2", "%25ZZ%252", 1)  # a stray % stands for itself
    assert query("start_text=&n=10") == ("", "", 10)
    assert query("n=2&start_text=x&other=1") == ("x", "x", 2)


@pytest.mark.parametrize("n, expected", [("11", 10), ("1000000000", 10), ("9" * 5000, 10), ("007", 7), ("%35", 5)])
def test_large_n_is_capped(n, expected):
    assert query(f"start_text=a&n={n}")[2] == expected


@pytest.mark.parametrize("raw, words", [
    ("start_text=a&n=abc", "n='abc'"), ("start_text=a&n=0", "n='0'"), ("start_text=a&n=-1", "n='-1'"),
    ("start_text=a&n=1.5", "n='1.5'"), ("start_text=a&n=1e9", "n='1e9'"), ("start_text=a&n=", "n=''"),
    ("start_text=a&n=1&n=2", "n is given 2 times"), ("start_text=a&start_text=b", "start_text is given 2"),
    ("n=2", "start_text is missing"), ("start_text=%FF", "byte 0xFF"), ("start_text=%C3", "byte 0xC3"),
])
def test_bad_queries_name_the_parameter(raw, words):
    with pytest.raises(QueryError, match=words.replace("(", r"\(")) as e:
        query(raw)
    assert e.value.status == 400


def test_too_long_start_text_is_413():
    for raw in ("start_text=" + "a" * 101, "start_text=" + "%C3%A9" * 101, "start_text=" + "a" * 5000):
        with pytest.raises(QueryError, match="--max-start-text") as e:
            query(raw)
        assert e.value.status == 413
    assert len(query("start_text=" + "%C3%A9" * 100)[0]) == 100


def test_swap_case_or_leave_out_and_legacy_prime():
    vocab = Vocab(list("abc .\n"))
    assert vocab.swap_case_or_leave_out("AbXé\x00c") == ("abc", {"X": 1, "é": 1, "\x00": 1})
    rule = CompletionRule()
    assert legacy_prime(vocab, "A  B\r\n\tC. é", rule, 100) == "a b c. "
    assert legacy_prime(vocab, "abc abc", rule, 3) == "abc"
    raw = CompletionRule(lowercase=False, collapse_whitespace=False)
    assert legacy_prime(Vocab(list("aAb \n")), "A  b\r\n", raw, 100) == "A  b\n"


def feed(rule: CompletionRule, text: str) -> Draft:
    d = Draft(rule)
    d.add(text)
    return d


def test_draft_follows_torch_rnn_servers_rule():
    rule = CompletionRule()
    assert not feed(rule, "one two. three").done  # a stop character needs more than 3 words first
    d = feed(rule, "one two three four. five")
    assert d.done and d.accepted and d.text == "one two three four."
    assert feed(rule, "a" * 140 + "b").text == "a" * 140  # 140 characters at most ...
    assert not feed(rule, "a" * 140).accepted  # ... and 1 word is too few
    long = feed(rule, "w " * 21)  # more than 20 words: rejected as soon as it is known
    assert long.done and not long.accepted and long.words == 21
    custom = feed(CompletionRule(stop_chars="\n", stop_after_words=0, min_words=1), "hi there\nmore")
    assert custom.accepted and custom.text == "hi there\n"


def feed_row(job: Completions, row: int, text: str) -> None:
    for token in job.vocab.encode(text):
        job.feed(row, token)


def test_the_first_completions_accepted_are_the_answer():
    vocab = Vocab(list("abcdw .!?"))
    job = Completions(vocab, "ab", 2, CompletionRule(oversample=1.5), deadline=10.0, seed=0)
    assert [row for row, _ in job.start_rows()] == [0, 1, 2]  # two missing completions, 1.5 rows each
    feed_row(job, 2, "a b c d.")
    feed_row(job, 0, "w " * 21)  # rejected
    assert not job.finished() and [row for row, _ in job.start_rows()] == [3]  # 1 missing: 2 rows run
    feed_row(job, 3, "d c b a!")
    assert job.finished() and job.result() == ["a b c d.", "d c b a!"]  # row 1 is not awaited


def test_finished_rows_are_replaced_up_to_the_attempt_cap():
    vocab = Vocab(list("abcdw .!?"))
    job = Completions(vocab, "", 2, CompletionRule(oversample=1.0, max_attempts=2), deadline=10.0, seed=0)
    assert len(job.start_rows()) == 2
    feed_row(job, 0, "w " * 21)
    assert [row for row, _ in job.start_rows()] == [2]  # the rejected row is replaced at once
    feed_row(job, 1, "a b c d.")
    feed_row(job, 2, "w " * 21)
    assert [row for row, _ in job.start_rows()] == [3]
    assert job.start_rows() == []  # 4 rows were the budget
    feed_row(job, 3, "w " * 21)
    assert job.finished() and job.result() == ["a b c d."]


@pytest.fixture
def random_model() -> Iterator[ServedModel]:
    """An untrained model, sampled on one thread as the server does (tiny batches gain nothing from more)."""
    torch.manual_seed(0)
    vocab = Vocab(list("abcdefgh .!?\n"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ServedModel(CharRNNNet(Architecture(len(vocab), "lstm", 8, 16, 1)).eval(), vocab, "random")
    torch.set_num_threads(threads)


def complete(model: ServedModel, prime: str, n: int, rule: CompletionRule, deadline: float, seed: int) -> list[str]:
    return Batcher(model).run(Completions(model.vocab, prime, n, rule, deadline, seed))


def continue_text(model: ServedModel, prime: str, n: int, length: int, temperature: float, top_k: int | None,
                  top_p: float | None, seed: int, stop: tuple[str, ...], deadline: float) -> list[Continuation]:
    job = Continuations(model.vocab, prime, n, length, temperature, top_k, top_p, seed, stop, deadline)
    return Batcher(model).run(job)


def test_generation_always_ends_at_the_attempt_cap(random_model):
    never = CompletionRule(min_words=50, max_words=60, max_attempts=2)  # no completion can be accepted
    started = time.monotonic()
    assert complete(random_model, "abc", 10, never, deadline=30.0, seed=1) == []
    assert time.monotonic() - started < 10


def test_generation_always_ends_at_the_deadline(random_model):
    never = CompletionRule(min_words=50, max_words=60, max_attempts=10**9)
    started = time.monotonic()
    assert complete(random_model, "abc", 10, never, deadline=0.3, seed=1) == []
    assert time.monotonic() - started < 3
    out = continue_text(random_model, "abc", 2, 10**6, 1.0, None, None, 0, (), deadline=0.3)
    assert [c.finish_reason for c in out] == ["deadline", "deadline"] and len(out[0].text) > 0
    assert time.monotonic() - started < 6


def test_continuations_are_seeded_and_cut_before_stop_strings(random_model):
    a = continue_text(random_model, "ab", 3, 80, 1.0, None, None, 5, (), 10.0)
    assert a == continue_text(random_model, "ab", 3, 80, 1.0, None, None, 5, (), 10.0)
    assert a != continue_text(random_model, "ab", 3, 80, 1.0, None, None, 6, (), 10.0)
    assert all(c.finish_reason == "length" and len(c.text) == 80 for c in a)
    cut = continue_text(random_model, "ab", 3, 80, 1.0, None, None, 5, ("a", "b"), 10.0)
    for full, short in zip(a, cut, strict=True):
        stop_at = min(i for i in (full.text.find("a"), full.text.find("b")) if i >= 0)
        assert short.text == full.text[:stop_at] and short.finish_reason == "stop"


def test_legacy_completions_are_repeatable_by_seed(random_model):
    rule = CompletionRule(min_words=1, stop_after_words=0)
    assert complete(random_model, "ab", 4, rule, 10.0, 3) == complete(random_model, "ab", 4, rule, 10.0, 3)


@pytest.mark.parametrize("int8", [False, True])
def test_jobs_batched_together_get_what_they_get_alone(random_model, int8):
    rule = CompletionRule(min_words=1, stop_after_words=0)

    def jobs() -> list:
        return [Completions(random_model.vocab, "ab", 4, rule, 10.0, 3),
                Continuations(random_model.vocab, "abc", 3, 60, 0.8, None, 0.9, 7, ("!",), 10.0),
                Continuations(random_model.vocab, "", 2, 90, 1.0, 3, None, 8, (), 10.0)]

    alone = [Batcher(random_model, int8).run(job) for job in jobs()]
    batcher, together = Batcher(random_model, int8), jobs()
    for job in together[1:]:
        batcher.submit(job)
        batcher._admit(batcher.inbox.get())
    assert batcher.run(together[0]) == alone[0]
    while batcher.primes:
        batcher.advance()
    assert [job.future.result() for job in together[1:]] == alone[1:]


@pytest.mark.parametrize("bad", [dict(default_n=11), dict(workers=4, max_pending=2), dict(deadline=0),
                                 dict(max_request_bytes=10), dict(worker_grace=0), dict(read_timeout=-1),
                                 dict(max_pending=16, max_connections=8)])
def test_inconsistent_limits_are_refused_naming_the_flag(bad):
    with pytest.raises(ValueError, match="--"):
        Limits(**bad)


def test_a_failing_job_is_answered_with_its_error_and_the_batcher_goes_on(random_model):
    class Broken(Continuations):
        def feed(self, row: int, token: int) -> bool:
            raise RuntimeError("broken rule")

    batcher = Batcher(random_model).start()
    try:
        broken = Broken(random_model.vocab, "ab", 2, 50, 1.0, None, None, 1, (), 10.0)
        batcher.submit(broken)
        with pytest.raises(RuntimeError, match="broken rule"):
            broken.future.result(timeout=10)
        fine = Continuations(random_model.vocab, "ab", 2, 50, 1.0, None, None, 1, (), 10.0)
        batcher.submit(fine)
        assert [len(c.text) for c in fine.future.result(timeout=10)] == [50, 50]
    finally:
        batcher.stop()


def test_generation_workers_do_not_load_the_web_stack():
    code = ("import sys, charrnn.server.workers; "
            "web = sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules); print(web)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
