"""ListOps: nested MIN / MAX / MED / SM expressions over digits, LRA's 10-class task.

A re-implementation of the generator of the Long Range Arena (``lra_benchmarks/data/
listops.py``), seeded with a numpy ``Generator``, and a reader for LRA's released
``basic_{train,val,test}.tsv`` files. See :class:`ListOps`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from attnzoo._checks import check_positive_int
from attnzoo.arena.tasks.base import Task
from attnzoo.papers import LRA_2021
from attnzoo.registry import ARENA

__all__ = ["OPERATORS", "VOCAB", "ListOps", "ListOpsExample"]

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
# id -> token: 0 padding, 1-10 the digits 0-9, 11-14 the operators, 15 the closing bracket.
VOCAB = ["<pad>", *(str(d) for d in range(10)), *OPERATORS, END]
TOKEN_ID = {token: i for i, token in enumerate(VOCAB) if i > 0}
_OP_ID = TOKEN_ID[OPERATORS[0]]  # 11
_END_ID = TOKEN_ID[END]  # 15
VALUE_P = 0.25  # probability that a node shallower than max_depth is an operator
FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}


@dataclass(frozen=True)
class ListOpsExample:
    """One expression: LRA's token sequence (space separated) and its value.

    Args:
        text: Tokens after LRA's tokenisation, e.g. ``"[MAX 2 [MIN 3 4 ] ]"``.
        label: The value of the expression, 0-9.
    """

    text: str
    label: int


def _median(values: list[int]) -> int:
    """``int(numpy.median(values))``: an even count takes the truncated mean of the middle two."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) // 2


_APPLY: tuple[Callable[[list[int]], int], ...] = (
    min,
    max,
    _median,
    lambda values: sum(values) % 10,
)


def _uniform_stream(rng: np.random.Generator, chunk: int = 1 << 16) -> Iterator[float]:
    """Endless U[0, 1) floats drawn from ``rng`` in chunks (one Python float per call)."""
    return itertools.chain.from_iterable(rng.random(chunk).tolist() for _ in itertools.count())


def sample_tree(
    draw: Callable[[], float], *, max_depth: int, max_args: int, max_length: int
) -> tuple[list[int], int] | None:
    """One tree of LRA's recursive sampler as ``(token ids, value)``; None once it is too long.

    The recursion of ``generate_tree(1, max_depth, max_args)`` run with an explicit stack: a node
    at ``depth < max_depth`` is an operator with probability 0.25 (``draw() <= 0.25``), else a
    uniform digit; an operator draws its argument count ``2..max_args``, then its children in
    order, and only then its operator. The tree is abandoned (None) as soon as a lower bound of its
    final length — tokens so far, one ``]`` per open operator, one token per promised child —
    reaches ``max_length``: such a tree would be rejected anyway, so the accepted trees keep the
    same distribution.
    """
    ids: list[int] = []
    stack: list[tuple[int, list[int], int]] = []  # (argument count, values so far, op slot)
    pending = 0  # children promised by open operators and not started yet
    while True:
        if stack:
            pending -= 1
        if len(stack) + 1 < max_depth and draw() <= VALUE_P:
            count = 2 + int(draw() * (max_args - 1))
            stack.append((count, [], len(ids)))
            ids.append(0)  # the operator is drawn after its children
            pending += count
            if len(ids) + len(stack) + pending >= max_length:
                return None
            continue
        value = int(draw() * 10)
        ids.append(value + 1)
        while stack:
            count, values, slot = stack[-1]
            values.append(value)
            if len(values) < count:
                break
            op = int(draw() * 4)
            value = _APPLY[op](values)
            ids[slot] = _OP_ID + op
            ids.append(_END_ID)
            stack.pop()
        else:
            return ids, value


def _max_tree_length(max_depth: int, max_args: int) -> int:
    """The longest tree the sampler can produce."""
    length = 1
    for _ in range(max_depth - 1):
        length = 2 + max_args * length
    return length


