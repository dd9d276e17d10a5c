r"""`TextVectorizer`: Keras ``TextVectorization`` semantics on HuggingFace `tokenizers`.

The course's four steps, each as Keras does it:

1. standardize: remove HTML tags such as IMDB's ``<br />`` (replaced by a space;
   Keras' default does *not* do this and leaves the token ``br`` behind), strip
   accents (NFD, drop combining marks, NFC: ``é -> e``), lowercase, delete the
   ASCII punctuation of Keras' ``DEFAULT_STRIP_REGEX`` (deleted, not replaced:
   ``don't -> dont``). Each step has a switch.
2. split on whitespace; with ``ngrams=N`` the tokens are all 1..N-grams joined by
   a space, unigrams first, then bigrams, ... (``tf.strings.ngrams`` order).
3. index: a vocabulary adapted on training texts only. Index 0 is the padding
   token ``''``, index 1 the out-of-vocabulary token ``'[UNK]'``, then tokens by
   decreasing count, ties in *reverse* lexicographic order (Keras sorts by
   ``(count, token)`` descending), capped at ``max_tokens`` entries in all.
4. pad/truncate to ``output_sequence_length`` at the end (Keras' ``'post'``), or
   keep variable lengths (``output_sequence_length=None``: a list of id lists).

Every engine standardizes with `standardize`, C-level passes over each text: the tag
regex; ``bytes.translate`` to lowercase ASCII and delete punctuation; for non-ASCII
texts NFD/NFC and one regex over the combining marks present, and ``str.lower``. No
Python code runs per character (0.3 s for IMDB's 50,000 reviews, against 1.3 s for
the regex reference of ``scripts/bench_data.py``; exactly its output, tested). Then
split, count and index, with identical ids (tested):

- ``engine='native'`` (what ``'auto'`` picks): split, count and index in C++ (`rnnlab.data.text_ext`, built once
  and cached; ``make install`` builds it ahead). The standardized texts go over as one
  ``uint8`` tensor of UTF-8 (texts joined by ``0xFF``); `adapt` gets back the distinct words
  and their counts and ranks them with the same `keras_ranking` as the Python engine;
  encoding returns the flat ids and lengths as tensors. Whitespace is exactly
  ``str.split()``'s, multi-byte Unicode spaces included (tested on every code point that
  ``str.isspace``). Without the extension (no compiler, ``RNNLAB_TEXT_EXT=0``, or its
  background build still running) it is the Python engine: silently for ``'auto'``, with
  one warning for an explicit ``'native'``. n-grams (``ngrams > 1``) always take the
  Python engine's path.
- ``engine='python'``: ``str.split``,
  ``collections.Counter`` and ``dict.get`` in C-level loops (``map``), ids collected
  into one numpy array a chunk of texts at a time (~0.1 us a token).
- ``engine='tokenizers'``: the HuggingFace ``WhitespaceSplit`` pre-tokenizer and
  ``WordLevel`` model (no normalizer: the text is standardized already), parallel over
  the batch; `adapt` counts with ``WordLevelTrainer`` + one encoding pass +
  ``numpy.bincount``. Slower on IMDB even on 2 cores, because every token becomes a
  ``NormalizedString`` and an ``Encoding`` entry (~0.5 us of CPU a token, measured by
  ``scripts/bench_data.py``). `to_tokenizer` exports the whole pipeline, normalizers
  (``Replace`` / ``NFD`` / ``StripAccents`` / ``NFC`` / ``Lowercase``) included, as a
  standalone ``tokenizers.Tokenizer``.

n-grams (``ngrams > 1``) take a slower path in every engine (Python tuples per n-gram).

Whitespace is what ``str.split()`` splits on; lowercasing is ``str.lower`` (which,
unlike the Rust one, gives a final sigma ``ς``).

``output_mode='multi_hot'`` gives a float tensor (B, vocab_size) with 1 where a
token occurs (bag of words). Unlike Keras, the vocabulary is the same in both
modes, so column 0 (padding) is always 0.

    >>> v = TextVectorizer()
    >>> v.adapt(["I write, erase, rewrite", "Erase again, and then", "A poppy blooms"])
    >>> v.get_vocabulary()[:5]
    ['', '[UNK]', 'erase', 'write', 'then']
    >>> v(["write for natural language processing"])
    [[3, 1, 1, 1, 1]]
"""

