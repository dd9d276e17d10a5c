"""TextVectorizer: Keras TextVectorization semantics, save/load, the removed engines refused."""

import itertools
import pickle
import random
from collections import Counter

import pytest
import torch

from rnnlab.data.text import TextVectorizer, keras_ranking, reference_standardize

COURSE = ["I write, erase, rewrite", "Erase again, and then", "A poppy blooms"]
COURSE_VOCAB = ["", "[UNK]", "erase", "write", "then", "rewrite", "poppy", "i", "blooms", "and", "again", "a"]


def test_course_example_reproduced_exactly():
    """The course's adapt example: vocabulary order (count desc, ties reverse-lexicographic) and ids."""
    v = TextVectorizer().adapt(COURSE)
    assert v.get_vocabulary() == COURSE_VOCAB
    assert v.vocab_size == 12
    assert v(["write for natural language processing"]) == [[3, 1, 1, 1, 1]]
    assert v.decode([3, 1, 1, 1, 1]) == "write [UNK] [UNK] [UNK] [UNK]"


def test_ranking_by_count_then_reverse_lexicographic_and_max_tokens_cap():
    texts = ["b b b a a c c d", "e"]  # counts: b3, a2, c2, d1, e1
    v = TextVectorizer().adapt(texts)
    assert v.get_vocabulary() == ["", "[UNK]", "b", "c", "a", "e", "d"]
    capped = TextVectorizer(max_tokens=4).adapt(texts)
    assert capped.get_vocabulary() == ["", "[UNK]", "b", "c"]
    assert capped(["a b c zzz"]) == [[1, 2, 3, 1]]


def test_standardization_steps_and_switches():
    text = "Café <br /><br />DÉJÀ-vu, isn't it?<i>Great</i>"
    v = TextVectorizer()
    assert v.split(text) == ["cafe", "dejavu", "isnt", "it", "great"]
    assert TextVectorizer(strip_html=False).split("a<br />b") == ["abr", "b"]  # Keras' default behaviour
    assert TextVectorizer(strip_accents=False).split("Café") == ["café"]
    assert TextVectorizer(lowercase=False).split("Café") == ["Cafe"]
    assert TextVectorizer(strip_punctuation=False).split("a, b.") == ["a,", "b."]


def _random_text(rng):
    pieces = ["Hello", "WORLD", "café", "naïve", "déjà", "<br />", "<br/>", "<p class='x'>", "don't", "x-ray", "a.b",
              "(ok)", "\t", "\n", "  ", "Ñandú", "Straße", "1,000", "$5", "[UNK]", "", "ü", "a<b", "c>d", "ＡＢＣ"]
    return " ".join(rng.choice(pieces) + rng.choice(["", " ", ",", "!"]) for _ in range(rng.randint(0, 12)))


# Texts for every branch of the standardizer: ASCII and not, empty, tags (and half tags), final sigmas,
# accents that decompose to punctuation (U+037E -> ';'), whitespace only str.split knows (\x1c), full-width letters.
MIXED = ["Café <br /><br />DÉJÀ-vu, isn't it?<i>Great</i>", "", "   ", "plain ascii, text. <br />here", "a <b", "c> d",
         "ΌΣΟΣ", "Σ at start", "ΑΣ", "naïve\u037eend", "x\x1cy\x1fz", "ＡＢＣ ｄｅｆ!", "Straße 1,000 $5", "[UNK] [unk]",
         "a<br/>b<BR>c< br >d<p class='x'>e</p>f", "tab\tnew\nline\u00a0nbsp\u2003em", "é" * 3 + "\u0301", "ASCII ONLY"]


@pytest.mark.parametrize("switches", list(itertools.product([True, False], repeat=4)))
def test_standardize_equals_the_regex_reference_for_every_switch(switches):
    """The translate-based standardizer gives what the plain regex reference gives, on every branch."""
    options = dict(zip(["lowercase", "strip_accents", "strip_punctuation", "strip_html"], switches))
    v = TextVectorizer(**options)
    for text in MIXED + ["lone \ud800 surrogate", "a\x00b"]:
        assert v.standardize(text) == reference_standardize(text, **options), text


