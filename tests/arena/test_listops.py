"""ListOps: LRA's generator (labels, bounds, vocabulary, statistics), splits, cache, LRA files."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
import torch

import attnzoo
from attnzoo.arena.tasks import listops as listops_module
from attnzoo.arena.tasks.listops import VOCAB, ListOps, ListOpsExample, _uniform_stream, sample_tree

SMALL = {"min_length": 20, "max_length": 100}
SYMBOLS = {str(d) for d in range(10)} | {"[MIN", "[MAX", "[MED", "[SM", "]"}


def small(seed=0, **kwargs):
    options = {"n_train": 10, "n_val": 2, "n_test": 2, "cache_dir": False, **SMALL, **kwargs}
    return ListOps(seed=seed, **options)


@pytest.fixture(scope="module")
def trees():
    return small().generate(400)


def evaluate(text):
    """Independent stack machine: the value of a token sequence (numpy's median, truncated)."""
    stack = []
    for token in text.split():
        if token.startswith("["):
            stack.append([token])
        elif token == "]":
            op, *args = stack.pop()
            if op == "[MIN":
                value = min(args)
            elif op == "[MAX":
                value = max(args)
            elif op == "[MED":
                value = int(np.median(args))
            elif op == "[SM":
                value = int(np.sum(args)) % 10
            else:
                raise AssertionError(op)
            if not stack:
                return value
            stack[-1].append(value)
        else:
            if not stack:
                return int(token)
            stack[-1].append(int(token))
    raise AssertionError(f"unbalanced: {text}")


def structure(text):
    """(deepest operator nesting, argument counts of every operator)."""
    depth, deepest, counts, stack = 0, 0, [], []
    for token in text.split():
        if token.startswith("["):
            depth += 1
            deepest = max(deepest, depth)
            if stack:
                stack[-1] += 1
            stack.append(0)
        elif token == "]":
            depth -= 1
            counts.append(stack.pop())
        elif stack:
            stack[-1] += 1
    return deepest, counts


def test_independent_evaluator_agrees_with_every_label(trees):
    assert len(trees) == 400
    assert all(isinstance(t, ListOpsExample) for t in trees)
    assert [evaluate(t.text) for t in trees] == [t.label for t in trees]


def test_median_of_an_even_count_truncates():
    # int(numpy.median([3, 8])) == 5 (5.5 truncated); [MED 1 2 ] -> 1 (1.5 truncated)
    assert listops_module._median([3, 8]) == 5 == evaluate("[MED 3 8 ]")
    assert listops_module._median([2, 1]) == 1 == evaluate("[MED 2 1 ]")
    assert listops_module._median([9, 0, 4, 7]) == 5  # (4 + 7) / 2 = 5.5
    assert listops_module._median([5, 1, 9]) == 5
    assert evaluate("[SM 9 [MAX 3 8 ] 7 ]") == 4
    assert evaluate("[MIN 4 [MED 3 8 ] ]") == 4


def test_generator_computes_median_labels_like_numpy():
    meds = [t for t in small(seed=1).generate(300) if t.text.startswith("[MED")]
    assert len(meds) > 30  # the root operator is uniform over the four
    assert all(evaluate(t.text) == t.label for t in meds)


def test_strict_length_bounds():
    lengths = [
        len(t.text.split()) for t in small(seed=2, min_length=5, max_length=12).generate(300)
    ]
    assert min(lengths) == 6 and max(lengths) == 11  # both bounds are strict and reached inside
    assert 5 not in lengths and 12 not in lengths


def test_exactly_the_fifteen_symbols_and_fixed_ids(trees):
    seen = set(itertools.chain.from_iterable(t.text.split() for t in trees))
    assert seen == SYMBOLS
    assert "(" not in "".join(t.text for t in trees)
    assert VOCAB[0] == "<pad>" and VOCAB[1:11] == [str(d) for d in range(10)]
    assert VOCAB[11:] == ["[MIN", "[MAX", "[MED", "[SM", "]"]
    ids = small().encode(ListOpsExample("[SM 0 9 ]", 9))
    assert ids == [14, 1, 10, 15]


def test_nesting_depth_and_argument_counts(trees):
    shapes = [structure(t.text) for t in trees]
    assert max(depth for depth, _ in shapes) <= 9
    counts = list(itertools.chain.from_iterable(c for _, c in shapes))
    assert min(counts) == 2 and max(counts) == 10
    # max_depth bounds the nesting: depth 3 means operators at depths 1 and 2 only
    shallow = small(min_length=4, max_length=100, max_depth=3).generate(100)
    assert max(structure(t.text)[0] for t in shallow) == 2


def test_sampler_matches_a_recursive_transcription_draw_for_draw():
    def recursive(draw, depth, max_depth=10, max_args=10):
        r = draw() if depth < max_depth else 1.0
        if r > 0.25:
            value = int(draw() * 10)
            return [str(value)], value
        n = 2 + int(draw() * (max_args - 1))
        tokens, values = [], []
        for _ in range(n):
            sub_tokens, sub_value = recursive(draw, depth + 1, max_depth, max_args)
            tokens += sub_tokens
            values.append(sub_value)
        op = ["[MIN", "[MAX", "[MED", "[SM"][int(draw() * 4)]
        return [op, *tokens, "]"], evaluate(" ".join([op, *map(str, values), "]"]))

    kept = rejected = 0
    for seed in range(400):
        ref = recursive(_uniform_stream(np.random.default_rng(seed)).__next__, 1)
        draw = _uniform_stream(np.random.default_rng(seed)).__next__
        fast = sample_tree(draw, max_depth=10, max_args=10, max_length=60)
        if len(ref[0]) >= 60:
            assert fast is None
            rejected += 1
        else:
            assert [VOCAB[i] for i in fast[0]] == ref[0] and fast[1] == ref[1]
            kept += len(ref[0]) > 1
    assert kept > 20 and rejected > 20


def test_distinct_and_deterministic_per_seed(trees):
    assert len({t.text for t in trees}) == len(trees)
    assert small().generate(400) == trees
    other = small(seed=1).generate(400)
    assert len({t.text for t in other} & {t.text for t in trees}) < 10
    # a short range holds few trees: still distinct
    tiny = small(min_length=3, max_length=7).generate(200)
    assert len({t.text for t in tiny}) == 200


def test_generate_is_prefix_consistent_and_shuffled():
    task = small(seed=4)
    ten = task.generate(10)
    assert task.generate(5) == ten[:5]
    assert task.generate(700)[:10] == ten
    assert task.generate(0) == []
    # the order is a seeded shuffle of the sampler's stream, block by block
    stream = list(itertools.islice(task._distinct_trees(), task.SHUFFLE_BLOCK))
    first_block = task.generate(task.SHUFFLE_BLOCK)
    assert sorted(first_block, key=lambda t: t.text) == sorted(stream, key=lambda t: t.text)
    assert first_block != stream


def test_label_statistics_follow_lra():
    """As in LRA's ListOps data: 0 and 9 lead (MIN and MAX push to the extremes), ~15-16% each."""
    labels = [t.label for t in small(seed=5, min_length=50, max_length=256).generate(1000)]
    freq = np.bincount(labels, minlength=10) / len(labels)
    assert set(np.argsort(freq)[-2:]) == {0, 9}
    assert 0.13 <= freq.max() <= 0.19
    assert freq[1:9].max() < min(freq[0], freq[9])
    assert all(0.04 < f < 0.13 for f in freq[1:9])
    lengths = [
        len(t.text.split()) for t in small(seed=5, min_length=50, max_length=256).generate(500)
    ]
    assert 130 < statistics.mean(lengths) < 170  # LRA's data: mean and median about 151


def test_splits_through_create_and_the_cache(tmp_path, monkeypatch):
    options = {"n_train": 30, "n_val": 6, "n_test": 8, **SMALL, "cache_dir": tmp_path}
    task = attnzoo.create("listops", seed=0, **options)
    assert attnzoo.info("listops").family == "arena"
    splits = task.splits()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [30, 6, 8]
    train = splits["train"]
    assert train.inputs.dtype == torch.long and train.inputs.shape[1] <= task.max_len == 99
    assert int(train.inputs.max()) < task.vocab_size == 16 and task.num_classes == 10
    lengths = (train.inputs != 0).sum(1)
    assert bool(((lengths > 20) & (lengths < 100)).all())
    expected = task.generate(44)
    assert train.labels.tolist() == [t.label for t in expected[:30]]
    assert splits["test"].labels.tolist() == [t.label for t in expected[36:]]
    assert task.encode(expected[0]) == train.inputs[0, : lengths[0]].tolist()
    files = list(tmp_path.glob("listops-*.pt"))
    assert len(files) == 1 and files[0] == task.cache_path()

    def boom(self, n):
        raise RuntimeError("the second build must read the cache")

    monkeypatch.setattr(ListOps, "generate", boom)
    again = attnzoo.create("listops", seed=0, **options).splits()
    assert torch.equal(again["train"].inputs, train.inputs)
    assert torch.equal(again["test"].labels, splits["test"].labels)
    other = attnzoo.create("listops", seed=1, **options)
    assert other.cache_path() != task.cache_path()
    with pytest.raises(RuntimeError, match="second build"):
        other.splits()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_length": 100, "max_length": 100}, ValueError, "min_length \\+ 2"),
        ({"min_length": 99, "max_length": 100}, ValueError, "strict"),
        ({"min_length": -1}, ValueError, "min_length"),
        ({"max_length": 2.5}, TypeError, "max_length"),
        ({"max_depth": 0}, ValueError, "max_depth"),
        ({"max_args": 1}, ValueError, "max_args"),
        ({"max_depth": 2, "max_args": 3, "min_length": 10, "max_length": 50}, ValueError, "keeps"),
        ({"n_train": 0}, ValueError, "n_train"),
        ({"seed": "a"}, TypeError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        ListOps(**{"cache_dir": False, **kwargs})


def test_bad_arguments_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        ListOps(0)  # keyword-only
    with pytest.raises(TypeError, match="unexpected"):
        attnzoo.create("listops", max_lenght=10)
    with pytest.raises(ValueError, match="n must be"):
        small().generate(-1)
    with pytest.raises(ValueError, match="not a ListOps token"):
        small().encode(ListOpsExample("[MEAN 1 2 ]", 1))


def test_too_few_distinct_trees_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ListOps, "MAX_STALL", 20_000)
    # max_depth 2: an operator with 2 digits (length 4) is the only shape, 4 * 100 trees
    task = ListOps(n_train=500, n_val=1, n_test=1, min_length=3, max_length=5, max_depth=2,
                   max_args=2, cache_dir=False)  # fmt: skip
    assert len(task.generate(1000)) == 400
    with pytest.raises(ValueError, match="fewer than the"):
        task.splits()


# ------------------------------------------------------------------ LRA's released files
def lra_string(text):
    """LRA's TSV serialisation of a token sequence: every partial application parenthesised."""

    def parse(tokens):
        token = tokens.pop(0)
        if not token.startswith("["):
            return token
        node = "( " + token
        first = True
        while tokens[0] != "]":
            node = ("( " if not first else "") + node + " " + parse(tokens) + " )"
            first = False
        tokens.pop(0)
        return "( " + node + " ] )"

    return parse(text.split())


def write_tsv(path, rows, header="Source\tTarget"):
    lines = [header] + [f"{source}\t{label}" for source, label in rows]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # csv.writer's line ends


def test_lra_serialisation_helper_matches_lra_md():
    assert lra_string("[MAX 2 3 ]") == "( ( ( [MAX 2 ) 3 ) ] )"


def test_load_files_reads_lra_tsv(tmp_path):
    examples = small(seed=6).generate(12)
    for name, part in (("train", examples[:8]), ("val", examples[8:10]), ("test", examples[10:])):
        write_tsv(tmp_path / f"basic_{name}.tsv", [(lra_string(e.text), e.label) for e in part])
    task = attnzoo.create("listops", n_train=5, n_val=2, n_test=2, data_dir=tmp_path)
    loaded = task.load_files(tmp_path)
    assert loaded["train"] == examples[:8] and loaded["test"] == examples[10:]
    assert task.cache_path() is None
    splits = task.splits()
    assert len(splits["train"]) == 5  # truncated to n_train
    assert splits["val"].labels.tolist() == [e.label for e in examples[8:10]]
    assert splits["train"].inputs[0, :4].tolist() == task.encode(examples[0])[:4]
    # the release folder may be given instead of the files' folder
    nested = tmp_path / "release"
    (nested / "listops-1000").mkdir(parents=True)
    for file in tmp_path.glob("*.tsv"):
        (nested / "listops-1000" / file.name).write_text(file.read_text())
    assert task.load_files(nested)["val"] == examples[8:10]


@pytest.mark.parametrize(
    ("header", "row", "match"),
    [
        ("Text\tLabel", "( ( [MAX 2 ) ] )\t2", "basic_train.tsv:1: expected the header"),
        ("Source\tTarget", "( ( [MAX 2 ) ] )\tseven", "basic_train.tsv:3: the label must be"),
        ("Source\tTarget", "( ( [MEAN 2 ) ] )\t2", "basic_train.tsv:3: unknown token '\\[MEAN'"),
        ("Source\tTarget", "( ( [MAX 2 ) ] )\t12", "basic_train.tsv:3: the label must be 0-9"),
        ("Source\tTarget", "( ( [MAX 2 ) ] ) 2", "basic_train.tsv:3: expected 'expression"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, header, row, match):
    write_tsv(tmp_path / "basic_train.tsv", [("( ( ( [MIN 4 ) 5 ) ] )", 4)], header=header)
    path = tmp_path / "basic_train.tsv"
    path.write_text(path.read_text() + row + "\n")
    for name in ("val", "test"):
        write_tsv(tmp_path / f"basic_{name}.tsv", [])
    task = ListOps(n_train=1, n_val=1, n_test=1, data_dir=tmp_path)
    with pytest.raises(ValueError, match=match):
        task.load_files(tmp_path)


def test_missing_and_too_long_files(tmp_path):
    task = ListOps(n_train=1, n_val=1, n_test=1, min_length=2, max_length=6, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"basic_train\.tsv"):
        task.load_files(tmp_path)
    for name in ("train", "val", "test"):
        write_tsv(tmp_path / f"basic_{name}.tsv", [(lra_string("[SM 1 2 3 4 ]"), 0)])
    with pytest.raises(ValueError, match="6 tokens, more than max_len=5"):
        task.load_files(tmp_path)
