"""Text generation: the sampling functions used by sample.py, the training callback and the server."""

from __future__ import annotations

import codecs
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from charrnn.net import CharRNNNet, State
from charrnn.stepper import Stepper
from charrnn.vocab import Vocab

# What torch.Generator.manual_seed takes: any 64-bit pattern, signed or not.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


def check_settings(temperature: float | Sequence[float] = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> None:
    """Refuses settings that mean nothing, with a message that starts with the setting's name.

    Raises:
        ValueError: a temperature that is not a finite number ≥0, ``top_k`` below 1, ``top_p`` outside (0, 1].
    """
    for t in [temperature] if isinstance(temperature, int | float) else temperature:
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"temperature {t}: give a finite number ≥0 (0 takes the most likely character)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k {top_k}: give a whole number ≥1 (above the vocabulary size it keeps every character)")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p}: give a probability in (0, 1] (a tiny one takes the most likely character)")


def pick(
    logits: Tensor,
    temperature: float | Tensor = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    uniform: Tensor | None = None,
) -> Tensor:
    """Next token per row of ``logits`` (B, V) -> (B,).

    A temperature of 0 (per row, when a (B,) tensor is given) takes the most likely token; ``top_k``
    keeps the k most likely tokens, ``top_p`` the smallest set whose probability reaches p. The draw
    inverts each row's distribution at a uniform number in [0, 1): ``uniform`` (B,) when given (so rows
    of one batch can come from different generators), otherwise drawn from ``generator``. Settings are
    checked by :func:`check_settings` (a tensor of temperatures by its caller); a row left with nothing to
    sample from (NaN logits or temperature) takes its most likely token.
    """
    if not isinstance(temperature, Tensor):
        check_settings(temperature, top_k, top_p)
    t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device).reshape(-1, 1)  # (B|1, 1)
    scores = logits.float() / t.float().clamp_min(1e-6)
    if top_k is not None and 0 < top_k < scores.size(-1):
        kth = scores.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        drop[:, 0] = False  # the most likely token always stays, also when top_p rounds to 0 in float32
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
    if uniform is None:
        uniform = torch.rand(scores.size(0), generator=generator, device=scores.device)
    cdf = scores.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    target = uniform.to(cdf)[:, None] * cdf[:, -1:]  # (B, 1), below each row's total
    sampled = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_max(scores.size(-1) - 1)
    lost = ~(cdf[:, -1].isfinite() & (cdf[:, -1] > 0))  # (B,): NaN everywhere, the last token's index otherwise
    return torch.where((t.squeeze(1) <= 0) | lost, logits.argmax(dim=-1), sampled)


@torch.no_grad()
def generate(
    net: CharRNNNet,
    prime: Tensor,
    steps: int,
    temperature: float | Tensor = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yields ``steps`` new tokens (B,) one step at a time after the primes (B, P) of 0-based indices.

    With an empty prime (P = 0) the first token is drawn uniformly, as torch-rnn does.
    """
    logits, state = prime_state(net, prime)
    step = Stepper(net)
    for i in range(steps):
        token = pick(logits, temperature, top_k, top_p, generator)
        yield token
        if i + 1 < steps:
            logits, state = step(token, state)


def prime_state(net: CharRNNNet, prime: Tensor) -> tuple[Tensor, State | None]:
    """The logits (B, V) for the first new token after the primes (B, P), and the state there."""
    if prime.size(1):
        logits, state = net(prime)
        return logits[:, -1], state
    return torch.zeros(prime.size(0), net.head.out_features, device=prime.device), None


class TokenText:
    """One stream's tokens -> its text: a character per token or, with a byte-level vocabulary, the
    characters each byte completes (empty while mid-character; bytes that are not UTF-8 become U+FFFD)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace") if vocab.byte_level else None

    def __call__(self, token: int) -> str:
        if self.decoder is None:
            return self.vocab.tokens[token]
        return self.decoder.decode(self.vocab.decode_bytes([token]))

    def flush(self) -> str:
        """What an unfinished character at the end becomes."""
        return self.decoder.decode(b"", final=True) if self.decoder is not None else ""


def encode_prime(vocab: Vocab, start_text: str) -> list[int]:
    """The prime as indices; characters outside the vocabulary are replaced by their other-case form
    when the vocabulary has it, and left out otherwise, with a warning naming them."""
    kept = vocab.swap_case_or_leave_out(start_text)[0]
    changed = vocab.unknown(start_text)
    if changed:
        shown = ", ".join(f"{u!r}×{n}" for u, n in changed.most_common(10))
        warnings.warn(f"start text has characters outside the model's vocabulary: {shown}; "
                      "replaced by their other case where known, otherwise left out", stacklevel=3)
    return vocab.encode(kept)


def stream_text(
    net: CharRNNNet,
    vocab: Vocab,
    start_text: str = "",
    length: int = 200,
    temperature: float | Sequence[float] = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[list[str]]:
    """Streams ``num_samples`` continuations of ``start_text``, as one batch: yields the new text
    of each sample after every step (an empty string while a byte-level model is mid-character).

    Args:
        temperature: one for all samples or one per sample; 0 is argmax.
        seed: makes the text repeatable; None draws from torch's global generator.
        generator: draws from this generator instead of ``seed`` (batches that continue one stream).
    """
    check_settings(temperature, top_k, top_p)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    if generator is None and seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    prime = torch.tensor([encode_prime(vocab, start_text)] * num_samples, dtype=torch.long, device=device)
    prime = prime.reshape(num_samples, -1)
    temps = torch.tensor(temperature, dtype=torch.float, device=device) if not isinstance(temperature, float | int) \
        else float(temperature)
    texts = [TokenText(vocab) for _ in range(num_samples)]
    try:
        for token in generate(net, prime, length, temps, top_k, top_p, generator):
            yield [text(i) for text, i in zip(texts, token.tolist(), strict=True)]
        tails = [text.flush() for text in texts]
        if any(tails):
            yield tails
    finally:
        net.train(was_training)


def generate_text(net: CharRNNNet, vocab: Vocab, start_text: str = "", length: int = 200, **kwargs) -> list[str]:
    """The whole continuations of :func:`stream_text` (without the start text)."""
    pieces: list[list[str]] = list(stream_text(net, vocab, start_text, length, **kwargs))
    return ["".join(column) for column in zip(*pieces)] if pieces else [""] * kwargs.get("num_samples", 1)