def _reference_vectorizer(train, texts, max_tokens, max_length):
    """Keras semantics written plainly: regex standardize, str.split, Counter, sort by (count, token) descending."""
    counts = Counter(w for t in train for w in reference_standardize(t).split())
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[: max_tokens - 2]
    vocab = {w: i + 2 for i, (w, _) in enumerate(ranked)}
    return ["", "[UNK]"] + [w for w, _ in ranked], [[vocab.get(w, 1) for w in reference_standardize(t).split()[:max_length]] for t in texts]


@pytest.mark.parametrize("max_tokens, max_length", [(12, 5), (30, None), (1000, 3)])
def test_vocabulary_and_ids_equal_the_plain_reference_on_a_mixed_corpus(max_tokens, max_length):
    """Ties at the max_tokens cap, test-split OOV, empty and non-ASCII texts: same vocabulary and ids as the reference."""
    rng = random.Random(1)
    train = MIXED + [_random_text(rng) for _ in range(150)] + ["tie1 tie2 tie3 tie1 tie2 tie3"]
    test = MIXED[::-1] + [_random_text(rng) for _ in range(50)] + ["unseen tokens only", ""]
    vocab, ids = _reference_vectorizer(train, test, max_tokens, max_length)
    v = TextVectorizer(max_tokens=max_tokens).adapt(train)
    assert v.get_vocabulary() == vocab
    flat, lengths = v.encode(test, max_length)
    assert lengths.tolist() == [len(x) for x in ids]
    assert flat.tolist() == [i for x in ids for i in x]
    assert any(1 in x for x in ids) and any(len(x) == 0 for x in ids)  # the corpus does exercise OOV and empty texts


def test_keras_ranking_breaks_ties_reverse_lexicographically_across_the_cap():
    counts = {"b": 3, "a": 2, "c": 2, "d": 2, "e": 1, "z": 1}
    assert keras_ranking(counts) == ["b", "d", "c", "a", "z", "e"]
    assert keras_ranking(counts, 3) == ["b", "d", "c"]  # the cap cuts inside the tie of count 2
    assert keras_ranking(counts, 100) == keras_ranking(counts)
    assert keras_ranking({}, 5) == []


def test_standardize_and_ngrams_equal_the_regex_reference_on_random_texts():
    rng = random.Random(0)
    texts = [_random_text(rng) for _ in range(300)]
    v = TextVectorizer()
    for t in texts:
        assert v.standardize(t) == reference_standardize(t), t
    words = [reference_standardize(t).split() for t in texts[:200]]
    bigrams = Counter(w for ws in words for w in ws) + Counter(" ".join(g) for ws in words for g in zip(ws, ws[1:]))
    a = TextVectorizer(ngrams=2, max_tokens=40).adapt(texts[:200])
    assert a.get_vocabulary() == ["", "[UNK]"] + keras_ranking(bigrams, 38)


# Every character str.split() splits on (str.isspace), between words and in runs, multi-byte ones in UTF-8 included.
UNICODE_SPACES = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def test_every_unicode_space_splits_words():
    v = TextVectorizer(vocabulary=["a", "b", "c"])
    assert v([UNICODE_SPACES.join("abc"), UNICODE_SPACES, "a\u3000b\x1cc"]) == [[2, 3, 4], [], [2, 3, 4]]


@pytest.mark.parametrize("max_length", [None, 1, 7])
def test_adapt_and_encode_equals_adapt_then_encode(max_length):
    rng = random.Random(3)
    train = MIXED + [_random_text(rng) for _ in range(150)]
    want = TextVectorizer(max_tokens=50).adapt(train)
    want_flat, want_lengths = want.encode(train, max_length)
    got = TextVectorizer(max_tokens=50)
    flat, lengths = got.adapt_and_encode(train, max_length)
    assert got.get_vocabulary() == want.get_vocabulary()
    assert flat.tolist() == want_flat.tolist() and lengths.tolist() == want_lengths.tolist()
    assert TextVectorizer().adapt_and_encode([], max_length)[1].tolist() == []


@pytest.mark.parametrize("engine", ["native", "tokenizers"])
def test_a_removed_engine_is_refused_with_the_reason_and_the_fix(engine):
    with pytest.raises(ValueError, match=rf"engine must be one of \('auto', 'python'\): got '{engine}'; .*removed.*"
                                         r"Drop the engine argument"):
        TextVectorizer(engine=engine)
    assert TextVectorizer(engine="python").engine == TextVectorizer().engine == "python"


