"""The Transformer learns to write numbers in English words: "1984" -> "one thousand nine ...".

The encoder-decoder of Vaswani et al. (2017) trained from scratch on data this script makes up:
numbers below one million written in digits (source) and in words (target). Numbers of the
held-out test set never appear in training; decoding is greedy with the KV cache. At the end the
script prints decoded examples, the exact-match accuracy, and draws the cross-attention map of
one translation (which digits each word looks at).

    python examples/translate_numbers.py                 # about a minute on 2 CPU cores
    python examples/translate_numbers.py --attention local --attention-option window=4
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import attnzoo

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
ONES += "fifteen sixteen seventeen eighteen nineteen"
ONES = ONES.split()
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = 0, 1, 2
SRC_VOCAB = SPECIALS + list("0123456789")
TGT_VOCAB = SPECIALS + ONES + TENS + ["hundred", "thousand"]
LIMIT = 1_000_000


def below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return words
    if n < 20:
        return [*words, ONES[n]]
    words.append(TENS[n // 10 - 2])
    return words + ([ONES[n % 10]] if n % 10 else [])


def number_to_words(n: int) -> list[str]:
    """English words of ``0 <= n < 1,000,000``: 1984 -> one thousand nine hundred eighty four."""
    if not 0 <= n < LIMIT:
        raise ValueError(f"n must be in [0, {LIMIT}), got {n}")
    if n < 1000:
        return below_thousand(n)
    high, low = divmod(n, 1000)
    return below_thousand(high) + ["thousand"] + (below_thousand(low) if low else [])


def sample_number(rng: random.Random) -> int:
    """Digit count uniform in 1..6, then a uniform number with that many digits."""
    digits = rng.randint(1, 6)
    return rng.randrange(0 if digits == 1 else 10 ** (digits - 1), 10**digits)


def encode(numbers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded source ids ``(B, S)`` and target ids ``(B, T)`` (``<bos> words <eos>``)."""
    src = [[SRC_VOCAB.index(d) for d in str(n)] for n in numbers]
    tgt = [[BOS] + [TGT_VOCAB.index(w) for w in number_to_words(n)] + [EOS] for n in numbers]

    def pad(rows):
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])

    return pad(src), pad(tgt)


def decode_words(ids: torch.Tensor) -> list[str]:
    words = []
    for i in ids.tolist():
        if i == EOS:
            break
        words.append(TGT_VOCAB[i])
    return words


def exact_match(model, numbers: list[int], batch: int = 500) -> float:
    hits = 0
    for start in range(0, len(numbers), batch):
        chunk = numbers[start : start + batch]
        src, _ = encode(chunk)
        out = model.generate(src, max_len=12)
        hits += sum(
            decode_words(row) == number_to_words(n) for row, n in zip(out, chunk, strict=True)
        )
    return hits / len(numbers)


def draw_cross_attention(model, number: int, path: Path) -> None:
    src, _ = encode([number])
    out = model.generate(src, max_len=12)
    words = decode_words(out[0])
    tgt = torch.tensor([[BOS] + [TGT_VOCAB.index(w) for w in words]])
    model.eval()
    with torch.no_grad(), attnzoo.viz.record_attention(model) as maps:
        model(src, tgt)
    last = [name for name in maps if name.endswith("cross_attn")][-1]
    weights = maps[last][0].mean(0)  # (T, S): mean over heads
    attnzoo.viz.plot_attention(
        weights,
        x_labels=list(str(number)),
        y_labels=[*words, "<eos>"],  # decoder position t is writing word t
        title=f"{number}: the digits each word looks at\n({last}, mean of heads)",
        out=path,
    )


def parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--attention", default="mha", help="any causal mechanism of attnzoo")
    parser.add_argument("--attention-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=".", help="where the attention picture goes")
    parser.add_argument("--smoke", action="store_true", help="a few steps (for the tests)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.batch, args.dim, args.layers, args.test_size = 30, 32, 32, 1, 50
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    # held-out numbers have 3 to 6 digits: the numbers below 100 are the vocabulary itself
    test_numbers = sorted({rng.randrange(100, LIMIT) for _ in range(args.test_size)})
    held_out = set(test_numbers)

    model = attnzoo.create_model(
        "transformer",
        src_vocab=len(SRC_VOCAB),
        tgt_vocab=len(TGT_VOCAB),
        dim=args.dim,
        num_heads=4,
        num_encoder_layers=args.layers,
        num_decoder_layers=args.layers,
        ffn_dim=2 * args.dim,
        dropout=0.0,  # fresh data every step: nothing to regularise
        max_len=16,
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
        attention=args.attention,
        attention_kwargs=dict(parse_option(o) for o in args.attention_option),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.05, (args.steps - s) / (args.steps - warmup))),
    )
    params = sum(p.numel() for p in model.parameters())
    print(
        f"transformer with {args.attention}: {params:,} parameters; "
        f"{args.steps} steps of {args.batch} numbers"
    )
    start = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        numbers = []
        while len(numbers) < args.batch:
            n = sample_number(rng)
            if n not in held_out:
                numbers.append(n)
        src, tgt = encode(numbers)
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),  # (B * T, V)
            tgt[:, 1:].reshape(-1),  # (B * T,)
            ignore_index=PAD,
            label_smoothing=0.1,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % max(1, args.steps // 10) == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:6.1f} s")
    train_seconds = time.perf_counter() - start

    model.eval()
    accuracy = exact_match(model, test_numbers)
    for number in [1984, 7, 40_015, 999_999, *test_numbers[:4]]:
        src, _ = encode([number])
        words = " ".join(decode_words(model.generate(src, max_len=12)[0]))
        mark = "ok" if words == " ".join(number_to_words(number)) else "WRONG"
        print(f"{number:>7} -> {words}  [{mark}]")
    print(
        f"exact match on {len(test_numbers)} held-out numbers: {accuracy:.1%} "
        f"(trained {train_seconds:.0f} s)"
    )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    draw_cross_attention(model, 1984, out_dir / "translate_numbers_cross_attention.png")
    print(f"cross-attention map: {out_dir / 'translate_numbers_cross_attention.png'}")
    return {"accuracy": accuracy, "train_seconds": train_seconds}


if __name__ == "__main__":
    main()
