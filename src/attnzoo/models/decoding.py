"""Greedy and beam-search decoding shared by the encoder-decoder and the decoder-only models.

A model hands the search a *session*: ``step(tokens) -> log-probabilities`` of the next token for
every row of ``tokens`` ``(N, t)`` (all tokens so far; a cached session reads only the last one)
and ``reorder(index)``, which keeps rows ``index`` of its caches (beam search).
"""

from __future__ import annotations

from typing import Protocol

import torch

from attnzoo._checks import check_finite, check_positive_int

__all__ = ["DecodeSession", "beam_search", "greedy_search", "length_penalty", "search"]


class DecodeSession(Protocol):
    """What a model provides to the searches (see the module docstring)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, t) -> (N, V) log-probs
        ...

    def reorder(self, index: torch.Tensor) -> None: ...


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14).

    The Transformer paper decodes with ``alpha = 0.6`` and beam 4; ``alpha = 0`` ranks by raw
    log-probability.

    Example:
        >>> length_penalty(torch.tensor([1.0]), 0.6)
        tensor([1.])
    """
    return ((5.0 + length) / 6.0) ** alpha


def greedy_search(
    session: DecodeSession,
    start: torch.Tensor,
    *,
    max_len: int,
    eos_id: int | None,
    pad_id: int,
) -> torch.Tensor:
    """Pick the most likely token ``max_len`` times; rows that produced ``eos_id`` then get pads.

    Args:
        session: The model's decoding session.
        start: ``(N, t0)`` tokens to continue (a BOS column, or a prompt).
        max_len: Tokens to generate.
        eos_id: End-of-sequence id, or None to always generate ``max_len`` tokens.
        pad_id: Filler after ``eos_id``.

    Returns:
        ``(N, T)`` generated tokens, ``T <= max_len`` (stops early once every row ended).
    """
    check_positive_int("max_len", max_len)
    tokens = start
    done = torch.zeros(start.shape[0], dtype=torch.bool, device=start.device)
    for _ in range(max_len):
        logprobs = session.step(tokens)  # (N, V)
        nxt = logprobs.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (N, t + 1)
        if eos_id is not None:
            done = done | (nxt == eos_id)
            if bool(done.all()):
                break
    return tokens[:, start.shape[1] :]


def beam_search(
    session: DecodeSession,
    start: torch.Tensor,
    *,
    beam_size: int,
    max_len: int,
    eos_id: int | None,
    pad_id: int,
    alpha: float = 0.6,
) -> torch.Tensor:
    """Beam search; the session must hold ``B * beam_size`` rows (each source repeated).

    Every step extends each live hypothesis by every token and keeps the ``beam_size`` best by
    total log-probability; a hypothesis that produced ``eos_id`` is finished: it keeps its score
    and is extended by ``pad_id`` at no cost. The answer is the finished (or, at ``max_len``,
    live) hypothesis with the best score divided by :func:`length_penalty`. ``beam_size=1`` is
    greedy search.

    Args:
        session: Decoding session with ``B * beam_size`` rows (row ``b * K + k``: beam ``k``
            of source ``b``).
        start: ``(B, t0)`` start tokens, one row per source.
        beam_size: Hypotheses kept per source ``K``.
        max_len: Longest hypothesis.
        eos_id: End-of-sequence id (None: every hypothesis has ``max_len`` tokens).
        pad_id: Filler after ``eos_id``.
        alpha: Length-penalty exponent.

    Returns:
        ``(B, T)`` best hypotheses, ``T <= max_len``.
    """
    beams = check_positive_int("beam_size", beam_size)
    check_positive_int("max_len", max_len)
    alpha = check_finite("alpha", alpha)
    batch, device = start.shape[0], start.device
    tokens = start.repeat_interleave(beams, dim=0)  # (B * K, t0)
    scores = torch.zeros(batch, beams, device=device)
    scores[:, 1:] = float("-inf")  # identical start: only beam 0 is alive at first
    finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, beams, device=device)
    offsets = (torch.arange(batch, device=device) * beams)[:, None]  # (B, 1)
    for _ in range(max_len):
        logprobs = session.step(tokens).float()  # (B * K, V)
        vocab = logprobs.shape[-1]
        logprobs = logprobs.view(batch, beams, vocab)  # (B, K, V)
        frozen = torch.full_like(logprobs, float("-inf"))
        frozen[..., pad_id] = 0.0
        logprobs = torch.where(finished[..., None], frozen, logprobs)
        candidates = (scores[..., None] + logprobs).view(batch, beams * vocab)  # (B, K * V)
        scores, flat = candidates.topk(beams, dim=-1)  # (B, K)
        source, token = flat // vocab, flat % vocab
        rows = (offsets + source).view(-1)  # (B * K,)
        session.reorder(rows)
        finished = finished.gather(1, source)
        lengths = lengths.gather(1, source) + (~finished).float()
        tokens = torch.cat([tokens[rows], token.view(-1, 1)], dim=1)  # (B * K, t + 1)
        if eos_id is not None:
            finished = finished | (token == eos_id)
            if bool(finished.all()):
                break
    ranked = scores / length_penalty(lengths, alpha)
    if eos_id is not None:
        # finished hypotheses beat live ones cut off at max_len
        ranked = torch.where(finished | ~finished.any(-1, keepdim=True), ranked, float("-inf"))
    best = ranked.argmax(-1)  # (B,)
    chosen = tokens.view(batch, beams, -1)[torch.arange(batch, device=device), best]  # (B, T)
    return chosen[:, start.shape[1] :]


def search(
    session: DecodeSession,
    start: torch.Tensor,
    *,
    beam_size: int,
    max_len: int,
    eos_id: int | None,
    pad_id: int,
    alpha: float = 0.6,
) -> torch.Tensor:
    """:func:`greedy_search` when ``beam_size == 1``, else :func:`beam_search`."""
    if check_positive_int("beam_size", beam_size) == 1:
        return greedy_search(session, start, max_len=max_len, eos_id=eos_id, pad_id=pad_id)
    return beam_search(
        session,
        start,
        beam_size=beam_size,
        max_len=max_len,
        eos_id=eos_id,
        pad_id=pad_id,
        alpha=alpha,
    )
