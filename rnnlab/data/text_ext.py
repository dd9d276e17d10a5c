r"""The native text engine's split, count and lookup in C++ (optional, built on first use, cached).

Two ops over standardized texts given as one ``uint8`` tensor: the texts' UTF-8 bytes joined by
``0xFF`` (a byte that never occurs in UTF-8, lone surrogates encoded with ``surrogatepass``
included), so no offsets are needed:

- ``count(data) -> (words uint8, counts int64 (W,))``: every whitespace-separated word and how
  often it occurs, in first-seen order (one pass: split, hash, count in an open-addressing
  table); the words joined by a space, so that one ``bytes.decode().split(' ')`` gives them;
- ``encode(data, vocab, vocab_offsets, max_length) -> (ids int64, lengths int64 (B,))``: each
  word's index in ``vocab`` (word ``i`` is ``vocab[vocab_offsets[i]:vocab_offsets[i + 1]]``),
  1 (OOV) when missing, each text truncated to ``max_length`` words (-1: no limit); texts
  split over ATen's intra-op threads.

Whitespace is exactly ``str.split()``'s: ``\t \n \v \f \r \x1c-\x1f`` and space, and the
multi-byte UTF-8 forms of U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
U+205F, U+3000 (tested against ``str.split`` over every code point that ``str.isspace``).

Built and loaded by :class:`rnnlab.inline_ext.InlineExtension` (ATen only, ~15 s of CPU, cached per source
version; ``python -m rnnlab.data.text_ext`` builds ahead of time, as ``make install`` does). Until it is built, or
without a compiler, the vectorizer runs ``engine='python'``. ``RNNLAB_TEXT_EXT``: ``auto`` (default: build in the
background on first use), ``wait`` (build now, blocking: for benchmarks and tests), ``0`` (never).
"""
from rnnlab.inline_ext import InlineExtension

