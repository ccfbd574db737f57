"""LRA's Retrieval task: do two long byte-level documents match? (two towers, ``dual = True``).

LRA asks whether two papers of the ACL Anthology Network cite each other, reading both as
bytes (4,000 per document). The offline stand-in is *semi-synthetic document pairs* written
with the same lexicon and composer as the ``text`` task
(:mod:`attnzoo.arena.tasks._synthetic_text`): each document carries a hidden set of key words
spread over its whole length, and a pair matches when the two sets are equal.
:meth:`RetrievalTask.load_files` reads LRA's released AAN files instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnzoo._checks import check_positive_int
from attnzoo.arena.tasks._bytes import BYTE_VOCAB, encode_bytes
from attnzoo.arena.tasks._synthetic_text import (
    FILLERS,
    compose,
    lexicon_digest,
    pair_labels,
    resolve_lengths,
    sentiment_vocabulary,
)
from attnzoo.arena.tasks.base import Task
from attnzoo.papers import LRA_2021
from attnzoo.registry import ARENA

__all__ = ["RetrievalExample", "RetrievalTask", "document_keys", "read_aan_tsv"]

_FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
_AAN_COLUMNS = ["label", "id1", "id2", "text1", "text2"]
_FILLER_SET = frozenset(FILLERS)
_STREAM = 2  # with the seed, keys this task's random stream (text uses 1)


@dataclass(frozen=True)
class RetrievalExample:
    """Two documents and whether they match (1) or not (0)."""

    text1: str
    text2: str
    label: int


def document_keys(text: str) -> list[str]:
    """The key words of a generated document, in order: every token that is not a filler.

    Example:
        >>> document_keys("the film was brilliant. a story of slavery in the city.")
        ['brilliant', 'slavery']
    """
    return [t for t in (w.rstrip(".") for w in text.split(" ")) if t not in _FILLER_SET]


@ARENA.register(
    "retrieval",
    paper=LRA_2021,
    tags=("lra", "text", "bytes", "matching", "dual", "semi-synthetic"),
    complexity="two documents of L = max_length bytes each (LRA: 4K)",
)
class RetrievalTask(Task):
    """LRA Retrieval: do two long byte-level documents match? (semi-synthetic stand-in).

    Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers", 2021,
    https://arxiv.org/abs/2011.04006, match pairs of ACL Anthology Network papers (does one cite
    the other?) with a two-tower model: each document is encoded alone (UTF-8 bytes + 1, 0 is
    padding, vocabulary 257, cut at 4,000 bytes) and the head sees ``[X1, X2, X1*X2, X1-X2]``.

    **Generated pairs** (the default). Example ``i`` of a seed's stream:

    1. The label comes in shuffled pairs (``0, 1`` or ``1, 0``), so the labels are balanced.
    2. Document 1 gets a *profile*: ``num_keys`` distinct words drawn uniformly from the
       ``lexicon_size`` clearest VADER words (here just a pool of real words; their sentiment
       plays no part). Document 2 gets the same profile when the pair matches (label 1);
       otherwise ``num_swaps`` of its words, chosen uniformly, are replaced by pool words outside
       document 1's profile (label 0: hard negatives that differ in few words).
    3. Each document is composed independently (``_synthetic_text.compose``): its own length,
       uniform in ``[min_length, max_length]`` bytes, its own neutral filler words, and its key
       words, each exactly once, in a random order, at uniformly random places.

    So a pair matches exactly when ``set(document_keys(text1)) == set(document_keys(text2))``,
    and the word that differs can sit anywhere in either document: the model must read both
    whole documents.

    **Real files** (``data_dir``): LRA's released ``new_aan_pairs.train.tsv``,
    ``new_aan_pairs.eval.tsv`` (validation) and ``new_aan_pairs.test.tsv``, tab-separated
    without a header and without quoting (as LRA's ``matching/input_pipeline.py`` reads them),
    columns ``label, id1, id2, text1, text2``; the label is a number, 0 or 1 (``"1.0"``). A
    first line equal to those column names is skipped. ``n_train``, ``n_val`` and ``n_test``
    keep the first rows of each file.

    Args:
        seed: Seed of the generator.
        n_train: Training pairs.
        n_val: Validation pairs.
        n_test: Test pairs.
        max_length: Longest document in bytes, and the length ids are cut at (LRA: 4000).
        min_length: Shortest generated document in bytes (default ``max_length // 2``).
        num_keys: Key words per document.
        num_swaps: Key words that differ between the documents of a non-matching pair.
        lexicon_size: Size of the pool of key words (None: all 5,295 filtered VADER words).
        cache_dir: Cache folder of the generated splits (False: no cache).
        data_dir: Folder with LRA's AAN files; the splits are read from them.

    Shape:
        - ids of one example: two lists ``(L1,)`` and ``(L2,)``, ``L1, L2 <= max_length``
        - a split: inputs and inputs2 ``(N, L_max)`` right-padded with 0, labels ``(N,)``

    Example:
        >>> task = RetrievalTask(n_train=4, n_val=2, n_test=2, max_length=300, cache_dir=False)
        >>> train = task.splits()["train"]
        >>> train.inputs.shape[0], train.inputs2.shape[0], sorted(train.labels.tolist())
        (4, 4, [0, 0, 1, 1])
    """

    name = "retrieval"
    num_classes = 2
    dual = True

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int = 4000,
        n_val: int = 500,
        n_test: int = 500,
        max_length: int = 4000,
        min_length: int | None = None,
        num_keys: int = 8,
        num_swaps: int = 1,
        lexicon_size: int | None = 256,
        cache_dir: str | os.PathLike | bool | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(
            seed=seed,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            cache_dir=cache_dir,
            data_dir=data_dir,
        )
        self.min_length, self.max_length = resolve_lengths(min_length, max_length, floor=64)
        self.num_keys = check_positive_int("num_keys", num_keys)
        self.num_swaps = check_positive_int("num_swaps", num_swaps)
        if num_swaps > num_keys:
            raise ValueError(f"num_swaps must be <= num_keys={num_keys}, got {num_swaps}")
        self.lexicon_size = lexicon_size
        # the lexicon is needed (and checked) only to generate
        self.pool = self._key_pool() if self.data_dir is None else ()

    def _key_pool(self) -> tuple[str, ...]:
        vocab = sentiment_vocabulary(self.lexicon_size)
        pool = vocab.positive + vocab.negative
        need = self.num_keys + self.num_swaps
        if len(pool) < need:
            raise ValueError(
                f"lexicon_size must give at least num_keys + num_swaps = {need} key words, "
                f"got {len(pool)}"
            )
        longest = sum(sorted(len(w) + 1 for w in pool)[-self.num_keys :]) + 3
        if self.min_length < longest:
            raise ValueError(
                f"min_length must be >= {longest} bytes to hold {self.num_keys} key words, got "
                f"{self.min_length}: raise min_length or lower num_keys"
            )
        return pool

    @property
    def vocab_size(self) -> int:
        """257: byte ids 1-256 and padding 0."""
        return BYTE_VOCAB

    @property
    def max_len(self) -> int:
        """``max_length`` per document."""
        return self.max_length

    def options(self) -> dict[str, Any]:
        """The generator's options (and the lexicon's digest)."""
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "num_keys": self.num_keys,
            "num_swaps": self.num_swaps,
            "lexicon_size": self.lexicon_size,
            "lexicon": lexicon_digest() if self.data_dir is None else None,
        }

    def generate(self, n: int) -> list[RetrievalExample]:
        """The first ``n`` pairs of this seed's stream (see the class docstring)."""
        n = check_positive_int("n", n, minimum=0)
        pool = self.pool or self._key_pool()
        rng = np.random.default_rng((self.seed, _STREAM))
        labels = pair_labels(rng)
        seen: set[tuple[str, str]] = set()
        out: list[RetrievalExample] = []
        while len(out) < n:
            label = next(labels)
            first = rng.choice(len(pool), size=self.num_keys, replace=False).tolist()
            second = list(first)
            if not label:
                taken = set(first)
                for slot in rng.choice(self.num_keys, size=self.num_swaps, replace=False).tolist():
                    word = int(rng.integers(len(pool)))
                    while word in taken:
                        word = int(rng.integers(len(pool)))
                    taken.add(word)
                    second[slot] = word
            texts = []
            for keys in (first, second):
                length = int(rng.integers(self.min_length, self.max_length + 1))
                order = rng.permutation(len(keys)).tolist()
                texts.append(compose(rng, length, [pool[keys[j]] for j in order]))
            pair = (texts[0], texts[1])
            if pair not in seen:
                seen.add(pair)
                out.append(RetrievalExample(pair[0], pair[1], label))
        return out

    def encode(self, example: RetrievalExample) -> tuple[list[int], list[int]]:
        """The two documents' UTF-8 bytes + 1, each cut at ``max_length``."""
        return (
            encode_bytes(example.text1, self.max_length),
            encode_bytes(example.text2, self.max_length),
        )

    def load_files(self, data_dir: Path) -> dict[str, list[RetrievalExample]]:
        """LRA's AAN files (class docstring), per split."""
        missing = [name for name in _FILES.values() if not (data_dir / name).is_file()]
        if missing:
            raise ValueError(
                f"data_dir {str(data_dir)!r} lacks {', '.join(missing)}: expected LRA's "
                f"released AAN files {', '.join(_FILES.values())}"
            )
        return {split: read_aan_tsv(data_dir / name) for split, name in _FILES.items()}


def read_aan_tsv(path: Path) -> list[RetrievalExample]:
    """Rows ``label, id1, id2, text1, text2`` of one AAN file.

    A malformed row raises ``ValueError`` naming the file and the line.
    """
    out: list[RetrievalExample] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if number == 1 and fields == _AAN_COLUMNS:
                continue
            where = f"{path} line {number}"
            if len(fields) != len(_AAN_COLUMNS):
                raise ValueError(
                    f"{where}: expected 5 tab-separated fields (label, id1, id2, text1, text2), "
                    f"got {len(fields)}"
                )
            try:
                value = float(fields[0])
            except ValueError:
                value = float("nan")
            if value not in (0.0, 1.0):
                raise ValueError(f"{where}: label must be 0 or 1, got {fields[0]!r}")
            out.append(RetrievalExample(fields[3], fields[4], int(value)))
    return out