from __future__ import annotations

import array
import itertools
import json
import re
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from rnnlab.utils import is_int_at_least

PAD = ""
OOV = "[UNK]"
# Keras' DEFAULT_STRIP_REGEX: ASCII punctuation, deleted.
PUNCTUATION = r"""[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']"""
HTML_TAG = r"<\s*/?\s*[A-Za-z][^<>]*>"
OUTPUT_MODES = ("int", "multi_hot")
ENGINES = ("auto", "python", "tokenizers", "native")
AUTO_ENGINE = "native"  # what engine='auto' means (the fastest one measured by scripts/bench_data.py)
_HTML_RE = re.compile(HTML_TAG)
_PUNCTUATION_CHARS = r"""!"#$%&()*+,-./:;<=>?@[\]^_`{|}~'"""
_PUNCTUATION_BYTES = _PUNCTUATION_CHARS.encode("ascii")
# str.split() also splits on \x1c-\x1f, Rust's char::is_whitespace (WhitespaceSplit) does not:
# the tokenizers engine maps them to spaces in the same translate pass.
_BYTE_TABLES = {  # (lowercase ASCII, Python-only whitespace -> space) -> bytes.translate table (None: identity)
    (False, False): None,
    (True, False): bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"),
    (False, True): bytes.maketrans(b"\x1c\x1d\x1e\x1f", b"    "),
    (True, True): bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\x1c\x1d\x1e\x1f", b"abcdefghijklmnopqrstuvwxyz    "),
}


_NATIVE_WARNED: list = []  # non-empty once the fallback warning was given (once per process)


class _Vocab(dict):
    """token -> id with OOV (1) for missing tokens, at C speed for hits (``map(v.__getitem__, ...)``)."""

    def __missing__(self, key):
        return 1


