"""engine='native' (C++ split, count, lookup) gives exactly the Python engine's output, or falls back to it."""

import os
import random
import warnings

import pytest
import torch

from rnnlab.data import text as text_mod
from rnnlab.data import text_ext
from rnnlab.data.text import TextVectorizer

from test_data_text import COURSE, COURSE_VOCAB, MIXED, _random_text


@pytest.fixture(scope="module")
def ops():
    """The built extension (built here, blocking, if not cached yet), or a skip saying why not."""
    if os.environ.get("RNNLAB_TEXT_EXT", "auto") in ("0", "off", "false"):
        pytest.skip("RNNLAB_TEXT_EXT=0: the native text extension is disabled")
    old = os.environ.get("RNNLAB_TEXT_EXT")
    os.environ["RNNLAB_TEXT_EXT"] = "wait"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ops = text_ext.ops()
    except Exception as e:  # pragma: no cover - depends on the machine's compiler
        pytest.skip(f"native text extension cannot be built here: {e}")
    finally:
        if old is None:
            del os.environ["RNNLAB_TEXT_EXT"]
        else:
            os.environ["RNNLAB_TEXT_EXT"] = old
    if ops is None:
        pytest.skip(f"native text extension cannot be built here (see {text_ext.EXT.build_dir()}/build.log)")
    return ops


# Every character str.split() splits on (str.isspace), between words, and runs of them: the C++ split must agree.
UNICODE_SPACES = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
CORPUS_EXTRA = [UNICODE_SPACES.join(["a", "b", "c", "d"]), "x\u3000y\u2028z\x85w\xa0q\u1680r\u205fs\u202ft", UNICODE_SPACES,
                "\u2014dash\u2019quote\u20acuro \u00e2\u0080\u0085mojibake", "tie1 tie2 tie3 tie1 tie2 tie3", "a\x00b c\x00"]


def _corpus(seed):
    rng = random.Random(seed)
    train = MIXED + CORPUS_EXTRA + [_random_text(rng) for _ in range(150)]
    test = MIXED[::-1] + CORPUS_EXTRA[::-1] + [_random_text(rng) for _ in range(50)] + ["unseen tokens only", ""]
    return train, test


def test_the_multi_byte_spaces_are_in_the_corpus():
    """The corpus does carry the whitespace only str.split knows, multi-byte in UTF-8 (else the tests below prove less)."""
    multi = [c for c in UNICODE_SPACES if len(c.encode()) > 1]
    assert len(multi) == 19 and all(c in CORPUS_EXTRA[0] for c in multi)


@pytest.mark.parametrize("max_tokens, max_length", [(12, 5), (30, None), (1000, 3), (None, None), (None, 1)])
def test_native_equals_python_on_the_mixed_corpus(ops, max_tokens, max_length):
    """Vocabulary order (ties at the cap included), ids, OOV, empty texts and lengths: identical to engine='python'."""
    train, test = _corpus(1)
    py = TextVectorizer(max_tokens=max_tokens, engine="python").adapt(train)
    nat = TextVectorizer(max_tokens=max_tokens, engine="native").adapt(train)
    assert nat.get_vocabulary() == py.get_vocabulary()
    flat, lengths = nat.encode(test, max_length)
    want_flat, want_lengths = py.encode(test, max_length)
    assert lengths.tolist() == want_lengths.tolist()
    assert flat.tolist() == want_flat.tolist()
    assert 0 in want_lengths.tolist() and (max_length == 1 or 1 in want_flat.tolist())  # empty texts and OOV exercised


def test_native_split_is_str_split(ops):
    """Word counts from the C++ split equal Counter(str.split()) of the standardized texts, words as str."""
    train, _ = _corpus(2)
    v = TextVectorizer(engine="native")
    counts = v._count_native(ops, v._pack(train))
    want = {}
    for t in train:
        for w in v.standardize(t).split():
            want[w] = want.get(w, 0) + 1
    assert counts == want
    assert list(counts) == list(want)  # first-seen order too


def test_ranking_ties_between_non_ascii_words(ops):
    """Equal counts ranked by str order (reverse): UTF-8 byte order equals code point order, also across lengths."""
    words = ["z", "\u00e9", "\u0100", "\u20ac", "\U0001f600", "\uff41", "a\u00e9", "a\U0001f600", "ab", "\u00e9a", "\u007f"]
    texts = [" ".join(words)] * 2
    py = TextVectorizer(engine="python", lowercase=False, strip_accents=False).adapt(texts)
    nat = TextVectorizer(engine="native", lowercase=False, strip_accents=False).adapt(texts)
    assert nat.get_vocabulary() == py.get_vocabulary() == ["", "[UNK]"] + sorted(words, reverse=True)