@ARENA.register(
    "listops",
    paper=LRA_2021,
    tags=("lra", "sequence", "synthetic", "hierarchical", "classification"),
    complexity="L < 2000 tokens, 10 classes",
)
class ListOps(Task):
    """ListOps as generated for the Long Range Arena: the value (0-9) of a nested expression.

    ListOps comes from Nangia & Bowman, "ListOps: A Diagnostic Dataset for Latent Tree
    Learning", 2018, https://arxiv.org/abs/1804.06028; this is the long version made by the
    generator of Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers", 2021,
    https://arxiv.org/abs/2011.04006 (``lra_benchmarks/data/listops.py``), re-implemented.

    Sampler (LRA's, faithfully): a node at depth ``< max_depth`` is an operator with probability
    0.25, otherwise a uniform digit 0-9 (nodes at ``max_depth`` are digits); an operator takes
    ``randint(2, max_args)`` arguments, sampled first, and then its operator, uniform over
    ``MIN, MAX, MED, SM``. The top level has depth 1, so operators nest at most
    ``max_depth - 1`` deep. The operators are the code's set: the LRA paper's text says "MAX,
    MEAN, MEDIAN and SUM_MOD", but the generator that made the released data has MIN, MAX, MED
    (median, ``int(numpy.median)``: an even count truncates the mean of the middle two) and SM
    (sum mod 10), and no MEAN. A tree is kept when ``min_length < length < max_length`` (both
    strict) and it is new (the trees form a set). Trees are abandoned as soon as they must end up
    too long (early rejection: same accepted distribution, much faster).

    Tokens: LRA's tokenisation after its March 2021 fix, 15 symbols, no parentheses; the ids are
    fixed (:data:`VOCAB`): 0 padding, 1-10 the digits 0-9, 11 ``[MIN``, 12 ``[MAX``, 13 ``[MED``,
    14 ``[SM``, 15 ``]``. LRA prepends a learned CLS vector in the model, not a token. The token
    count equals the generator's length, so ``max_len = max_length - 1``.

    Deviations: numpy's ``Generator`` instead of Python's ``random`` (same distribution, other
    draws); the stream of distinct trees is shuffled in consecutive blocks of
    :attr:`SHUFFLE_BLOCK` with a seeded generator, where LRA used Python set order, so
    ``generate(n)`` is a prefix of ``generate(m)`` for ``n <= m`` and splits are cut from it
    (train, then val, then test). ``data_dir`` reads LRA's released files instead. Speed, one
    core: about 0.35 s per 1,000 trees at ``50 < length < 256`` and at LRA's 500-2000.

    Args:
        seed: Seed of the trees and of their order.
        n_train: Training trees (LRA: 96,000).
        n_val: Validation trees (LRA: 2,000).
        n_test: Test trees (LRA: 2,000).
        min_length: Trees are longer than this (strict), LRA 500.
        max_length: Trees are shorter than this (strict), LRA 2000.
        max_depth: Depth at which nodes are always digits, LRA 10.
        max_args: Most arguments of one operator (at least 2), LRA 10.
        cache_dir: Cache folder of the splits (see :class:`~attnzoo.arena.tasks.base.Task`).
        data_dir: Folder with LRA's ``basic_train.tsv``, ``basic_val.tsv``, ``basic_test.tsv``
            (or its ``listops-1000`` subfolder).

    Shape:
        - splits: inputs ``(N, L)`` int64 ids in ``[0, 16)``, ``L <= max_len``; labels ``(N,)``

    Example:
        >>> task = attnzoo.create("listops", seed=0, n_train=8, n_val=2, n_test=2,
        ...                       min_length=10, max_length=40, cache_dir=False)
        >>> example = task.generate(1)[0]
        >>> 10 < len(example.text.split()) < 40, 0 <= example.label <= 9
        (True, True)
        >>> task.splits()["train"].inputs.shape[0], task.vocab_size, task.max_len
        (8, 16, 39)
    """

    name: ClassVar[str] = "listops"
    num_classes: ClassVar[int] = 10
    SHUFFLE_BLOCK: ClassVar[int] = 256
    # Give up (and return fewer trees) after this many draws in a row bring no new tree.
    MAX_STALL: ClassVar[int] = 1_000_000

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int = 96_000,
        n_val: int = 2_000,
        n_test: int = 2_000,
        min_length: int = 500,
        max_length: int = 2000,
        max_depth: int = 10,
        max_args: int = 10,
        cache_dir: Any = None,
        data_dir: Any = None,
    ) -> None:
        super().__init__(
            seed=seed,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            cache_dir=cache_dir,
            data_dir=data_dir,
        )
        self.min_length = check_positive_int("min_length", min_length, minimum=0)
        self.max_length = check_positive_int("max_length", max_length, minimum=2)
        self.max_depth = check_positive_int("max_depth", max_depth)
        self.max_args = check_positive_int("max_args", max_args, minimum=2)
        if self.max_length - self.min_length < 2:
            raise ValueError(
                f"lengths are kept when min_length < length < max_length (strict), so max_length "
                f"must be at least min_length + 2, got min_length={min_length}, "
                f"max_length={max_length}"
            )
        longest = _max_tree_length(self.max_depth, self.max_args)
        if longest <= self.min_length:
            raise ValueError(
                f"with max_depth={max_depth} and max_args={max_args} no tree is longer than "
                f"{longest} tokens, so min_length={min_length} keeps none; lower min_length or "
                "raise max_depth / max_args"
            )

    @property
    def vocab_size(self) -> int:
        """16 ids: padding, 10 digits, 4 operators and ``]``."""
        return len(VOCAB)

    @property
    def max_len(self) -> int:
        """``max_length - 1``: the longest kept tree, in tokens."""
        return self.max_length - 1

    def options(self) -> dict[str, Any]:
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "max_depth": self.max_depth,
            "max_args": self.max_args,
        }

    def _distinct_trees(self) -> Iterator[ListOpsExample]:
        """Distinct kept trees of this seed, in the order the sampler makes them."""
        draw = _uniform_stream(np.random.default_rng([self.seed, 0])).__next__
        seen: set[str] = set()
        stall = 0
        while stall < self.MAX_STALL:
            stall += 1
            tree = sample_tree(
                draw, max_depth=self.max_depth, max_args=self.max_args, max_length=self.max_length
            )
            if tree is None or not self.min_length < len(tree[0]) < self.max_length:
                continue
            text = " ".join([VOCAB[i] for i in tree[0]])
            if text in seen:
                continue
            seen.add(text)
            stall = 0
            yield ListOpsExample(text, tree[1])

    def generate(self, n: int) -> list[ListOpsExample]:
        """The first ``n`` trees of this seed's shuffled stream (fewer if the options run dry)."""
        n = check_positive_int("n", n, minimum=0)
        order = np.random.default_rng([self.seed, 1])
        trees = self._distinct_trees()
        out: list[ListOpsExample] = []
        while len(out) < n:
            block = list(itertools.islice(trees, self.SHUFFLE_BLOCK))
            out += [block[i] for i in order.permutation(len(block))]
            if len(block) < self.SHUFFLE_BLOCK:
                break
        return out[:n]

    def encode(self, example: ListOpsExample) -> list[int]:
        """Token ids of ``example.text`` (see :data:`VOCAB`)."""
        try:
            return [TOKEN_ID[token] for token in example.text.split()]
        except KeyError as error:
            raise ValueError(
                f"example.text holds {error.args[0]!r}, which is not a ListOps token; expected "
                f"one of {VOCAB[1:]}"
            ) from None

    def load_files(self, data_dir: Path) -> dict[str, list[ListOpsExample]]:
        """LRA's released ``basic_{train,val,test}.tsv`` in ``data_dir``, with LRA's tokenisation.

        Each file has the header ``Source<TAB>Target`` and rows ``expression<TAB>value``; the
        expression wraps every partial application in parentheses, e.g. ``( ( ( [MAX 2 ) 3 ) ]
        )``, which are deleted (LRA's tokeniser), leaving the 15 symbols.

        Raises:
            FileNotFoundError: if a file is missing.
            ValueError: naming the file and line of a missing header, a malformed row, an unknown
                token, a label outside 0-9, or a row longer than ``max_len`` tokens.
        """
        folder = Path(data_dir)
        if not (folder / FILES["train"]).is_file() and (folder / "listops-1000").is_dir():
            folder = folder / "listops-1000"
        return {split: read_tsv(folder / file, self.max_len) for split, file in FILES.items()}


