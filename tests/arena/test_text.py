"""The ``text`` task: semi-synthetic byte-level reviews, labels, splits and the IMDB TSV loader.

The labels are re-derived here from the raw VADER lexicon file and the documented negation
rule, written independently of ``attnzoo.arena.tasks``.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo.arena.tasks.text import TextExample, TextTask

pytest.importorskip("vaderSentiment")

NEGATORS = {"not", "never"}


def raw_lexicon() -> dict[str, int]:
    """word -> valence in tenths, straight from vader_lexicon.txt (the last duplicate wins)."""
    folder = Path(importlib.util.find_spec("vaderSentiment").submodule_search_locations[0])
    lexicon = {}
    for line in (folder / "vader_lexicon.txt").read_text(encoding="utf-8").splitlines():
        word, mean = line.split("\t")[:2]
        lexicon[word] = int(Decimal(mean) * 10)
    return lexicon


LEXICON = raw_lexicon()


def rescore(text: str) -> tuple[int, int, int]:
    """(total valence, sentiment words, negated words) by the documented rule."""
    words = [w[:-1] if w.endswith(".") else w for w in text.split(" ")]
    total = mentions = negated = 0
    for i, word in enumerate(words):
        if word in LEXICON:
            flip = i > 0 and words[i - 1] in NEGATORS
            total += -LEXICON[word] if flip else LEXICON[word]
            mentions += 1
            negated += flip
    return total, mentions, negated


def small(**kwargs) -> TextTask:
    options = {"n_train": 8, "n_val": 4, "n_test": 4, "max_length": 400, "cache_dir": False}
    return TextTask(**{**options, **kwargs})


def test_every_document_follows_the_documented_rules():
    task = small(min_length=150, max_length=600)
    examples = task.generate(200)
    all_mentions = all_negated = 0
    for ex in examples:
        length = len(ex.text.encode("utf-8"))
        assert 150 <= length <= 600
        assert re.fullmatch(r"[a-z]+\.?( [a-z]+\.?)*", ex.text) and ex.text.endswith(".")
        words = [w.rstrip(".") for w in ex.text.split(" ")]
        for i, word in enumerate(words):
            if word in NEGATORS:  # a negator is always followed by a sentiment word
                assert words[i + 1] in LEXICON and "." not in ex.text.split(" ")[i]
            elif word in LEXICON:
                assert word in task.vocabulary.valence and "." not in ex.text.split(" ")[i]
        total, mentions, negated = rescore(ex.text)
        assert mentions == max(1, length // task.mention_every)
        assert ex.label == int(total > 0) and abs(total) >= 10  # margin 1.0 = ten tenths
        all_mentions += mentions
        all_negated += negated
    assert 0.18 < all_negated / all_mentions < 0.32  # negation=0.25


def test_labels_are_balanced_distinct_and_deterministic():
    task = small()
    examples = task.generate(100)
    assert sum(e.label for e in examples) == 50
    assert len({e.text for e in examples}) == 100
    assert task.generate(10) == examples[:10]  # a prefix of the same stream
    assert small().generate(100) == examples
    assert small(seed=1).generate(100) != examples
    for i in range(0, 100, 2):  # shuffled pairs
        assert examples[i].label + examples[i + 1].label == 1


def test_options_change_the_documents():
    base = small().generate(20)
    for option in ({"negation": 0.0}, {"margin": 3.0}, {"lexicon_size": 8}, {"mention_every": 80}):
        other = small(**option).generate(20)
        assert other != base
    for ex in small(negation=0.0).generate(20):
        assert not NEGATORS & set(ex.text.split(" "))
    for ex in small(margin=3.0).generate(20):
        assert abs(rescore(ex.text)[0]) >= 30
    words = set()
    for ex in small(lexicon_size=8).generate(40):
        words |= {w.rstrip(".") for w in ex.text.split(" ") if w.rstrip(".") in LEXICON}
    assert len(words) <= 8


def test_encode_is_bytes_plus_one_cut_at_max_length():
    task = small(max_length=100)
    assert task.vocab_size == 257 and task.max_len == 100
    assert task.encode(TextExample("Ab é", 1)) == [66, 99, 33, 196, 170]
    long = TextExample("x" * 150, 0)
    assert task.encode(long) == [ord("x") + 1] * 100


def test_splits_via_create_are_padded_cached_and_reused(tmp_path, monkeypatch):
    options = {"seed": 0, "n_train": 12, "n_val": 4, "n_test": 4, "max_length": 300}
    task = attnzoo.create("text", **options, cache_dir=tmp_path)
    splits = task.splits()
    examples = task.generate(20)
    train = splits["train"]
    assert train.inputs.dtype == torch.long and train.inputs.shape[0] == 12
    assert train.inputs.shape[1] <= 300 and int(train.inputs.max()) < 257
    assert train.labels.tolist() == [e.label for e in examples[:12]]
    for row, ex in zip(train.inputs, examples[:12], strict=True):
        n = len(ex.text)
        assert row[:n].tolist() == [b + 1 for b in ex.text.encode()] and not row[n:].any()
    assert [len(s) for s in splits.values()] == [12, 4, 4]
    cached = list(tmp_path.glob("text-*.pt"))
    assert len(cached) == 1 and cached[0] == task.cache_path()

    def boom(self, n):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(TextTask, "generate", boom)
    again = attnzoo.create("text", **options, cache_dir=tmp_path).splits()
    assert torch.equal(again["test"].inputs, splits["test"].inputs)
    other = attnzoo.create("text", **{**options, "max_length": 200}, cache_dir=tmp_path)
    assert other.cache_path() != task.cache_path()


def test_registered_with_the_lra_paper():
    entry = attnzoo.info("text")
    assert entry.family == "arena" and entry.paper.year == 2021 and entry.obj is TextTask
    assert "text" in attnzoo.list_names(family="arena")


def write_tsv(path: Path, rows, header=("label", "text")) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def test_load_files_reads_the_tsv_layout(tmp_path, monkeypatch):
    import attnzoo.arena.tasks.text as module

    def no_lexicon(*args):
        raise ImportError("real files need no lexicon")

    monkeypatch.setattr(module, "sentiment_vocabulary", no_lexicon)
    monkeypatch.setattr(module, "lexicon_digest", no_lexicon)
    tricky = 'a "quoted" review\twith a tab\nand a newline, é'
    write_tsv(tmp_path / "text_train.tsv", [(1, "great film"), (0, tricky), (1, "fine")])
    write_tsv(tmp_path / "text_test.tsv", [(0, "dull"), (1, "lovely")])
    task = TextTask(n_train=2, n_val=5, n_test=5, max_length=64, data_dir=tmp_path)
    examples = task.examples()
    assert examples["train"] == [TextExample("great film", 1), TextExample(tricky, 0)]
    assert examples["val"] == examples["test"] == [TextExample("dull", 0), TextExample("lovely", 1)]
    splits = task.splits()
    assert splits["train"].inputs[1, : len(tricky.encode())].tolist() == [
        b + 1 for b in tricky.encode()
    ]
    assert task.cache_path() is None  # real files are never cached
    write_tsv(tmp_path / "text_val.tsv", [(1, "a separate validation file")])
    assert task.load_files(tmp_path)["val"] == [TextExample("a separate validation file", 1)]


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([(1, "ok")], ("text", "label"), "line 1: expected the header"),
        ([(1, "ok"), (1, "a", "b")], ("label", "text"), "line 3: expected 2 fields"),
        ([(1, "ok"), (2, "bad label")], ("label", "text"), "line 3: label must be 0 or 1"),
        ([("pos", "bad label")], ("label", "text"), "line 2: label must be 0 or 1"),
        ([(0, "")], ("label", "text"), "line 2: the text is empty"),
    ],
)
def test_load_files_rejects_malformed_rows_naming_file_and_line(tmp_path, rows, header, match):
    write_tsv(tmp_path / "text_train.tsv", rows, header)
    write_tsv(tmp_path / "text_test.tsv", [(0, "fine")])
    task = TextTask(n_train=2, n_val=2, n_test=2, data_dir=tmp_path)
    with pytest.raises(ValueError, match=f"text_train.tsv {match}"):
        task.splits()


def test_load_files_needs_train_and_test(tmp_path):
    write_tsv(tmp_path / "text_train.tsv", [(0, "fine")])
    with pytest.raises(ValueError, match=r"lacks text_test\.tsv"):
        TextTask(n_train=1, n_val=1, n_test=1, data_dir=tmp_path).splits()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_length": 500, "max_length": 400}, ValueError, "min_length must be <= max_length"),
        ({"max_length": 32}, ValueError, "max_length must be an int >= 64"),
        ({"max_length": 400.0}, TypeError, "max_length must be an int"),
        ({"lexicon_size": 7}, ValueError, "lexicon_size must be an even int"),
        ({"lexicon_size": 10**6}, ValueError, "lexicon_size must be an even int from 2 to"),
        ({"negation": 1.0}, ValueError, "negation must be in"),
        ({"margin": 0.0}, ValueError, "margin must be > 0"),
        ({"mention_every": 10}, ValueError, "mention_every must be an int >= 32"),
        ({"n_train": 0}, ValueError, "n_train"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        small(**kwargs)


def test_an_unreachable_margin_says_what_to_change():
    with pytest.raises(ValueError, match="lower the margin"):
        small(margin=100.0, max_length=64).generate(2)


def bag_of_words_accuracy(train, test, keep: float, *, negation_marks: bool) -> float:
    """Logistic regression on word counts of the first ``keep`` of each document's bytes."""

    def words(text: str) -> list[str]:
        tokens = [w.rstrip(".") for w in text[: max(1, int(len(text) * keep))].split(" ")]
        if not negation_marks:
            return tokens
        return [
            ("NOT_" if i and tokens[i - 1] in NEGATORS else "") + t for i, t in enumerate(tokens)
        ]

    vocab: dict[str, int] = {}
    for ex in train:
        for w in words(ex.text):
            vocab.setdefault(w, len(vocab))

    def features(examples) -> torch.Tensor:
        x = torch.zeros(len(examples), len(vocab))
        for i, ex in enumerate(examples):
            for w, count in Counter(words(ex.text)).items():
                if w in vocab:
                    x[i, vocab[w]] = count
        return x

    x, y = features(train), torch.tensor([float(e.label) for e in train])
    weight = torch.zeros(len(vocab), requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y)
        (loss + 1e-4 * weight.square().sum()).backward()
        optimiser.step()
    predictions = (features(test) @ weight + bias > 0).long()
    return (predictions == torch.tensor([e.label for e in test])).float().mean().item()


def test_the_label_needs_the_whole_document():
    examples = small(min_length=500, max_length=1000, lexicon_size=64).generate(1400)
    train, test = examples[:1000], examples[1000:]
    whole = bag_of_words_accuracy(train, test, 1.0, negation_marks=True)
    first_tenth = bag_of_words_accuracy(train, test, 0.1, negation_marks=True)
    no_negation = bag_of_words_accuracy(train, test, 1.0, negation_marks=False)
    assert whole > 0.85  # learnable from words and their negation ...
    assert first_tenth < 0.65 and whole - first_tenth > 0.25  # ... but only from all of them
    assert whole - no_negation > 0.1  # and the negation rule matters