def test_course_example_and_outputs_through_call(ops):
    v = TextVectorizer(engine="native").adapt(COURSE)
    assert v.get_vocabulary() == COURSE_VOCAB
    assert v(["write for natural language processing"]) == [[3, 1, 1, 1, 1]]
    fixed = TextVectorizer(engine="native", output_sequence_length=3, vocabulary=COURSE_VOCAB)
    assert fixed(["write for natural language processing", "", "erase"]).tolist() == [[3, 1, 1], [0, 0, 0], [2, 0, 0]]
    hot = TextVectorizer(engine="native", output_mode="multi_hot", vocabulary=COURSE_VOCAB)
    assert hot(["erase erase a zzz", ""])[0].nonzero().flatten().tolist() == [1, 2, 11]
    assert v([]) == [] and v.encode([])[0].tolist() == []


def test_unk_token_in_text_maps_to_oov_and_ngrams_take_the_python_path(ops):
    v = TextVectorizer(engine="native", strip_punctuation=False, vocabulary=["a"])
    assert v(["[UNK] a b"]) == [[1, 2, 1]]
    train, test = _corpus(3)
    py = TextVectorizer(engine="python", ngrams=2, max_tokens=60).adapt(train)
    nat = TextVectorizer(engine="native", ngrams=2, max_tokens=60).adapt(train)
    assert nat.get_vocabulary() == py.get_vocabulary()
    assert nat(test) == py(test)


def test_save_load_round_trip(ops, tmp_path):
    train, test = _corpus(4)
    v = TextVectorizer(engine="native", max_tokens=40, output_sequence_length=6).adapt(train)
    v.save(tmp_path / "v.json")
    w = TextVectorizer.load(tmp_path / "v.json")
    assert w.engine == "native"  # the engine is not saved: a loaded vectorizer takes 'auto', which is 'native'
    assert w.get_vocabulary() == v.get_vocabulary()
    assert torch.equal(w(test), v(test))


def test_fallback_to_python_with_one_warning_when_the_extension_is_off(monkeypatch):
    """RNNLAB_TEXT_EXT=0: same output as engine='python', one RuntimeWarning for the whole process."""
    monkeypatch.setenv("RNNLAB_TEXT_EXT", "0")
    monkeypatch.setitem(text_ext.EXT.state, "ops", None)
    monkeypatch.setattr(text_mod, "_NATIVE_WARNED", [])
    train, test = _corpus(5)
    with pytest.warns(RuntimeWarning, match="engine='python'") as record:
        nat = TextVectorizer(engine="native", max_tokens=30).adapt(train)
        flat, lengths = nat.encode(test, 4)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    py = TextVectorizer(engine="python", max_tokens=30).adapt(train)
    assert nat.get_vocabulary() == py.get_vocabulary()
    want_flat, want_lengths = py.encode(test, 4)
    assert flat.tolist() == want_flat.tolist() and lengths.tolist() == want_lengths.tolist()


def test_auto_is_native_and_falls_back_silently(monkeypatch):
    assert TextVectorizer().engine == "native"
    monkeypatch.setenv("RNNLAB_TEXT_EXT", "0")
    monkeypatch.setitem(text_ext.EXT.state, "ops", None)
    monkeypatch.setattr(text_mod, "_NATIVE_WARNED", [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = TextVectorizer().adapt(COURSE)
        assert v(["write for natural language processing"]) == [[3, 1, 1, 1, 1]]
    assert v.get_vocabulary() == COURSE_VOCAB


@pytest.mark.parametrize("engine", ["native", "python", "tokenizers"])
@pytest.mark.parametrize("max_length", [None, 1, 7])
def test_adapt_and_encode_equals_adapt_then_encode(ops, engine, max_length, monkeypatch):
    """Same vocabulary and ids as adapt + encode for every engine; the native engine standardizes each text once."""
    train, _ = _corpus(3)
    want = TextVectorizer(max_tokens=50, engine=engine).adapt(train)
    want_flat, want_lengths = want.encode(train, max_length)
    got = TextVectorizer(max_tokens=50, engine=engine)
    calls = []
    standardize = got._standardize_utf8
    monkeypatch.setattr(got, "_standardize_utf8", lambda t: calls.append(t) or standardize(t))
    flat, lengths = got.adapt_and_encode(train, max_length)
    assert got.get_vocabulary() == want.get_vocabulary()
    assert flat.tolist() == want_flat.tolist() and lengths.tolist() == want_lengths.tolist()
    if engine == "native":
        assert len(calls) == len(train)
    assert TextVectorizer(engine=engine).adapt_and_encode([], max_length)[1].tolist() == []
