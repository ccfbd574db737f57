"""LRA's Text task: byte-level binary sentiment classification of long documents.

LRA classifies IMDB movie reviews read as raw bytes (1K-4K of them). No labelled review corpus
ships inside a PyPI wheel, so the offline stand-in is *semi-synthetic reviews* composed from the
VADER sentiment lexicon (:mod:`attnzoo.arena.tasks._synthetic_text`), built so that the label
needs the whole document; :meth:`TextTask.load_files` reads the real IMDB data instead.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnzoo._checks import check_finite, check_positive_int, check_probability
from attnzoo.arena.tasks._bytes import BYTE_VOCAB, encode_bytes
from attnzoo.arena.tasks._synthetic_text import (
    NEGATORS,
    compose,
    lexicon_digest,
    pair_labels,
    resolve_lengths,
    sentiment_vocabulary,
)
from attnzoo.arena.tasks.base import Task
from attnzoo.papers import LRA_2021
from attnzoo.registry import ARENA

__all__ = ["TextExample", "TextTask", "sentiment_score"]

_FILES = {"train": "text_train.tsv", "val": "text_val.tsv", "test": "text_test.tsv"}
_MAX_TRIES = 1000
_STREAM = 1  # with the seed, keys this task's random stream (retrieval uses 2)


@dataclass(frozen=True)
class TextExample:
    """One document and its class (1 = positive, 0 = negative)."""

    text: str
    label: int


def sentiment_score(text: str, valence: dict[str, int]) -> int:
    """Total valence (tenths) of ``text``: the scoring rule of the generated documents.

    Tokens are the text split on single spaces with a trailing ``"."`` removed; each token found
    in ``valence`` adds its valence, negated when the token before it is ``"not"`` or ``"never"``.

    Example:
        >>> sentiment_score("the film was great. not dull at all.", {"great": 31, "dull": -17})
        48
    """
    tokens = [t.rstrip(".") for t in text.split(" ")]
    total = 0
    for i, token in enumerate(tokens):
        if token in valence:
            negated = i > 0 and tokens[i - 1] in NEGATORS
            total += -valence[token] if negated else valence[token]
    return total


@ARENA.register(
    "text",
    paper=LRA_2021,
    tags=("lra", "text", "bytes", "classification", "semi-synthetic"),
    complexity="L = max_length bytes per document (LRA: 1K-4K)",
)
class TextTask(Task):
    r"""LRA Text: is a long byte-level review positive or negative? (semi-synthetic stand-in).

    Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers", 2021,
    https://arxiv.org/abs/2011.04006, classify IMDB reviews as bytes with LRA's
    ``ByteTextEncoder``: ids are UTF-8 bytes + 1, 0 is padding, a vocabulary of 257, sequences
    cut at ``max_length`` bytes (1,000 in the released config; the paper sweeps 1K-4K).

    **Generated documents** (the default; see ``_synthetic_text`` for the lexicon filter and the
    composer). Example ``i`` of a seed's stream:

    1. The label comes in shuffled pairs (``0, 1`` or ``1, 0``), so the labels are balanced.
    2. The length ``T`` is uniform in ``[min_length, max_length]`` bytes; the document is exactly
       ``T`` bytes of lowercase ASCII words.
    3. ``k = max(1, T // mention_every)`` *mentions*: each is positive or negative with
       probability 1/2, a uniform word of that polarity from the ``lexicon_size`` clearest VADER
       words, and negated (written ``"not good"`` or ``"never good"``) with probability
       ``negation``. A mention scores the word's valence (integer tenths), sign-flipped when
       negated; the document's score ``S`` is the sum. The mentions are redrawn until
       ``S >= margin`` (label 1) or ``S <= -margin`` (label 0), so every label has a margin.
    4. The mentions are placed at uniformly random places between neutral filler words, so they
       are spread over the whole document: with many mentions of both signs and a small margin,
       no part of the document decides the label alone. :func:`sentiment_score` re-derives it.

    **Real files** (``data_dir``), a layout designed here: ``text_train.tsv`` and
    ``text_test.tsv`` (and optionally ``text_val.tsv``; without it the test file also serves as
    validation, as LRA uses IMDB's test split for both) in ``data_dir``, tab-separated with the
    header ``label<TAB>text``, one review per row, label 0 (negative) or 1 (positive), as Python's
    ``csv.writer(handle, delimiter="\t")`` writes them (fields holding tabs, newlines or quotes
    are quoted). Export IMDB into it with e.g.::

        import csv, tensorflow_datasets as tfds
        for split in ("train", "test"):
            with open(f"text_{split}.tsv", "w", newline="", encoding="utf-8") as handle:
                rows = csv.writer(handle, delimiter="\t")
                rows.writerow(["label", "text"])
                for ex in tfds.as_numpy(tfds.load("imdb_reviews", split=split)):
                    rows.writerow([int(ex["label"]), ex["text"].decode("utf-8")])

    (or walk ``aclImdb/{train,test}/{pos,neg}/*.txt`` with label 1 for ``pos``). ``n_train``,
    ``n_val`` and ``n_test`` keep the first rows of each file (25000 each for all of IMDB).

    Args:
        seed: Seed of the generator.
        n_train: Training documents.
        n_val: Validation documents.
        n_test: Test documents.
        max_length: Longest document in bytes, and the length ids are cut at (LRA: 1000-4000).
        min_length: Shortest generated document in bytes (default ``max_length // 2``).
        lexicon_size: Sentiment words used, half positive and half negative, clearest first;
            None uses all 5,295 that pass the filter.
        mention_every: Mean bytes per sentiment mention (``k = T // mention_every``).
        negation: Probability that a mention is negated.
        margin: Least ``|S|``, in valence units (1.0 = ten tenths).
        cache_dir: Cache folder of the generated splits (False: no cache).
        data_dir: Folder with the TSV files above; the splits are read from them.

    Shape:
        - ids of one document: ``(L,)`` with ``L <= max_length``, values in ``[1, 256]``
        - a split: inputs ``(N, L_max)`` right-padded with 0, labels ``(N,)`` in ``{0, 1}``

    Example:
        >>> task = TextTask(n_train=4, n_val=2, n_test=2, max_length=200, cache_dir=False)
        >>> train = task.splits()["train"]
        >>> train.inputs.shape[0], int(train.inputs.max()) < 257, sorted(train.labels.tolist())
        (4, True, [0, 0, 1, 1])

    """

    name = "text"
    num_classes = 2
    dual = False

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int = 4000,
        n_val: int = 500,
        n_test: int = 500,
        max_length: int = 1000,
        min_length: int | None = None,
        lexicon_size: int | None = 256,
        mention_every: int = 50,
        negation: float = 0.25,
        margin: float = 1.0,
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
        self.mention_every = check_positive_int("mention_every", mention_every, minimum=32)
        self.negation = check_probability("negation", negation)
        self.margin = check_finite("margin", margin, positive=True)
        # the lexicon is needed (and lexicon_size checked) only to generate
        self.vocabulary = None if self.data_dir is not None else sentiment_vocabulary(lexicon_size)
        self.lexicon_size = lexicon_size

    @property
    def vocab_size(self) -> int:
        """257: byte ids 1-256 and padding 0."""
        return BYTE_VOCAB

    @property
    def max_len(self) -> int:
        """``max_length``: documents are cut there."""
        return self.max_length

    def options(self) -> dict[str, Any]:
        """The generator's options (and the lexicon's digest)."""
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "lexicon_size": self.lexicon_size,
            "mention_every": self.mention_every,
            "negation": self.negation,
            "margin": self.margin,
            "lexicon": lexicon_digest() if self.data_dir is None else None,
        }

    def generate(self, n: int) -> list[TextExample]:
        """The first ``n`` documents of this seed's stream (see the class docstring)."""
        n = check_positive_int("n", n, minimum=0)
        rng = np.random.default_rng((self.seed, _STREAM))
        vocab = self.vocabulary or sentiment_vocabulary(self.lexicon_size)
        words = {1: np.array(vocab.positive), 0: np.array(vocab.negative)}
        values = {p: np.array([vocab.valence[w] for w in words[p]]) for p in (0, 1)}
        margin = round(self.margin * 10)
        labels = pair_labels(rng)
        seen: set[str] = set()
        out: list[TextExample] = []
        while len(out) < n:
            label = next(labels)
            length = int(rng.integers(self.min_length, self.max_length + 1))
            k = max(1, length // self.mention_every)
            for _ in range(_MAX_TRIES):
                positive = rng.random(k) < 0.5
                pick = {p: rng.integers(0, len(words[p]), size=k) for p in (0, 1)}
                negated = rng.random(k) < self.negation
                value = np.where(positive, values[1][pick[1]], values[0][pick[0]])
                score = int(np.where(negated, -value, value).sum())
                if (score >= margin) if label else (score <= -margin):
                    break
            else:
                raise ValueError(
                    f"no document of {k} mentions reached margin={self.margin} in {_MAX_TRIES} "
                    "tries: lower the margin or lower mention_every"
                )
            chosen = np.where(positive, words[1][pick[1]], words[0][pick[0]]).tolist()
            negator = rng.integers(0, len(NEGATORS), size=k).tolist()
            units = [
                f"{NEGATORS[j]} {w}" if neg else w
                for w, neg, j in zip(chosen, negated.tolist(), negator, strict=True)
            ]
            text = compose(rng, length, units)
            if text not in seen:
                seen.add(text)
                out.append(TextExample(text, label))
        return out

    def encode(self, example: TextExample) -> list[int]:
        """UTF-8 bytes + 1, cut at ``max_length``."""
        return encode_bytes(example.text, self.max_length)

    def load_files(self, data_dir: Path) -> dict[str, list[TextExample]]:
        """The TSV files of the class docstring, per split."""
        missing = [_FILES[s] for s in ("train", "test") if not (data_dir / _FILES[s]).is_file()]
        if missing:
            raise ValueError(
                f"data_dir {str(data_dir)!r} lacks {', '.join(missing)}: expected "
                "text_train.tsv, text_test.tsv (and optionally text_val.tsv) with header "
                "'label<TAB>text'"
            )
        test = read_text_tsv(data_dir / _FILES["test"])
        val_path = data_dir / _FILES["val"]
        val = read_text_tsv(val_path) if val_path.is_file() else test
        return {"train": read_text_tsv(data_dir / _FILES["train"]), "val": val, "test": test}


def read_text_tsv(path: Path) -> list[TextExample]:
    """Rows of one ``label<TAB>text`` file; ``ValueError`` names the file and line of a bad row."""
    out: list[TextExample] = []
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.reader(handle, delimiter="\t")
        try:
            header = next(reader, None)
            if header != ["label", "text"]:
                raise ValueError(
                    f"{path} line 1: expected the header 'label<TAB>text', got {header}"
                )
            for row in reader:
                where = f"{path} line {reader.line_num}"
                if not row:
                    continue  # a blank line
                if len(row) != 2:
                    raise ValueError(f"{where}: expected 2 fields (label, text), got {len(row)}")
                if row[0] not in ("0", "1"):
                    raise ValueError(f"{where}: label must be 0 or 1, got {row[0]!r}")
                if not row[1]:
                    raise ValueError(f"{where}: the text is empty")
                out.append(TextExample(row[1], int(row[0])))
        except csv.Error as error:
            raise ValueError(f"{path} line {reader.line_num}: {error}") from error
    return out