def test_fixed_length_pads_and_truncates_at_the_end():
    v = TextVectorizer(output_sequence_length=3, vocabulary=COURSE_VOCAB)
    out = v(["write for natural language processing", "", "erase"])
    assert out.dtype == torch.long
    assert out.tolist() == [[3, 1, 1], [0, 0, 0], [2, 0, 0]]


def test_variable_length_mode_keeps_empty_texts():
    v = TextVectorizer(vocabulary=COURSE_VOCAB)
    assert v(["erase a", "", "!!!"]) == [[2, 11], [], []]
    flat, lengths = v.encode(["erase a", "", "a a a a"], max_length=3)
    assert lengths.tolist() == [2, 0, 3]
    assert flat.tolist() == [2, 11, 11, 11, 11]


def test_multi_hot():
    v = TextVectorizer(output_mode="multi_hot", vocabulary=COURSE_VOCAB)
    out = v(["erase erase a zzz", ""])
    assert out.shape == (2, 12) and out.dtype == torch.float32
    assert out[0].nonzero().flatten().tolist() == [1, 2, 11]  # OOV, erase, a; repeated tokens count once
    assert out[1].sum() == 0


def test_ngrams_vocabulary_and_keras_output_order():
    v = TextVectorizer(ngrams=2).adapt(["the cat sat", "the cat ran"])
    vocab = v.get_vocabulary()
    assert vocab[:4] == ["", "[UNK]", "the cat", "the"]  # counts 2 ("the cat" > "the" in reverse-lex), then 2 ("cat")
    assert set(vocab[2:]) == {"the", "cat", "sat", "ran", "the cat", "cat sat", "cat ran"}
    ids = v(["the cat sat on"])[0]
    # unigrams first (the, cat, sat, on), then bigrams (the cat, cat sat, sat on)
    assert [vocab[i] for i in ids] == ["the", "cat", "sat", "[UNK]", "the cat", "cat sat", "[UNK]"]


def test_save_load_and_json_round_trip(tmp_path):
    v = TextVectorizer(max_tokens=50, output_sequence_length=7, ngrams=2, strip_accents=False).adapt(COURSE)
    path = tmp_path / "vectorizer.json"
    v.save(path)
    w = TextVectorizer.load(path)
    assert w.get_config() == v.get_config()
    assert w.get_vocabulary() == v.get_vocabulary()
    assert torch.equal(w(["erase again, and then"]), v(["erase again, and then"]))
    assert TextVectorizer.from_json(v.to_json()).to_json() == v.to_json()
    assert pickle.loads(pickle.dumps(v)).get_vocabulary() == v.get_vocabulary()


def test_to_tokenizer_exports_the_same_pipeline():
    pytest.importorskip("tokenizers")  # optional
    v = TextVectorizer().adapt(COURSE)
    tok = v.to_tokenizer()
    assert tok.encode("Write, for natural <br />ERASE", add_special_tokens=False).ids == v("Write, for natural <br />ERASE")


def test_decode_drops_padding_and_handles_batches():
    v = TextVectorizer(output_sequence_length=4, vocabulary=COURSE_VOCAB)
    ids = v(["erase a", "poppy"])
    assert v.decode(ids) == ["erase a", "poppy"]


@pytest.mark.parametrize("kwargs, match", [
    ({"output_mode": "count"}, "output_mode"),
    ({"max_tokens": 2}, "max_tokens"),
    ({"ngrams": 0}, "ngrams"),
    ({"output_mode": "multi_hot", "output_sequence_length": 5}, "output_sequence_length"),
    ({"engine": "rust"}, "engine"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextVectorizer(**kwargs)


@pytest.mark.parametrize("max_length", [-5, 0, 2.5, True])
def test_a_max_length_that_is_not_a_positive_int_is_named(max_length):
    # -5 used to keep all but the last 5 tokens (Python slicing) on one engine and fail in Rust on another
    v = TextVectorizer().adapt(COURSE)
    with pytest.raises(ValueError, match=r"max_length must be a positive int .* got " + repr(max_length)):
        v.encode(COURSE, max_length)
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        TextVectorizer().adapt_and_encode(COURSE, max_length)