def read_tsv(path: Path, max_len: int) -> list[ListOpsExample]:
    """The examples of one LRA ListOps TSV file (see :meth:`ListOps.load_files`)."""
    if not path.is_file():
        raise FileNotFoundError(f"LRA ListOps file {str(path)!r} not found")
    with path.open(encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines()
    if not lines or lines[0].strip().split("\t") != ["Source", "Target"]:
        got = repr(lines[0][:40]) if lines else "an empty file"
        raise ValueError(f"{path}:1: expected the header 'Source<TAB>Target', got {got}")
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 'expression<TAB>label', got {line[:60]!r}")
        tokens = fields[0].replace("(", " ").replace(")", " ").split()
        unknown = [t for t in tokens if t not in TOKEN_ID]
        if unknown:
            raise ValueError(
                f"{path}:{number}: unknown token {unknown[0]!r}; expected one of {VOCAB[1:]}"
            )
        try:
            label = int(fields[1].strip())
        except ValueError:
            raise ValueError(
                f"{path}:{number}: the label must be an integer 0-9, got {fields[1]!r}"
            ) from None
        if not 0 <= label <= 9:
            raise ValueError(f"{path}:{number}: the label must be 0-9, got {label}")
        if len(tokens) > max_len:
            raise ValueError(
                f"{path}:{number}: {len(tokens)} tokens, more than max_len={max_len}; pass "
                f"max_length={len(tokens) + 1} or more"
            )
        examples.append(ListOpsExample(" ".join(tokens), label))
    return examples
