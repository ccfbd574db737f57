"""The ``retrieval`` task: semi-synthetic document pairs, their labels, splits and the AAN loader.

The labels are re-derived here from the raw VADER lexicon file (the key words are lexicon
words, the fillers are not), independently of ``attnzoo.arena.tasks``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo.arena.tasks.retrieval import RetrievalExample, RetrievalTask

pytest.importorskip("vaderSentiment")


def lexicon_words() -> set[str]:
    folder = Path(importlib.util.find_spec("vaderSentiment").submodule_search_locations[0])
    lines = (folder / "vader_lexicon.txt").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines}


WORDS = lexicon_words()


def keys(text: str) -> list[str]:
    return [w.rstrip(".") for w in text.split(" ") if w.rstrip(".") in WORDS]


def small(**kwargs) -> RetrievalTask:
    options = {"n_train": 8, "n_val": 4, "n_test": 4, "max_length": 400, "cache_dir": False}
    return RetrievalTask(**{**options, **kwargs})


def test_every_pair_follows_the_documented_rules():
    task = small(min_length=200, max_length=500, num_keys=6, num_swaps=2)
    for ex in task.generate(200):
        first, second = keys(ex.text1), keys(ex.text2)
        for text, found in ((ex.text1, first), (ex.text2, second)):
            assert 200 <= len(text.encode()) <= 500 and text.endswith(".")
            assert re.fullmatch(r"[a-z]+\.?( [a-z]+\.?)*", text)
            assert len(found) == len(set(found)) == 6  # each key exactly once
            assert set(found) <= set(task.pool)
        assert ex.label == int(set(first) == set(second))
        if not ex.label:
            assert len(set(first) - set(second)) == len(set(second) - set(first)) == 2


def test_the_differing_key_can_be_anywhere():
    task = small(min_length=1000, max_length=1000, num_keys=8)
    where = []
    for ex in task.generate(400):
        if not ex.label:
            (extra,) = set(keys(ex.text2)) - set(keys(ex.text1))
            where.append(re.search(rf"\b{extra}\b", ex.text2).start() / len(ex.text2))
    where = torch.tensor(where)
    assert 0.4 < where.mean() < 0.6
    assert (where < 0.1).sum() > 5 and (where > 0.9).sum() > 5  # the first 10% rarely shows it


def test_labels_are_balanced_distinct_and_deterministic():
    task = small()
    examples = task.generate(60)
    assert sum(e.label for e in examples) == 30
    assert len({(e.text1, e.text2) for e in examples}) == 60
    assert task.generate(7) == examples[:7]
    assert small().generate(60) == examples
    assert small(seed=3).generate(60) != examples


def test_encode_returns_both_documents():
    task = small(max_length=300)
    assert task.dual and task.vocab_size == 257 and task.max_len == 300
    first, second = task.encode(RetrievalExample("ab", "é" * 200, 1))
    assert first == [98, 99] and second == [196, 170] * 150


def test_splits_via_create_have_two_towers_and_are_cached(tmp_path, monkeypatch):
    options = {"seed": 0, "n_train": 10, "n_val": 4, "n_test": 4, "max_length": 300}
    task = attnzoo.create("retrieval", **options, cache_dir=tmp_path)
    splits = task.splits()
    examples = task.generate(18)
    train = splits["train"]
    assert train.inputs.shape[0] == train.inputs2.shape[0] == 10
    assert max(train.inputs.shape[1], train.inputs2.shape[1]) <= 300
    assert int(torch.cat([train.inputs, train.inputs2], 1).max()) < 257
    for i, ex in enumerate(examples[:10]):
        n = len(ex.text2)
        assert train.inputs2[i, :n].tolist() == [b + 1 for b in ex.text2.encode()]
        assert not train.inputs2[i, n:].any()
    assert train.labels.tolist() == [e.label for e in examples[:10]]
    assert len(list(tmp_path.glob("retrieval-*.pt"))) == 1

    def boom(self, n):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(RetrievalTask, "generate", boom)
    again = attnzoo.create("retrieval", **options, cache_dir=tmp_path).splits()
    assert torch.equal(again["val"].inputs2, splits["val"].inputs2)


def test_registered_with_the_lra_paper():
    entry = attnzoo.info("retrieval")
    assert entry.family == "arena" and entry.paper.year == 2021 and entry.obj.dual


AAN = ("new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv")


def write_aan(folder: Path, rows_per_file) -> None:
    for name, rows in zip(AAN, rows_per_file, strict=True):
        (folder / name).write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def test_load_files_reads_lras_aan_files(tmp_path, monkeypatch):
    import attnzoo.arena.tasks.retrieval as module

    def no_lexicon(*args):
        raise ImportError("real files need no lexicon")

    monkeypatch.setattr(module, "sentiment_vocabulary", no_lexicon)
    monkeypatch.setattr(module, "lexicon_digest", no_lexicon)
    train = [
        ("1.0", "P01-1", "P02-2", "first paper", "second paper"),
        ("0.0", "P03-3", "P04-4", 'with "quotes"', "and é"),
    ]
    write_aan(tmp_path, [train, [("0", "a", "b", "x", "y")], [("1", "c", "d", "z", "w")]])
    task = RetrievalTask(n_train=5, n_val=5, n_test=5, max_length=64, data_dir=tmp_path)
    examples = task.examples()
    assert examples["train"] == [
        RetrievalExample("first paper", "second paper", 1),
        RetrievalExample('with "quotes"', "and é", 0),
    ]
    assert examples["val"] == [RetrievalExample("x", "y", 0)]
    assert examples["test"] == [RetrievalExample("z", "w", 1)]
    split = task.splits()["train"]
    assert split.inputs2[1, :6].tolist() == [b + 1 for b in "and é".encode()]
    header = [("label", "id1", "id2", "text1", "text2"), *train]
    write_aan(tmp_path, [header, [], []])
    assert task.load_files(tmp_path)["train"] == examples["train"]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (("1.0", "a", "b", "only four"), "line 2: expected 5 tab-separated fields"),
        (("1.0", "a", "b", "c", "d", "e"), "line 2: expected 5 tab-separated fields"),
        (("yes", "a", "b", "c", "d"), "line 2: label must be 0 or 1"),
        (("2.0", "a", "b", "c", "d"), "line 2: label must be 0 or 1"),
    ],
)
def test_load_files_rejects_malformed_rows_naming_file_and_line(tmp_path, row, match):
    good = ("0.0", "a", "b", "c", "d")
    write_aan(tmp_path, [[good], [good, row], [good]])
    task = RetrievalTask(n_train=2, n_val=2, n_test=2, data_dir=tmp_path)
    with pytest.raises(ValueError, match=f"new_aan_pairs.eval.tsv {match}"):
        task.splits()


def test_load_files_names_missing_files(tmp_path):
    (tmp_path / AAN[0]).write_text("0\ta\tb\tc\td\n")
    with pytest.raises(
        ValueError, match=r"lacks new_aan_pairs\.eval\.tsv, new_aan_pairs\.test\.tsv"
    ):
        RetrievalTask(n_train=1, n_val=1, n_test=1, data_dir=tmp_path).splits()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_swaps": 9}, ValueError, "num_swaps must be <= num_keys=8"),
        ({"num_keys": 0}, ValueError, "num_keys must be an int >= 1"),
        ({"num_keys": "8"}, TypeError, "num_keys must be an int"),
        ({"lexicon_size": 4, "num_keys": 4}, ValueError, "at least num_keys \\+ num_swaps = 5"),
        ({"num_keys": 40, "max_length": 200}, ValueError, "min_length must be >= "),
        ({"min_length": 300, "max_length": 200}, ValueError, "min_length must be <= max_length"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        small(**kwargs)