SOURCE = r"""
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <cstring>
#include <tuple>
#include <vector>
using at::Tensor;
typedef unsigned char u8;

static const u8 SEP = 0xFF;  // between texts; never a UTF-8 byte
// ASCII whitespace of str.split(): \t \n \v \f \r (9-13), \x1c-\x1f, space.
static inline bool ascii_space(u8 c) { return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20); }
// Length in bytes of the whitespace character at p (0 if none); p < end, *p != SEP.
static inline int space_len(const u8* p, const u8* end) {
  const u8 c = *p;
  if (c < 0x80) return ascii_space(c) ? 1 : 0;
  const ptrdiff_t n = end - p;
  if (c == 0xC2) return (n >= 2 && (p[1] == 0x85 || p[1] == 0xA0)) ? 2 : 0;  // U+0085, U+00A0
  if (n < 3) return 0;
  if (c == 0xE1) return (p[1] == 0x9A && p[2] == 0x80) ? 3 : 0;  // U+1680
  if (c == 0xE2) {
    if (p[1] == 0x80) {  // U+2000-200A, U+2028, U+2029, U+202F
      const u8 d = p[2];
      return ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF) ? 3 : 0;
    }
    return (p[1] == 0x81 && p[2] == 0x9F) ? 3 : 0;  // U+205F
  }
  if (c == 0xE3) return (p[1] == 0x80 && p[2] == 0x80) ? 3 : 0;  // U+3000
  return 0;
}

static const uint64_t FNV_BASIS = 1469598103934665603ULL, FNV_PRIME = 1099511628211ULL;
static inline uint64_t hash_bytes(const u8* p, size_t n) {  // FNV-1a, 64 bit
  uint64_t h = FNV_BASIS;
  for (size_t i = 0; i < n; ++i) { h ^= p[i]; h *= FNV_PRIME; }
  return h;
}

// Byte classes, so that the common byte costs one table load: 0 part of a word, 1 ASCII whitespace,
// 2 lead byte of a possible multi-byte space (C2, E1, E2, E3: ask space_len), 3 the separator.
struct Classes {
  u8 c[256];
  Classes() {
    for (int b = 0; b < 256; ++b) c[b] = ascii_space(u8(b)) ? 1 : 0;
    c[0xC2] = c[0xE1] = c[0xE2] = c[0xE3] = 2;
    c[SEP] = 3;
  }
};
static const Classes CLS;

// Calls f(word_begin, word_end, hash_bytes(word)) for each word of the text at p; returns its end (SEP or end).
template <typename F> static inline const u8* words(const u8* p, const u8* end, F&& f) {
  for (;;) {
    while (p < end) {  // whitespace
      const u8 k = CLS.c[*p];
      if (k == 1) { ++p; continue; }
      if (k == 2) { const int s = space_len(p, end); if (s) { p += s; continue; } }
      break;
    }
    if (p >= end || *p == SEP) return p;
    const u8* w = p;
    uint64_t h = FNV_BASIS;
    while (p < end) {  // the word, hashed as it is scanned
      const u8 c = *p, k = CLS.c[c];
      if (k == 0 || (k == 2 && !space_len(p, end))) { h = (h ^ c) * FNV_PRIME; ++p; continue; }
      break;
    }
    f(w, p, h);
  }
}

// Open addressing (linear probing) over words stored elsewhere: slot -> word index, or -1.
struct Table {
  std::vector<int64_t> slot;
  std::vector<uint64_t> hashes;  // per word
  uint64_t mask;
  explicit Table(size_t expected) {
    size_t cap = 1024;
    while (cap < 2 * expected) cap <<= 1;
    slot.assign(cap, -1);
    mask = cap - 1;
  }
  // Index of the word [w, w + n) among the words (begin(i), len(i)), or the slot to insert at as -(slot + 1).
  template <typename Get> inline int64_t find(const u8* w, size_t n, uint64_t h, Get&& get) const {
    for (uint64_t s = h & mask;; s = (s + 1) & mask) {
      const int64_t i = slot[s];
      if (i < 0) return -int64_t(s) - 1;
      if (hashes[i] == h) {
        const u8* b; size_t m;
        get(i, b, m);
        if (m == n && std::memcmp(b, w, n) == 0) return i;
      }
    }
  }
  void grow() {  // double the slots, re-place every word by its hash
    std::vector<int64_t> old;
    old.swap(slot);
    slot.assign(old.size() * 2, -1);
    mask = slot.size() - 1;
    for (int64_t i : old) {
      if (i < 0) continue;
      uint64_t s = hashes[i] & mask;
      while (slot[s] >= 0) s = (s + 1) & mask;
      slot[s] = i;
    }
  }
};

static void check_data(const Tensor& data) {
  TORCH_CHECK(data.device().is_cpu() && data.scalar_type() == at::kByte && data.dim() == 1 && data.is_contiguous(),
              "data must be a contiguous 1-D uint8 CPU tensor, got ", data.scalar_type(), " of shape ", data.sizes());
}

std::tuple<Tensor, Tensor> count(Tensor data) {
  check_data(data);
  const u8* p = data.data_ptr<u8>();
  const u8* end = p + data.numel();
  std::vector<u8> buf;            // the distinct words, first-seen order, each followed by a space
  std::vector<int64_t> offs{0};   // word i is buf[offs[i], offs[i + 1] - 1)
  std::vector<int64_t> counts;
  Table t(1 << 16);
  auto get = [&](int64_t i, const u8*& b, size_t& m) { b = buf.data() + offs[i]; m = size_t(offs[i + 1] - offs[i] - 1); };
  while (p < end) {
    p = words(p, end, [&](const u8* w, const u8* e, uint64_t h) {
      const size_t n = size_t(e - w);
      const int64_t i = t.find(w, n, h, get);
      if (i >= 0) { ++counts[i]; return; }
      t.slot[uint64_t(-i - 1)] = int64_t(counts.size());
      t.hashes.push_back(h);
      buf.insert(buf.end(), w, e);
      buf.push_back(' ');
      offs.push_back(int64_t(buf.size()));
      counts.push_back(1);
      if (2 * counts.size() > t.slot.size()) t.grow();
    });
    if (p < end) ++p;  // the separator
  }
  if (!buf.empty()) buf.pop_back();  // no space after the last word
  Tensor words_t = at::empty({int64_t(buf.size())}, data.options());
  if (!buf.empty()) std::memcpy(words_t.data_ptr<u8>(), buf.data(), buf.size());
  Tensor counts_t = at::empty({int64_t(counts.size())}, data.options().dtype(at::kLong));
  if (!counts.empty()) std::memcpy(counts_t.data_ptr<int64_t>(), counts.data(), counts.size() * sizeof(int64_t));
  return std::make_tuple(words_t, counts_t);
}

std::tuple<Tensor, Tensor> encode(Tensor data, Tensor vocab, Tensor vocab_offsets, int64_t max_length) {
  check_data(data);
  check_data(vocab);
  TORCH_CHECK(vocab_offsets.scalar_type() == at::kLong && vocab_offsets.dim() == 1 && vocab_offsets.is_contiguous() &&
              vocab_offsets.numel() >= 1, "vocab_offsets must be a contiguous 1-D int64 tensor of V + 1 offsets");
  const u8* vb = vocab.data_ptr<u8>();
  const int64_t* vo = vocab_offsets.data_ptr<int64_t>();
  const int64_t V = vocab_offsets.numel() - 1;
  Table t{static_cast<size_t>(V)};
  t.hashes.resize(V);
  auto get = [&](int64_t i, const u8*& b, size_t& m) { b = vb + vo[i]; m = size_t(vo[i + 1] - vo[i]); };
  for (int64_t i = 0; i < V; ++i) {
    const size_t n = size_t(vo[i + 1] - vo[i]);
    const uint64_t h = hash_bytes(vb + vo[i], n);
    t.hashes[i] = h;
    const int64_t s = t.find(vb + vo[i], n, h, get);
    if (s < 0) t.slot[uint64_t(-s - 1)] = i;  // a duplicate keeps its first index
  }
  // Text boundaries (memchr for the separator), then texts in parallel chunks, each into its own id vector.
  const u8* p0 = data.data_ptr<u8>();
  const u8* end = p0 + data.numel();
  std::vector<const u8*> starts{p0};
  for (const u8* q = p0; (q = static_cast<const u8*>(std::memchr(q, SEP, size_t(end - q)))) != nullptr; ++q)
    starts.push_back(q + 1);
  const int64_t B = int64_t(starts.size());
  Tensor lengths = at::empty({B}, data.options().dtype(at::kLong));
  int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t chunk = 2048, nchunks = (B + chunk - 1) / chunk;
  TORCH_CHECK(V <= INT32_MAX, "vocabulary too large for int32 ids: ", V);
  std::vector<std::vector<int32_t>> ids(static_cast<size_t>(nchunks));  // int32 until the final copy: half the memory
  const int64_t limit = max_length < 0 ? INT64_MAX : max_length;
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      std::vector<int32_t>& out = ids[size_t(c)];
      for (int64_t b = c * chunk, bn = std::min(B, (c + 1) * chunk); b < bn; ++b) {
        const u8* e = b + 1 < B ? starts[size_t(b + 1)] - 1 : end;
        const size_t n0 = out.size();
        int64_t k = 0;
        // A truncated text stops at its max_length-th word; the next text starts at its own boundary.
        words(starts[size_t(b)], e, [&](const u8* w, const u8* we, uint64_t h) {
          if (k++ >= limit) return;
          const size_t n = size_t(we - w);
          const int64_t i = t.find(w, n, h, get);
          out.push_back(i >= 0 ? int32_t(i) : 1);
        });
        len[b] = int64_t(out.size() - n0);
      }
    }
  });
  int64_t total = 0;
  for (const auto& v : ids) total += int64_t(v.size());
  Tensor flat = at::empty({total}, data.options().dtype(at::kLong));
  int64_t* f = flat.data_ptr<int64_t>();
  for (auto& v : ids) {  // each chunk freed once copied, so its memory and the output's pages do not add up
    for (const int32_t i : v) *f++ = i;
    std::vector<int32_t>().swap(v);
  }
  return std::make_tuple(flat, lengths);
}

TORCH_LIBRARY(NAMESPACE, m) {
  m.def("count(Tensor data) -> (Tensor, Tensor)", &count);
  m.def("encode(Tensor data, Tensor vocab, Tensor vocab_offsets, int max_length) -> (Tensor, Tensor)", &encode);
}
"""

CFLAGS = ["-O3"]
EXT = InlineExtension("rnnlab_text", SOURCE, CFLAGS, env="RNNLAB_TEXT_EXT", module="rnnlab.data.text_ext",
                      fallback="engine='python'")


def ops():
    """The C++ ops if built (starting a background build on the first call), else None."""
    return EXT.ops()


if __name__ == "__main__":  # the background build (or `python -m rnnlab.data.text_ext` to build ahead of time)
    EXT.main()
