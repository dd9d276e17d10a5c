r"""`TextVectorizer`: Keras ``TextVectorization`` semantics in plain Python.

The course's four steps, each as Keras does it:

1. standardize: remove HTML tags such as IMDB's ``<br />`` (replaced by a space;
   Keras' default does *not* do this and leaves the token ``br`` behind), strip
   accents (NFD, drop combining marks, NFC: ``é -> e``), lowercase, delete the
   ASCII punctuation of Keras' ``DEFAULT_STRIP_REGEX`` (deleted, not replaced:
   ``don't -> dont``). Each step has a switch.
2. split on whitespace (``str.split()``); with ``ngrams=N`` the tokens are all 1..N-grams
   joined by a space, unigrams first, then bigrams, ... (``tf.strings.ngrams`` order).
3. index: a vocabulary adapted on training texts only. Index 0 is the padding
   token ``''``, index 1 the out-of-vocabulary token ``'[UNK]'``, then tokens by
   decreasing count, ties in *reverse* lexicographic order (Keras sorts by
   ``(count, token)`` descending), capped at ``max_tokens`` entries in all.
4. pad/truncate to ``output_sequence_length`` at the end (Keras' ``'post'``), or
   keep variable lengths (``output_sequence_length=None``: a list of id lists).

Every step runs in C-level loops of CPython, no Python code per character or per token:
`standardize` is the tag regex, one ``bytes.translate`` that lowercases ASCII and deletes
punctuation, and for non-ASCII texts NFD/NFC with one regex over the combining marks
present and ``str.lower`` (exactly the output of `reference_standardize`, tested); then
``str.split``, ``collections.Counter`` to adapt, and ``dict.get`` (OOV default) mapped over
the words to encode, the ids of a chunk of texts collected into one int64 array.
n-grams (``ngrams > 1``) build Python strings per n-gram, a slower path.

``output_mode='multi_hot'`` gives a float tensor (B, vocab_size) with 1 where a
token occurs (bag of words). Unlike Keras, the vocabulary is the same in both
modes, so column 0 (padding) is always 0.

`to_tokenizer` exports the pipeline as a HuggingFace ``tokenizers.Tokenizer`` (an optional
package: ``pip install tokenizers``).

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
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from rnnlab.utils import is_int_at_least

PAD = ""
OOV = "[UNK]"
# Keras' DEFAULT_STRIP_REGEX: ASCII punctuation, deleted.
PUNCTUATION = r"""[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']"""
HTML_TAG = r"<\s*/?\s*[A-Za-z][^<>]*>"
OUTPUT_MODES = ("int", "multi_hot")
ENGINES = ("auto", "python")
# Engines of earlier versions, refused with the reason (same ids, slower or a build step: docs/data.md).
REMOVED_ENGINES = {
    "native": "the C++ text engine was removed: it saved about 1.5 s once per dataset (the vectorized splits are cached)",
    "tokenizers": "the HuggingFace tokenizers engine was removed: it was slower than the Python engine and used twice "
                  "its memory",
}
_HTML_RE = re.compile(HTML_TAG)
_PUNCTUATION_BYTES = r"""!"#$%&()*+,-./:;<=>?@[\]^_`{|}~'""".encode("ascii")
_LOWER_ASCII = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


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
        engine: ``'auto'`` or ``'python'`` (the same: the one engine). The engines
            ``'native'`` and ``'tokenizers'`` of earlier versions are refused, with the reason.

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
        if engine in REMOVED_ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}: got {engine!r}; {REMOVED_ENGINES[engine]}. Drop the "
                             f"engine argument (the Python engine gives the same vocabulary and ids)")
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
        self.engine = "python"
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
    def standardize(self, text: str) -> str:
        """The standardized text (step 1), as the vectorizer sees it.

        C-level passes only: the tag regex (when the text has a ``<``); for an ASCII text
        one ``bytes.translate`` that lowercases and deletes punctuation; otherwise
        `remove_accents`, ``str.lower`` and a ``bytes.translate`` of the UTF-8 that deletes
        punctuation (it is ASCII, and no byte of a multi-byte UTF-8 character is ASCII).
        """
        if self.strip_html and "<" in text:
            text = _HTML_RE.sub(" ", text)
        if text.isascii():
            table = _LOWER_ASCII if self.lowercase else None
        else:
            if self.strip_accents:
                text = remove_accents(text)
            if self.lowercase:
                text = text.lower()
            table = None
        delete = _PUNCTUATION_BYTES if self.strip_punctuation else b""
        if table is None and not delete:
            return text
        return text.encode("utf-8", "surrogatepass").translate(table, delete).decode("utf-8", "surrogatepass")

    def split(self, text: str) -> list[str]:
        """Standardized tokens of `text` (steps 1-2, unigrams)."""
        return self.standardize(text).split()

    def tokens(self, text: str) -> list[str]:
        """All tokens of `text`: unigrams, then bigrams, ... up to `ngrams` (joined by a space)."""
        words = self.split(text)
        out = list(words)
        for n in range(2, self.ngrams + 1):
            out += [" ".join(g) for g in zip(*(words[k:] for k in range(n)))]
        return out

    def to_tokenizer(self):
        """A standalone HuggingFace ``tokenizers.Tokenizer`` with this standardization, split and vocabulary (unigrams).

        Needs the optional ``tokenizers`` package. Its whitespace split is Rust's, which does not split on
        ``\\x1c``-``\\x1f`` as ``str.split`` does.
        """
        if self.ngrams != 1:
            raise ValueError(f"to_tokenizer() exports unigram vocabularies: expected ngrams=1, got {self.ngrams}")
        try:
            from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
            from tokenizers.models import WordLevel
        except ImportError as e:
            raise ImportError("to_tokenizer() needs the optional tokenizers package: pip install tokenizers") from e
        steps = [normalizers.Replace(Regex(HTML_TAG), " ")] if self.strip_html else []
        if self.strip_accents:
            steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
        if self.lowercase:
            steps.append(normalizers.Lowercase())
        if self.strip_punctuation:
            steps.append(normalizers.Replace(Regex(PUNCTUATION), ""))
        tok = Tokenizer(WordLevel(dict(self._index), unk_token=OOV))
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tok

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
        self._index = {t: i for i, t in enumerate(self._vocab)}

    def adapt(self, texts: Iterable[str]) -> "TextVectorizer":
        """Build the vocabulary from `texts` (the training split only)."""
        counts = Counter()
        update = counts.update
        words = self.split if self.ngrams == 1 else self.tokens
        for text in texts:
            update(words(text))
        counts.pop(OOV, None)
        counts.pop(PAD, None)
        cap = None if self.max_tokens is None else self.max_tokens - 2
        self.set_vocabulary(keras_ranking(counts, cap))
        return self

    def adapt_and_encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``adapt(texts)``, then ``encode(texts, max_length)``: the vocabulary of the training split and its ids."""
        check_max_length(max_length)
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        return self.adapt(texts).encode(texts, max_length)

    # --------------------------------------------------------------- encoding
    def encode(self, texts: Iterable[str], max_length: int | None = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Ragged int encoding: (flat ids int64 (sum of lengths,), lengths int64 (B,)).

        Sequence b is ``flat[offsets[b]:offsets[b + 1]]`` with offsets the cumulative
        lengths; each is truncated to `max_length` when given. Empty texts have length 0.
        The ids of `chunk` texts at a time go into a list (the fastest to extend), then into `flat`.
        """
        check_max_length(max_length)
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        get, oov = self._index.get, itertools.repeat(1)
        words = self.split if self.ngrams == 1 else self.tokens
        flat, lengths = array.array("q"), []
        length = lengths.append
        for start in range(0, len(texts), chunk):
            ids = []
            extend = ids.extend
            for text in texts[start:start + chunk]:
                n = len(ids)
                extend(map(get, words(text)[:max_length], oov))
                length(len(ids) - n)
            flat.extend(ids)
        flat = np.frombuffer(flat, dtype=np.int64) if len(flat) else np.zeros(0, dtype=np.int64)  # no copy
        return flat, np.asarray(lengths, dtype=np.int64).reshape(-1)

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