class TextVectorizer:
    """Maps texts to token ids with the semantics of Keras ``TextVectorization``.

    Args:
        max_tokens: vocabulary size cap, padding and OOV included (None: no cap). Default: 20000.
        output_mode: ``'int'`` (id sequences) or ``'multi_hot'`` (B, vocab_size) floats.
        output_sequence_length: pad/truncate int output to this length; None keeps
            variable lengths and returns a list of id lists.
        ngrams: use all n-grams for n = 1..ngrams. Default: 1.
        lowercase, strip_accents, strip_punctuation, strip_html: standardization steps.
        vocabulary: a vocabulary to use instead of `adapt` (starting ``['', '[UNK]']``
            or not; the two are added when missing).
        engine: ``'auto'`` (= `AUTO_ENGINE`, ``'native'``), ``'python'``, ``'tokenizers'`` or
            ``'native'`` (C++, falling back to ``'python'`` when unavailable); same output.

    Outputs of ``__call__(texts)``:
        - int mode, fixed length: LongTensor (B, output_sequence_length), 0-padded.
        - int mode, variable length: list of B lists of ints (an empty text gives []).
        - multi_hot: FloatTensor (B, vocab_size).
    """

    def __init__(
        self,
        max_tokens: int | None = 20000,
        output_mode: str = "int",
        output_sequence_length: int | None = None,
        ngrams: int = 1,
        lowercase: bool = True,
        strip_accents: bool = True,
        strip_punctuation: bool = True,
        strip_html: bool = True,
        vocabulary: Sequence[str] | None = None,
        engine: str = "auto",
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}: got {engine!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}: got {output_mode!r}")
        if max_tokens is not None and max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3 (padding, OOV and one token) or None: got {max_tokens}")
        if ngrams < 1:
            raise ValueError(f"ngrams must be >= 1: got {ngrams}")
        if output_sequence_length is not None and output_mode != "int":
            raise ValueError(f"output_sequence_length only applies to output_mode='int': got output_mode={output_mode!r}")
        if output_sequence_length is not None and output_sequence_length < 1:
            raise ValueError(f"output_sequence_length must be >= 1 or None: got {output_sequence_length}")
        self.max_tokens = max_tokens
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.ngrams = ngrams
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.strip_punctuation = strip_punctuation
        self.strip_html = strip_html
        self.engine = AUTO_ENGINE if engine == "auto" else engine
        self._warn_fallback = engine == "native"  # 'auto' falls back to 'python' silently
        self.set_vocabulary(vocabulary or [])

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict:
        return {k: getattr(self, k) for k in (
            "max_tokens", "output_mode", "output_sequence_length", "ngrams",
            "lowercase", "strip_accents", "strip_punctuation", "strip_html")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"TextVectorizer({args}, vocab_size={self.vocab_size})"

    # ------------------------------------------------------------ standardize
    def _normalizer(self) -> normalizers.Normalizer:
        steps = []
        if self.strip_html:
            steps.append(normalizers.Replace(Regex(HTML_TAG), " "))
        if self.strip_accents:
            steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
        if self.lowercase:
            steps.append(normalizers.Lowercase())
        if self.strip_punctuation:
            steps.append(normalizers.Replace(Regex(PUNCTUATION), ""))
        return normalizers.Sequence(steps)

    def _word_tokenizer(self, vocab: dict[str, int], normalizer: bool = False) -> Tokenizer:
        """WordLevel + WhitespaceSplit; without `normalizer` it expects standardized text (``_standardize(t, rust_whitespace=True)``)."""
        tok = Tokenizer(WordLevel(vocab, unk_token=OOV))
        if normalizer:
            tok.normalizer = self._normalizer()
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tok

    def standardize(self, text: str) -> str:
        """The standardized text (step 1), as the vectorizer sees it.

        C-level passes only: the tag regex (when the text has a ``<``); for an ASCII text
        one ``bytes.translate`` that lowercases and deletes punctuation; otherwise
        `remove_accents`, ``str.lower`` and a ``bytes.translate`` of the UTF-8 that deletes
        punctuation (it is ASCII, and no byte of a multi-byte UTF-8 character is ASCII).
        """
        return self._standardize(text)

    def _standardize(self, text: str, rust_whitespace: bool = False) -> str:
        """`standardize`; with `rust_whitespace` also ``\\x1c``-``\\x1f`` -> space, so that
        ``WhitespaceSplit`` splits where ``str.split`` does."""
        text, table, delete = self._standardize_str(text, rust_whitespace)
        if table is None and not delete:
            return text
        return text.encode("utf-8", "surrogatepass").translate(table, delete).decode("utf-8", "surrogatepass")

    def _standardize_utf8(self, text: str) -> bytes:
        """`standardize` as UTF-8 bytes (lone surrogates as ``surrogatepass`` writes them), no decode."""
        text, table, delete = self._standardize_str(text, False)
        data = text.encode("utf-8", "surrogatepass")
        return data if table is None and not delete else data.translate(table, delete)

    def _standardize_str(self, text: str, rust_whitespace: bool):
        """The str steps of `standardize`, and the ``bytes.translate`` (table, delete) left to apply."""
        if self.strip_html and "<" in text:
            text = _HTML_RE.sub(" ", text)
        if text.isascii():
            table = _BYTE_TABLES[self.lowercase, rust_whitespace]
        else:
            if self.strip_accents:
                text = remove_accents(text)
            if self.lowercase:
                text = text.lower()
            table = _BYTE_TABLES[False, rust_whitespace]
        return text, table, _PUNCTUATION_BYTES if self.strip_punctuation else b""

    def split(self, text: str) -> list[str]:
        """Standardized tokens of `text` (steps 1-2, unigrams)."""
        return self.standardize(text).split()

    def tokens(self, text: str) -> list[str]:
        """All tokens of `text`: unigrams, then bigrams, ... up to `ngrams` (joined by a space)."""
        return self._with_ngrams(self.split(text))

    def _with_ngrams(self, words: list[str]) -> list[str]:
        out = list(words)
        for n in range(2, self.ngrams + 1):
            out += [" ".join(g) for g in zip(*(words[k:] for k in range(n)))]
        return out

    def to_tokenizer(self) -> Tokenizer:
        """A standalone ``tokenizers.Tokenizer`` with this standardization, split and vocabulary (unigrams)."""
        if self.ngrams != 1:
            raise ValueError(f"to_tokenizer() exports unigram vocabularies: expected ngrams=1, got {self.ngrams}")
        return self._word_tokenizer(self._index, normalizer=True)

    # ------------------------------------------------------------- vocabulary
    def get_vocabulary(self) -> list[str]:
        return list(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def set_vocabulary(self, vocabulary: Sequence[str]) -> None:
        """Use `vocabulary` (index order kept; ``''`` and ``'[UNK]'`` put first if missing)."""
        vocab = [t for t in vocabulary if t not in (PAD, OOV)]
        self._vocab = [PAD, OOV] + vocab
        if len(set(self._vocab)) != len(self._vocab):
            raise ValueError("vocabulary has duplicate tokens")
        index = _Vocab((t, i) for i, t in enumerate(self._vocab))
        self._index = index
        self._native_vocab = None  # (uint8 tensor, int64 offsets) of the vocabulary, built on first native encode
        self._truncating_cache: dict[int, Tokenizer] = {}
        if self.ngrams == 1:  # the WordLevel model emits final ids directly
            self._tokenizer = self._word_tokenizer(index)
            self._ngram_index = None
            return
        # n-grams: the model indexes the words that occur in some vocabulary n-gram;
        # n-grams are then looked up as tuples of those word ids.
        words = sorted({w for t in vocab for w in t.split(" ")})
        word_id = {w: i + 1 for i, w in enumerate(words)}  # 0 = a word in no n-gram
        self._tokenizer = self._word_tokenizer({OOV: 0, **word_id})
        self._ngram_index = {tuple(word_id[w] for w in t.split(" ")): i for t, i in index.items() if i >= 2}

    def adapt(self, texts: Sequence[str]) -> "TextVectorizer":
        """Build the vocabulary from `texts` (the training split only)."""
        native = self._native()
        if native is not None:
            texts = texts if isinstance(texts, (list, tuple)) else list(texts)
            counts = self._count_native(native, self._pack(texts)) if texts else Counter()
        elif self.engine in ("python", "native"):
            counts = Counter()
            update = counts.update
            words = self.split if self.ngrams == 1 else self.tokens
            for text in texts:
                update(words(text))
        else:
            counts = self._count_tokenizers([self._standardize(t, rust_whitespace=True) for t in texts])
        self._set_counts(counts)
        return self

    def adapt_and_encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``adapt(texts)``, then ``encode(texts, max_length)``: the same vocabulary and ids. With the native engine
        each text is standardized once instead of twice (the training split of a datamodule is both)."""
        check_max_length(max_length)
        native = self._native()
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        if native is None or not texts:
            return self.adapt(texts).encode(texts, max_length)
        packed = self._pack(texts)
        self._set_counts(self._count_native(native, packed))
        return self._encode_native(native, packed, max_length)

    def _set_counts(self, counts: Counter) -> None:
        """The vocabulary from word counts: special tokens out, Keras' ranking, capped at ``max_tokens``."""
        counts.pop(OOV, None)
        counts.pop(PAD, None)
        cap = None if self.max_tokens is None else self.max_tokens - 2
        self.set_vocabulary(keras_ranking(counts, cap))

    def _native(self):
        """The C++ ops for ``engine='native'`` with unigrams, else None (one warning when unavailable)."""
        if self.engine != "native" or self.ngrams != 1:
            return None
        from rnnlab.data import text_ext

        ops = text_ext.ops()
        if ops is None and self._warn_fallback and not _NATIVE_WARNED:
            _NATIVE_WARNED.append(True)
            warnings.warn("rnnlab native text engine not available (RNNLAB_TEXT_EXT=0, no compiler, or its first "
                          "build still running in the background): using engine='python', same output; "
                          "`python -m rnnlab.data.text_ext` builds it", RuntimeWarning, stacklevel=3)
        return ops

    def _pack(self, texts: Sequence[str]) -> torch.Tensor:
        """The standardized texts as UTF-8 joined by 0xFF, one uint8 tensor (no copy of the joined buffer)."""
        return _uint8(bytearray(b"\xff").join(map(self._standardize_utf8, texts)))

    def _count_native(self, ops, packed: torch.Tensor) -> Counter:
        """Counts of the words of the packed texts (`_pack`): one C++ pass; the distinct words come back space-joined."""
        words, counts = ops.count(packed)
        if not len(counts):
            return Counter()
        words = words.numpy().tobytes().decode("utf-8", "surrogatepass").split(" ")  # words hold no whitespace
        return Counter(dict(zip(words, counts.tolist())))

    def _encode_native(self, ops, packed: torch.Tensor, max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
        if self._native_vocab is None:
            encoded = [t.encode("utf-8", "surrogatepass") for t in self._vocab]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
            self._native_vocab = (_uint8(bytearray(b"").join(encoded)), torch.from_numpy(offsets))
        flat, lengths = ops.encode(packed, *self._native_vocab, -1 if max_length is None else max_length)
        return flat.numpy(), lengths.numpy()

    def _count_tokenizers(self, texts: list[str]) -> Counter:
        """Counts of the words of standardized `texts`: WordLevelTrainer (all words), one encoding pass, bincount."""
        counter = self._word_tokenizer({})
        trainer = WordLevelTrainer(vocab_size=1 << 31, min_frequency=0, show_progress=False, special_tokens=[])
        counter.train_from_iterator(texts, trainer, length=len(texts))
        words = counter.get_vocab()  # every word, id -> trainer's order (ties not Keras')
        id_to_word = np.empty(len(words), dtype=object)
        for w, i in words.items():
            id_to_word[i] = w
        flat, lengths = self._encode_ids(counter, texts)
        counts = Counter(dict(zip(id_to_word.tolist(), np.bincount(flat, minlength=len(words)).tolist())))
        if self.ngrams > 1:
            counts.update(self._count_ngrams(flat, lengths, id_to_word))
        return counts

    def _count_ngrams(self, flat: np.ndarray, lengths: np.ndarray, id_to_word: np.ndarray) -> Counter:
        counts: Counter = Counter()
        ends = np.cumsum(lengths)
        seqs = [flat[e - n:e].tolist() for e, n in zip(ends, lengths)]
        for n in range(2, self.ngrams + 1):
            grams = Counter()
            for s in seqs:
                grams.update(zip(*(s[k:] for k in range(n))))
            counts.update({" ".join(id_to_word[list(g)]): c for g, c in grams.items()})
        return counts

    # --------------------------------------------------------------- encoding
    @staticmethod
    def _encode_ids(tok: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ragged int encoding: (flat ids int64 (sum of lengths,), lengths int64 (B,)).

        Sequence b is ``flat[offsets[b]:offsets[b + 1]]`` with offsets the cumulative
        lengths; each is truncated to `max_length` when given. Empty texts have length 0.
        """
        check_max_length(max_length)
        native = self._native()
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        if native is not None and texts:
            return self._encode_native(native, self._pack(texts), max_length)
        if self.engine in ("python", "native"):
            return self._encode_python(texts, max_length)
        texts = [self._standardize(t, rust_whitespace=True) for t in texts]
        if self.ngrams == 1:
            return self._encode_ids(self._truncating(max_length), texts)
        flat, lengths = self._encode_ids(self._tokenizer, texts)
        ends = np.cumsum(lengths)
        seqs = [self._ngram_ids(flat[e - n:e].tolist())[:max_length] for e, n in zip(ends, lengths)]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        return np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum())), lengths

    def _encode_python(self, texts: Sequence[str], max_length: int | None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """`encode` with ``str.split`` and ``dict.get`` (OOV default) in C-level loops, a chunk of texts at a time."""
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        get, oov = self._index.get, itertools.repeat(1)
        words = self.split if self.ngrams == 1 else self.tokens
        flat, lengths = array.array("q"), []
        length = lengths.append
        for start in range(0, len(texts), chunk):  # a chunk's ids in a list (the fastest to extend), then into `flat`
            ids = []
            extend = ids.extend
            for text in texts[start:start + chunk]:
                n = len(ids)
                extend(map(get, words(text)[:max_length], oov))
                length(len(ids) - n)
            flat.extend(ids)
        flat = np.frombuffer(flat, dtype=np.int64) if len(flat) else np.zeros(0, dtype=np.int64)  # no copy
        return flat, np.asarray(lengths, dtype=np.int64).reshape(-1)

    def _truncating(self, max_length: int | None) -> Tokenizer:
        """The unigram tokenizer, truncating in Rust when `max_length` is given (cached per length)."""
        if max_length is None:
            return self._tokenizer
        if max_length not in self._truncating_cache:
            tok = Tokenizer.from_str(self._tokenizer.to_str())
            tok.enable_truncation(max_length)
            self._truncating_cache[max_length] = tok
        return self._truncating_cache[max_length]

    def _ngram_ids(self, words: list[int]) -> list[int]:
        index = self._ngram_index
        out = []
        for n in range(1, self.ngrams + 1):
            out += [index.get(g, 1) for g in zip(*(words[k:] for k in range(n)))]
        return out

    def __call__(self, texts: str | Iterable[str]):
        if isinstance(texts, str):
            return self([texts])[0]
        texts = list(texts)
        L = self.output_sequence_length
        flat, lengths = self.encode(texts, L)
        if self.output_mode == "multi_hot":
            out = torch.zeros(len(texts), self.vocab_size)
            rows = np.repeat(np.arange(len(texts)), lengths)
            out[torch.from_numpy(rows), torch.from_numpy(flat)] = 1.0
            return out
        if L is None:
            return [a.tolist() for a in np.split(flat, np.cumsum(lengths)[:-1])] if texts else []
        return pad_ragged(flat, lengths, L)

    def decode(self, ids) -> str | list[str]:
        """Tokens of `ids` joined by spaces, padding dropped; 2-D input gives one string per row."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row) for row in ids]
        return " ".join(self._vocab[i] for i in ids if i != 0)

    # ------------------------------------------------------------- save/load
    def to_json(self) -> str:
        return json.dumps({"class": "TextVectorizer", "version": 1, "config": self.get_config(), "vocabulary": self._vocab[2:]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "TextVectorizer":
        d = json.loads(s)
        if d.get("class") != "TextVectorizer":
            raise ValueError(f"not a TextVectorizer JSON: expected class 'TextVectorizer', got {d.get('class')!r}")
        return cls(**d["config"], vocabulary=d["vocabulary"])

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "TextVectorizer":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __getstate__(self):
        return {"json": self.to_json()}

    def __setstate__(self, state):
        self.__dict__.update(TextVectorizer.from_json(state["json"]).__dict__)


def check_max_length(max_length) -> None:
    """``max_length`` is the number of tokens kept per text: a positive int, or None to keep them all."""
    if max_length is not None and not is_int_at_least(max_length, 1):
        raise ValueError(f"max_length must be a positive int (tokens kept per text) or None (keep every token): "
                         f"got {max_length!r}")


def keras_ranking(counts: dict[str, int], cap: int | None = None) -> list[str]:
    """Tokens by decreasing count, ties in reverse lexicographic order (Keras), the first `cap`.

    Only tokens counted at least as often as the cap-th one (found with ``np.partition``)
    are sorted, so a cap of 20,000 on IMDB's ~110,000 words sorts ~20,000.
    """
    items = list(counts.items())
    if cap is not None and len(items) > cap:
        values = np.fromiter(counts.values(), dtype=np.int64, count=len(items))
        threshold = np.partition(values, len(items) - cap)[len(items) - cap]  # the cap-th largest count
        items = [kv for kv in items if kv[1] >= threshold]
    items.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
    return [t for t, _ in items[:cap]]


def _uint8(data: bytearray) -> torch.Tensor:
    """``data`` as a uint8 tensor sharing its memory (``torch.frombuffer`` refuses an empty buffer)."""
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def pad_ragged(flat: np.ndarray, lengths: np.ndarray, length: int, pad: int = 0) -> torch.Tensor:
    """LongTensor (B, length) from a ragged (flat, lengths) encoding, padded/truncated at the end."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    kept = np.minimum(lengths, length)
    rows = np.repeat(np.arange(len(lengths)), kept)
    cols = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    out = torch.full((len(lengths), length), pad, dtype=torch.long)
    out[torch.from_numpy(rows), torch.from_numpy(cols)] = torch.from_numpy(flat[np.repeat(starts, kept) + cols])
    return out


def remove_accents(text: str) -> str:
    """Remove combining marks: NFD, drop category M* characters, NFC (``é -> e``), as tokenizers' StripAccents.

    The marks are found among the distinct characters of the text (``set``) and deleted
    with one regex, so no Python code runs per character.
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFD", text)
    marks = [c for c in set(text) if not c.isascii() and unicodedata.category(c).startswith("M")]
    if marks:
        text = re.sub("[" + "".join(marks) + "]", "", text)  # combining marks are never regex syntax
    return unicodedata.normalize("NFC", text)


def reference_standardize(text: str, lowercase=True, strip_accents=True, strip_punctuation=True, strip_html=True) -> str:
    """Plain regex standardization with the same semantics (for tests and the benchmark's reference)."""
    if strip_html:
        text = re.sub(HTML_TAG, " ", text)
    if strip_accents:
        text = remove_accents(text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = re.sub(PUNCTUATION, "", text)
    return text
