// The fused backend's six per-step loops (lstm_fwd, lstm_bwd, gru_fwd, gru_bwd, rnn_fwd, rnn_bwd) in C++, plus
// lstm_bwd_inline and wgrad. Same contract and buffers as the Python loops in rnnlab/nn/backends/fused.py (the buffer
// glossary is in rnnlab/nn/backends/bptt.py); the parity tests (tests/test_fused.py) hold them to the same numbers.
// Built by rnnlab/nn/backends/cpp.py through torch.utils.cpp_extension.load, cached per source version.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>
#include <dlfcn.h>
#include <vector>
using at::Tensor;
using c10::optional;
using V = std::vector<Tensor>;

// States before/after each step: Hl[t + p], Hl[t + n]; without lengths `out` is the state sequence.
static V states(const Tensor& h0, const Tensor& out, const optional<Tensor>& Hs, bool reverse) {
  if (Hs.has_value()) return Hs->unbind(0);
  V v = out.unbind(0);
  if (reverse) v.push_back(h0); else v.insert(v.begin(), h0);
  return v;
}
static V gate(const Tensor& A, int64_t k, int64_t H) { return A.narrow(2, k * H, H).unbind(0); }
#define WALK(T, rev) for (int64_t s_ = 0, t = (rev) ? (T) - 1 : 0; s_ < (T); ++s_, t += (rev) ? -1 : 1)

// The variants of the LSTM-like loops (`kind`) and the RNN's nonlinearity (`act`): the same numbers as
// rnnlab/nn/backends/__init__.py, which passes them.
enum Kind : int64_t { LSTM = 0, LSTM_NOFORGET = 1, CIFG = 2 };
enum Act : int64_t { TANH = 0, RELU = 1, IDENTITY = 2 };

// ||row||_2 of each row of x (B, H) into out (B,), the squares summed in double: float32 squares of entries below
// ~1e-19 are denormal and flush to zero where denormals are flushed (rnnlab's default), the norm with them.
static void row_norms_out(Tensor out, const Tensor& x) {
  out.copy_(at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, false, at::kDouble));
}

// ---- CPU, float/double: each step's elementwise work as one pass over raw memory (vectorised by the
// compiler: -O3 -ffast-math, exp from libmvec), plus the one matmul. The ATen-op versions below serve CUDA.
template <typename T> static inline T clip(T x, T a) { return x < -a ? -a : (x > a ? a : x); }
template <typename T> static inline T sigm(T x) { return T(1) / (T(1) + std::exp(-clip(x, T(40)))); }
template <typename T> static inline T tanh_e(T x) { return T(1) - T(2) / (std::exp(clip(T(2) * x, T(80))) + T(1)); }
static bool raw_ok(const Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}
// f(b) for the B batch rows of one step, split over ATen's intra-op threads once a step has >= ~2048 elements (the
// fork/join costs a few microseconds; below that one thread is faster). Rows touch disjoint memory.
template <typename F> static inline void rows(int64_t B, int64_t H, const F& f) {
  at::parallel_for(0, B, std::max<int64_t>(1, 2048 / std::max<int64_t>(H, 1)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// ---- torch internals, each with a public fallback --------------------------------------------------------------
// Three calls go past torch's public API because they are faster on CPU: the dispatcher ops
// mkldnn::_linear_pointwise and mkldnn::_reorder_linear_weight (StepMM below) and the exported but header-less
// at::native::mkldnn_matmul (wgrad). Each is looked up at run time and used only if it is there with the schema this
// file was written against; a call that throws is answered by the public op (at::mm), which computes the same
// product, and the internal is not tried again by that loop. RNNLAB_FUSED_PRETEND (read at each lookup) lets the
// tests take every fallback: a comma-separated list of "<internal>:missing" or "<internal>:throws", <internal> one
// of linear_pointwise, reorder_linear_weight, mkldnn_matmul.
static bool pretend(const char* internal, const char* how) {
  const char* env = std::getenv("RNNLAB_FUSED_PRETEND");
  if (env == nullptr || *env == '\0') return false;
  const std::string list = "," + std::string(env) + ",", item = "," + std::string(internal) + ":" + how + ",";
  return list.find(item) != std::string::npos;
}
[[noreturn]] static void pretend_throw(const char* internal) {
  TORCH_CHECK(false, "RNNLAB_FUSED_PRETEND: ", internal, " throws");
}
// How many times the public op answered for an internal that was missing or threw (the `fallbacks` op; for tests).
static std::atomic<int64_t> n_fallbacks{0};
int64_t fallbacks() { return n_fallbacks.load(); }

// The dispatcher op `name` if it exists with exactly these argument types and one Tensor result, else nullopt.
static c10::optional<c10::OperatorHandle> find_op(const char* name, const std::vector<std::string>& arg_types) {
  auto op = c10::Dispatcher::singleton().findSchema({name, ""});
  if (!op.has_value()) return c10::nullopt;
  const auto& schema = op->schema();
  if (schema.arguments().size() != arg_types.size() || schema.returns().size() != 1 ||
      schema.returns()[0].type()->str() != "Tensor")
    return c10::nullopt;
  for (size_t k = 0; k < arg_types.size(); ++k)
    if (schema.arguments()[k].type()->str() != arg_types[k]) return c10::nullopt;
  return op;
}
bool has_op(std::string name, std::vector<std::string> arg_types) {  // find_op, for the tests
  return find_op(name.c_str(), arg_types).has_value();
}
static const c10::optional<c10::OperatorHandle>& linear_op_found() {
  static const auto op = find_op("mkldnn::_linear_pointwise", {"Tensor", "Tensor", "Tensor?", "str", "Scalar?[]", "str?"});
  return op;
}
static const c10::optional<c10::OperatorHandle>& pack_op_found() {
  static const auto op = find_op("mkldnn::_reorder_linear_weight", {"Tensor", "int?"});
  return op;
}
static const c10::optional<c10::OperatorHandle>& linear_op() {
  static const c10::optional<c10::OperatorHandle> none;
  return pretend("linear_pointwise", "missing") ? none : linear_op_found();
}
static const c10::optional<c10::OperatorHandle>& pack_op() {
  static const c10::optional<c10::OperatorHandle> none;
  return pretend("reorder_linear_weight", "missing") ? none : pack_op_found();
}
// Call a boxed op on `args`; its one Tensor result, or an undefined Tensor if it threw or returned something else.
// `fail`: throw instead of calling (RNNLAB_FUSED_PRETEND's "<internal>:throws", read once by the caller).
static Tensor call_boxed(const c10::OperatorHandle& op, torch::jit::Stack st, const char* internal, bool fail) {
  try {
    if (fail) pretend_throw(internal);
    op.callBoxed(&st);
  } catch (const std::exception&) {
    return Tensor();
  }
  if (st.size() != 1 || !st[0].isTensor()) return Tensor();
  return st[0].toTensor();
}

// x @ w^T for w (N, K), one step's recurrent matmul. float32 steps big enough go to oneDNN
// (mkldnn::_linear_pointwise), small ones stay on at::mm, whose per-call overhead is lower (docs/kernels.md has the
// measurements). For oneDNN the loop packs w once (mkldnn::_reorder_linear_weight): with a plain w oneDNN would
// reorder it on every call. Without either op, or once a call throws, every step is at::mm.
struct StepMM {
  Tensor w;               // (N, K)
  mutable Tensor packed;  // w in oneDNN's blocked layout, or undefined: at::mm
  const bool linear_throws = pretend("linear_pointwise", "throws");
  StepMM(const Tensor& w_, int64_t rows) : w(w_) {
    if (!at::hasMKLDNN() || w.scalar_type() != at::kFloat || rows * w.size(0) * w.size(1) < (1 << 21)) return;
    if (linear_op().has_value() && pack_op().has_value()) {
      torch::jit::Stack st;
      st.emplace_back(w.contiguous()); st.emplace_back(c10::IValue(rows));
      packed = call_boxed(*pack_op(), std::move(st), "reorder_linear_weight", pretend("reorder_linear_weight", "throws"));
    }
    if (!packed.defined()) ++n_fallbacks;
  }
  Tensor operator()(const Tensor& x) const {  // x @ w^T
    if (packed.defined()) {
      torch::jit::Stack st;
      st.emplace_back(x); st.emplace_back(packed); st.emplace_back(c10::IValue()); st.emplace_back(std::string("none"));
      st.emplace_back(c10::List<c10::optional<at::Scalar>>()); st.emplace_back(std::string(""));
      Tensor y = call_boxed(*linear_op(), std::move(st), "linear_pointwise", linear_throws);
      if (y.defined() && y.dim() == 2 && y.size(0) == x.size(0) && y.size(1) == w.size(0)) return y;
      packed = Tensor();  // refused: the public op from here on
      ++n_fallbacks;
    }
    return at::mm(x, w.t());
  }
};
static void add_into(Tensor& acc, const Tensor& d) {  // acc += d, both (B, H) contiguous
  AT_DISPATCH_FLOATING_TYPES(acc.scalar_type(), "add_into", [&] {
    scalar_t* a = acc.data_ptr<scalar_t>();
    const scalar_t* b = d.data_ptr<scalar_t>();
    for (int64_t k = 0, n = acc.numel(); k < n; ++k) a[k] += b[k];
  });
}

// Store the step's candidate (c, h already in cs/hs rows) under the length mask: padded rows keep the state.
template <typename T>
static void mask_rows(const bool* mk, int64_t B, int64_t H, const T* cp, T* cs, const T* hp, T* hs, T* out) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = b * H;
    if (mk[b]) { for (int64_t j = 0; j < H; ++j) out[r + j] = hs[r + j]; }
    else {
      for (int64_t j = 0; j < H; ++j) { out[r + j] = T(0); hs[r + j] = hp[r + j]; }
      if (cs) for (int64_t j = 0; j < H; ++j) cs[r + j] = cp[r + j];
    }
  }
}

// One batch row of the LSTM gate pass, from the preactivations a* (x part, rewritten with the activations) plus
// w* (W_hh h part). Every array its own __restrict pointer: with one pointer per gate gcc vectorises the loop (exp
// from libmvec); with offsets into one row and five more arrays it gave up (alias checks) and called scalar exp.
template <typename T>
static inline void lstm_row4(T* __restrict ai, T* __restrict af, T* __restrict ao, T* __restrict ag,
                             const T* __restrict wi, const T* __restrict wf, const T* __restrict wo, const T* __restrict wg,
                             const T* __restrict cp, T* __restrict cs, T* __restrict tc, T* __restrict hs, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {  // [i, f, o, g]
    T i = sigm(ai[j] + wi[j]), f = sigm(af[j] + wf[j]), o = sigm(ao[j] + wo[j]), g = tanh_e(ag[j] + wg[j]);
    ai[j] = i; af[j] = f; ao[j] = o; ag[j] = g;
    T c = f * cp[j] + i * g, th = tanh_e(c);
    cs[j] = c; tc[j] = th; hs[j] = o * th;
  }
}
template <typename T, int KIND>  // LSTM_NOFORGET: [i, o, g]; CIFG: [f, o, g]
static inline void lstm_row3(T* __restrict as, T* __restrict ao, T* __restrict ag,
                             const T* __restrict ws, const T* __restrict wo, const T* __restrict wg,
                             const T* __restrict cp, T* __restrict cs, T* __restrict tc, T* __restrict hs, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    T sg = sigm(as[j] + ws[j]), o = sigm(ao[j] + wo[j]), g = tanh_e(ag[j] + wg[j]);
    as[j] = sg; ao[j] = o; ag[j] = g;
    T c = KIND == LSTM_NOFORGET ? cp[j] + sg * g : g + sg * (cp[j] - g), th = tanh_e(c);
    cs[j] = c; tc[j] = th; hs[j] = o * th;
  }
}

template <typename T>
static void lstm_fwd_raw(Tensor& A, const Tensor& whhT, const V& Hl, const V& Cl, Tensor& TC, Tensor& out,
                         const optional<Tensor>& M, int64_t kind, bool reverse) {
  const int64_t Tn = A.size(0), B = A.size(1), GH = A.size(2), H = GH / (kind == LSTM ? 4 : 3);
  const int64_t p = reverse ? 1 : 0, n = 1 - p;
  const bool* mk = M.has_value() ? M->data_ptr<bool>() : nullptr;
  const StepMM mm(whhT.t(), B);  // W_hh (GH, H)
  WALK(Tn, reverse) {
    const Tensor gm = mm(Hl[t + p]).contiguous();  // W_hh h_{t-1}, (B, GH)
    const T* gw = gm.data_ptr<T>();
    T* a = A.data_ptr<T>() + t * B * GH;
    const T *hp = Hl[t + p].data_ptr<T>(), *cp = Cl[t + p].data_ptr<T>();
    T *hs = Hl[t + n].data_ptr<T>(), *cs = Cl[t + n].data_ptr<T>(), *tc = TC.data_ptr<T>() + t * B * H;
    rows(B, H, [&](int64_t b) {
      T* ab = a + b * GH;
      const T* gb = gw + b * GH;
      const int64_t r = b * H;
      if (kind == LSTM)
        lstm_row4<T>(ab, ab + H, ab + 2 * H, ab + 3 * H, gb, gb + H, gb + 2 * H, gb + 3 * H, cp + r, cs + r, tc + r, hs + r, H);
      else if (kind == LSTM_NOFORGET)
        lstm_row3<T, LSTM_NOFORGET>(ab, ab + H, ab + 2 * H, gb, gb + H, gb + 2 * H, cp + r, cs + r, tc + r, hs + r, H);
      else
        lstm_row3<T, CIFG>(ab, ab + H, ab + 2 * H, gb, gb + H, gb + 2 * H, cp + r, cs + r, tc + r, hs + r, H);
    });
    if (mk) mask_rows<T>(mk + t * B, B, H, cp, cs, hp, hs, out.data_ptr<T>() + t * B * H);
  }
}

template <typename T>
static void lstm_bwd_raw(Tensor& DG, const Tensor& Ac, const Tensor& Adc, const Tensor& Ao, const optional<Tensor>& F,
                         const Tensor& gout, Tensor& dh, Tensor& dc, const Tensor& w_hh, const optional<Tensor>& Mf,
                         const optional<Tensor>& NR, bool reverse) {
  const int64_t Tn = Adc.size(0), B = Adc.size(1), K = Adc.size(2), H = Adc.size(3), GH = (K + 1) * H;
  V DGl = DG.unbind(0);
  const StepMM mm(w_hh.t().contiguous(), B);  // W_hh^T (H, GH)
  Tensor dmm;  // the previous step's dG W_hh, added into dh at the start of the next
  const T *go = gout.data_ptr<T>(), *ac = Ac.data_ptr<T>(), *adc = Adc.data_ptr<T>(), *ao = Ao.data_ptr<T>();
  const T* f = F.has_value() ? F->data_ptr<T>() : nullptr;
  const int64_t fs0 = f ? F->stride(0) : 0, fs1 = f ? F->stride(1) : 0;
  const T* mf = Mf.has_value() ? Mf->data_ptr<T>() : nullptr;
  T* nr = NR.has_value() ? NR->data_ptr<T>() : nullptr;
  T *dhp = dh.data_ptr<T>(), *dcp = dc.data_ptr<T>();
  std::vector<T> dccv(H);
  T* dcc = dccv.data();
  WALK(Tn, !reverse) {
    if (dmm.defined()) add_into(dh, dmm);
    T* dg = DG.data_ptr<T>() + t * B * GH;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t r = b * H, q = t * B * H + r;
      const T m = mf ? mf[t * B + b] : T(1);
      T* dgb = dg + b * GH;
      double ss = 0;  // squares of entries down to 1e-38 stay normal in double
      for (int64_t j = 0; j < H; ++j) {
        T dht = dhp[r + j] + go[q + j], dhc = dht * m;  // total dJ/dh_t; the candidate's share
        T dct = dcp[r + j], d = dct * m + dhc * ac[q + j];
        ss += double(dhc) * double(dhc);
        dgb[K * H + j] = dhc * ao[q + j];
        dcc[j] = d;
        dhp[r + j] = dht - dhc;  // passed through a padded step (0 otherwise); + dG W_hh below
        dcp[r + j] = dct - dct * m + (f ? d * f[t * fs0 + b * fs1 + j] : d);
      }
      for (int64_t k = 0; k < K; ++k) {
        const T* ak = adc + (q * K) + k * H;  // Adc (T, B, K, H): row (t, b) starts at (t*B + b)*K*H
        for (int64_t j = 0; j < H; ++j) dgb[k * H + j] = ak[j] * dcc[j];
      }
      if (nr) nr[t * B + b] = T(std::sqrt(ss));
    }
    dmm = mm(DGl[t]).contiguous();
  }
  add_into(dh, dmm);
}

// lstm_bwd with the local derivative factors (o ⊙ (1 - tanh² c), σ' ⊙ ..., the A* of bptt.py) computed in the
// loop from the saved activations A, tanh(c) and c_{t-1}, instead of a precompute over all steps into (T, B, K, H)
// buffers: one pass over memory less per layer. One batch row; LSTM: A [i, f, o, g] -> DG [i, f, g, o];
// LSTM_NOFORGET: A [i, o, g] -> DG [i, g, o]; CIFG: A [f, o, g] -> DG [f, g, o]. `as`/`ds`: the first
// sigmoid gate (i, or f for cifg); `af`/`df`: f of the full LSTM only. Returns the row's ||dJ/dh_t||².
template <typename T, int KIND>
static inline double lstm_bwd_row(const T* __restrict as, const T* __restrict af, const T* __restrict ao, const T* __restrict ag,
                             const T* __restrict tc, const T* __restrict cp, const T* __restrict go,
                             T* __restrict ds, T* __restrict df, T* __restrict dgg, T* __restrict dov,
                             T* __restrict dh, T* __restrict dc, T m, int64_t H) {
  double ss = 0;  // squares of entries down to 1e-38 stay normal in double
  for (int64_t j = 0; j < H; ++j) {
    T dht = dh[j] + go[j], dhc = dht * m;  // total dJ/dh_t; the candidate's share
    T th = tc[j], o = ao[j], g = ag[j], s = as[j];
    T dct = dc[j], d = dct * m + dhc * (o * (T(1) - th * th));  // dJ/dc_t
    ss += double(dhc) * double(dhc);
    dov[j] = dhc * (th * (o - o * o));  // o preactivation
    dgg[j] = ((KIND == CIFG ? T(1) - s : s) * (T(1) - g * g)) * d;  // g: i ⊙ (1 - g²), cifg (1 - f) ⊙ (1 - g²)
    T fg = T(1);
    if (KIND == LSTM) { T f = af[j]; ds[j] = (g * (s - s * s)) * d; df[j] = (cp[j] * (f - f * f)) * d; fg = f; }
    else if (KIND == LSTM_NOFORGET) { ds[j] = (g * (s - s * s)) * d; }
    else { ds[j] = ((cp[j] - g) * (s - s * s)) * d; fg = s; }
    dh[j] = dht - dhc;  // passed through a padded step (0 otherwise); + dG W_hh at the next step
    dc[j] = dct - dct * m + (KIND == LSTM_NOFORGET ? d : d * fg);
  }
  return ss;
}

template <typename T, int KIND>
static void lstm_bwd_inline_raw(Tensor& DG, const Tensor& A, const Tensor& TC, const Tensor& Cs, const Tensor& gout,
                                Tensor& dh, Tensor& dc, const Tensor& w_hh, const optional<Tensor>& Mf,
                                const optional<Tensor>& NR, bool reverse) {
  const int64_t Tn = A.size(0), B = A.size(1), GH = A.size(2), H = TC.size(2), p = reverse ? 1 : 0;
  V DGl = DG.unbind(0);
  const StepMM mm(w_hh.t().contiguous(), B);  // W_hh^T (H, GH)
  Tensor dmm;  // the previous step's dG W_hh, added into dh at the start of the next
  const T *go = gout.data_ptr<T>(), *a = A.data_ptr<T>(), *tc = TC.data_ptr<T>(), *cs = Cs.data_ptr<T>();
  const T* mf = Mf.has_value() ? Mf->data_ptr<T>() : nullptr;
  T* nr = NR.has_value() ? NR->data_ptr<T>() : nullptr;
  T *dhp = dh.data_ptr<T>(), *dcp = dc.data_ptr<T>();
  WALK(Tn, !reverse) {
    if (dmm.defined()) add_into(dh, dmm);
    rows(B, H, [&](int64_t b) {
      const int64_t r = b * H, q = t * B * H + r;
      const T* ab = a + (t * B + b) * GH;
      T* dgb = DG.data_ptr<T>() + (t * B + b) * GH;
      const T* cp = cs + (t + p) * B * H + r;
      const T m = mf ? mf[t * B + b] : T(1);
      double ss;
      if (KIND == LSTM)
        ss = lstm_bwd_row<T, LSTM>(ab, ab + H, ab + 2 * H, ab + 3 * H, tc + q, cp, go + q, dgb, dgb + H, dgb + 2 * H,
                                dgb + 3 * H, dhp + r, dcp + r, m, H);
      else
        ss = lstm_bwd_row<T, KIND>(ab, nullptr, ab + H, ab + 2 * H, tc + q, cp, go + q, dgb, nullptr, dgb + H,
                                   dgb + 2 * H, dhp + r, dcp + r, m, H);
      if (nr) nr[t * B + b] = T(std::sqrt(ss));
    });
    dmm = mm(DGl[t]).contiguous();
  }
  add_into(dh, dmm);
}

template <typename T>
static void gru_fwd_raw(Tensor& A, const Tensor& whhT, const Tensor& XN, Tensor& N, const V& Hl, Tensor& out,
                        const optional<Tensor>& M, bool reverse) {
  const int64_t Tn = A.size(0), B = A.size(1), H = A.size(2) / 3;
  const int64_t p = reverse ? 1 : 0, n = 1 - p;
  const bool* mk = M.has_value() ? M->data_ptr<bool>() : nullptr;
  const int64_t xs0 = XN.stride(0), xs1 = XN.stride(1);
  const StepMM mm(whhT.t(), B);  // W_hh (3H, H)
  WALK(Tn, reverse) {
    const Tensor gm = mm(Hl[t + p]).contiguous();  // W_hh h_{t-1}, (B, 3H)
    const T* gw = gm.data_ptr<T>();
    T* a = A.data_ptr<T>() + t * B * 3 * H;
    const T* xn = XN.data_ptr<T>() + t * xs0;
    const T* hp = Hl[t + p].data_ptr<T>();
    T *hs = Hl[t + n].data_ptr<T>(), *nn = N.data_ptr<T>() + t * B * H;
    rows(B, H, [&](int64_t b) {
      T* ab = a + b * 3 * H;
      const T* gb = gw + b * 3 * H;
      for (int64_t j = 0; j < 3 * H; ++j) ab[j] += gb[j];
      const int64_t r = b * H;
      for (int64_t j = 0; j < H; ++j) {
        T rg = sigm(ab[j]), z = sigm(ab[H + j]);
        ab[j] = rg; ab[H + j] = z;
        T nv = tanh_e(xn[b * xs1 + j] + rg * ab[2 * H + j]);  // n_t = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        nn[r + j] = nv;
        hs[r + j] = nv + z * (hp[r + j] - nv);  // h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
      }
    });
    if (mk) mask_rows<T>(mk + t * B, B, H, nullptr, nullptr, hp, hs, out.data_ptr<T>() + t * B * H);
  }
}

template <typename T>
static void gru_bwd_raw(Tensor& DG, Tensor& DN, const Tensor& Az, const Tensor& An, const Tensor& Ar, const Tensor& R,
                        const Tensor& gout, Tensor& dh, const Tensor& w_hh, const optional<Tensor>& Mf,
                        const optional<Tensor>& NR, bool reverse) {
  const int64_t Tn = DN.size(0), B = DN.size(1), H = DN.size(2);
  V DGl = DG.unbind(0);
  const StepMM mm(w_hh.t().contiguous(), B);  // W_hh^T (H, 3H)
  Tensor dmm;
  const T *go = gout.data_ptr<T>(), *az = Az.data_ptr<T>(), *an = An.data_ptr<T>(), *ar = Ar.data_ptr<T>();
  const T* rp = R.data_ptr<T>();  // R (T, B, H) view of A; Z follows at +H
  const int64_t rs0 = R.stride(0), rs1 = R.stride(1);
  const T* mf = Mf.has_value() ? Mf->data_ptr<T>() : nullptr;
  T* nr = NR.has_value() ? NR->data_ptr<T>() : nullptr;
  T* dhp = dh.data_ptr<T>();
  WALK(Tn, !reverse) {
    if (dmm.defined()) add_into(dh, dmm);
    T *dg = DG.data_ptr<T>() + t * B * 3 * H, *dn = DN.data_ptr<T>() + t * B * H;
    rows(B, H, [&](int64_t b) {
      const int64_t r = b * H, q = t * B * H + r;
      const T m = mf ? mf[t * B + b] : T(1);
      const T *rr = rp + t * rs0 + b * rs1, *zz = rr + H;
      T* dgb = dg + b * 3 * H;
      double ss = 0;  // squares of entries down to 1e-38 stay normal in double
      for (int64_t j = 0; j < H; ++j) {
        T dht = dhp[r + j] + go[q + j], dhc = dht * m;
        ss += double(dhc) * double(dhc);
        T dnv = dhc * an[q + j];
        dn[r + j] = dnv;
        dgb[j] = dnv * ar[q + j];          // r preactivation
        dgb[H + j] = dhc * az[q + j];      // z preactivation
        dgb[2 * H + j] = dnv * rr[j];      // W_hn h + b_hn
        dhp[r + j] = dht - dhc + dhc * zz[j];
      }
      if (nr) nr[t * B + b] = T(std::sqrt(ss));
    });
    dmm = mm(DGl[t]).contiguous();
  }
  add_into(dh, dmm);
}

void lstm_fwd(Tensor A, Tensor whhT, Tensor h0, Tensor Cs, Tensor TC, Tensor out, optional<Tensor> Hs,
              optional<Tensor> M, optional<Tensor> Mf, int64_t kind, bool reverse) {
  if (raw_ok(A)) {
    V Hl = states(h0.contiguous(), out, Hs, reverse), Cl = Cs.unbind(0);
    AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_fwd", [&] { lstm_fwd_raw<scalar_t>(A, whhT, Hl, Cl, TC, out, M, kind, reverse); });
    return;
  }
  const int64_t T = A.size(0), B = A.size(1), GH = A.size(2), H = GH / (kind == LSTM ? 4 : 3);
  const int64_t p = reverse ? 1 : 0, n = 1 - p;
  V Hl = states(h0, out, Hs, reverse), Cl = Cs.unbind(0), TCl = TC.unbind(0), Al = A.unbind(0);
  V Sl = A.narrow(2, 0, GH - H).unbind(0), Gl = gate(A, GH / H - 1, H);
  V Il = gate(A, 0, H), Fl = gate(A, kind == LSTM ? 1 : 0, H), Ol = gate(A, GH / H - 2, H);
  Tensor cn = at::empty({B, H}, A.options()), hc = at::empty({B, H}, A.options());
  const bool masked = M.has_value();
  V Ml, Mfl, outl;
  if (masked) { Ml = M->unbind(0); Mfl = Mf->unbind(0); outl = out.unbind(0); }
  WALK(T, reverse) {
    const Tensor &hp = Hl[t + p], &cp = Cl[t + p];
    Al[t].addmm_(hp, whhT);
    Sl[t].sigmoid_();
    Gl[t].tanh_();
    Tensor c = masked ? cn : Cl[t + n];
    if (kind == CIFG) { at::sub_out(c, cp, Gl[t]); at::addcmul_out(c, Gl[t], Fl[t], c); }
    else if (kind == LSTM) { at::mul_out(c, Fl[t], cp); c.addcmul_(Il[t], Gl[t]); }
    else { at::addcmul_out(c, cp, Il[t], Gl[t]); }
    at::tanh_out(TCl[t], c);
    if (masked) {
      at::where_out(Cl[t + n], Ml[t], c, cp);
      at::mul_out(hc, Ol[t], TCl[t]);
      at::where_out(Hl[t + n], Ml[t], hc, hp);
      at::mul_out(outl[t], hc, Mfl[t]);
    } else {
      at::mul_out(Hl[t + n], Ol[t], TCl[t]);
    }
  }
}

void lstm_bwd(Tensor DG, Tensor Ac, Tensor Adc, Tensor Ao, optional<Tensor> F, Tensor gout, Tensor dh, Tensor dc,
              Tensor w_hh, optional<Tensor> Mf, optional<Tensor> NR, bool reverse) {
  if (raw_ok(DG)) {
    Tensor g = gout.contiguous(), ac = Ac.contiguous(), adc = Adc.contiguous(), ao = Ao.contiguous();
    AT_DISPATCH_FLOATING_TYPES(DG.scalar_type(), "lstm_bwd", [&] { lstm_bwd_raw<scalar_t>(DG, ac, adc, ao, F, g, dh, dc, w_hh, Mf, NR, reverse); });
    return;
  }
  const int64_t T = Adc.size(0), B = Adc.size(1), K = Adc.size(2), H = Adc.size(3);
  V DCl = DG.narrow(2, 0, K * H).view({T, B, K, H}).unbind(0), DOl = DG.narrow(2, K * H, H).unbind(0);
  V DGl = DG.unbind(0), GOl = gout.unbind(0), Acl = Ac.unbind(0), Adcl = Adc.unbind(0), Aol = Ao.unbind(0);
  V Fl, NRl, Mfl;
  if (F.has_value()) Fl = F->unbind(0);
  if (NR.has_value()) NRl = NR->unbind(0);
  const bool masked = Mf.has_value();
  if (masked) Mfl = Mf->unbind(0);
  Tensor dhc = masked ? at::empty({B, H}, dh.options()) : dh;
  Tensor dcc = masked ? at::empty({B, H}, dc.options()) : dc;
  Tensor dcc_u = dcc.unsqueeze(1);
  WALK(T, !reverse) {
    dh.add_(GOl[t]);
    if (masked) { at::mul_out(dhc, dh, Mfl[t]); dh.sub_(dhc); at::mul_out(dcc, dc, Mfl[t]); dc.sub_(dcc); }
    if (!NRl.empty()) row_norms_out(NRl[t], dhc);
    dcc.addcmul_(dhc, Acl[t]);
    at::mul_out(DCl[t], Adcl[t], dcc_u);
    at::mul_out(DOl[t], dhc, Aol[t]);
    if (masked) {
      if (!Fl.empty()) dc.addcmul_(dcc, Fl[t]); else dc.add_(dcc);
      dh.addmm_(DGl[t], w_hh);
    } else {
      if (!Fl.empty()) dc.mul_(Fl[t]);
      at::mm_out(dh, DGl[t], w_hh);
    }
  }
}

// CPU float/double only (bptt.py checks): lstm_bwd from A, TC, Cs directly, no precomputed factors.
void lstm_bwd_inline(Tensor DG, Tensor A, Tensor TC, Tensor Cs, Tensor gout, Tensor dh, Tensor dc, Tensor w_hh,
                     optional<Tensor> Mf, optional<Tensor> NR, int64_t kind, bool reverse) {
  TORCH_CHECK(raw_ok(DG) && A.is_contiguous() && TC.is_contiguous() && Cs.is_contiguous() && DG.is_contiguous(),
              "lstm_bwd_inline: CPU float/double contiguous buffers expected");
  Tensor g = gout.contiguous();
  AT_DISPATCH_FLOATING_TYPES(DG.scalar_type(), "lstm_bwd_inline", [&] {
    if (kind == LSTM) lstm_bwd_inline_raw<scalar_t, LSTM>(DG, A, TC, Cs, g, dh, dc, w_hh, Mf, NR, reverse);
    else if (kind == LSTM_NOFORGET) lstm_bwd_inline_raw<scalar_t, LSTM_NOFORGET>(DG, A, TC, Cs, g, dh, dc, w_hh, Mf, NR, reverse);
    else lstm_bwd_inline_raw<scalar_t, CIFG>(DG, A, TC, Cs, g, dh, dc, w_hh, Mf, NR, reverse);
  });
}

void gru_fwd(Tensor A, Tensor whhT, Tensor XN, Tensor N, Tensor h0, Tensor out, optional<Tensor> Hs,
             optional<Tensor> M, optional<Tensor> Mf, bool reverse) {
  if (raw_ok(A)) {
    V Hl = states(h0.contiguous(), out, Hs, reverse);
    AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "gru_fwd", [&] { gru_fwd_raw<scalar_t>(A, whhT, XN, N, Hl, out, M, reverse); });
    return;
  }
  const int64_t T = A.size(0), B = A.size(1), H = A.size(2) / 3;
  const int64_t p = reverse ? 1 : 0, n = 1 - p;
  V Hl = states(h0, out, Hs, reverse), Al = A.unbind(0), RZl = A.narrow(2, 0, 2 * H).unbind(0);
  V Rl = gate(A, 0, H), Zl = gate(A, 1, H), HNl = gate(A, 2, H), XNl = XN.unbind(0), Nl = N.unbind(0);
  Tensor tmp = at::empty({B, H}, A.options()), hc = at::empty({B, H}, A.options());
  const bool masked = M.has_value();
  V Ml, Mfl, outl;
  if (masked) { Ml = M->unbind(0); Mfl = Mf->unbind(0); outl = out.unbind(0); }
  WALK(T, reverse) {
    const Tensor& hp = Hl[t + p];
    Al[t].addmm_(hp, whhT);
    RZl[t].sigmoid_();
    at::addcmul_out(Nl[t], XNl[t], Rl[t], HNl[t]).tanh_();
    at::sub_out(tmp, hp, Nl[t]);
    at::addcmul_out(masked ? hc : Hl[t + n], Nl[t], Zl[t], tmp);
    if (masked) { at::where_out(Hl[t + n], Ml[t], hc, hp); at::mul_out(outl[t], hc, Mfl[t]); }
  }
}

void gru_bwd(Tensor DG, Tensor DN, Tensor Az, Tensor An, Tensor Ar, Tensor R, Tensor Z, Tensor gout, Tensor dh,
             Tensor w_hh, optional<Tensor> Mf, optional<Tensor> NR, bool reverse) {
  if (raw_ok(DG)) {
    Tensor g = gout.contiguous(), az = Az.contiguous(), an = An.contiguous(), ar = Ar.contiguous();
    AT_DISPATCH_FLOATING_TYPES(DG.scalar_type(), "gru_bwd", [&] { gru_bwd_raw<scalar_t>(DG, DN, az, an, ar, R, g, dh, w_hh, Mf, NR, reverse); });
    return;
  }
  const int64_t T = DN.size(0), B = DN.size(1), H = DN.size(2);
  V DRl = gate(DG, 0, H), DZl = gate(DG, 1, H), DHNl = gate(DG, 2, H), DGl = DG.unbind(0), DNl = DN.unbind(0);
  V GOl = gout.unbind(0), Azl = Az.unbind(0), Anl = An.unbind(0), Arl = Ar.unbind(0), Rl = R.unbind(0), Zl = Z.unbind(0);
  V NRl, Mfl;
  if (NR.has_value()) NRl = NR->unbind(0);
  const bool masked = Mf.has_value();
  if (masked) Mfl = Mf->unbind(0);
  Tensor dhc = masked ? at::empty({B, H}, dh.options()) : dh;
  WALK(T, !reverse) {
    dh.add_(GOl[t]);
    if (masked) { at::mul_out(dhc, dh, Mfl[t]); dh.sub_(dhc); }
    if (!NRl.empty()) row_norms_out(NRl[t], dhc);
    at::mul_out(DZl[t], dhc, Azl[t]);
    at::mul_out(DNl[t], dhc, Anl[t]);
    at::mul_out(DRl[t], DNl[t], Arl[t]);
    at::mul_out(DHNl[t], DNl[t], Rl[t]);
    if (masked) dh.addcmul_(dhc, Zl[t]); else dh.mul_(Zl[t]);
    dh.addmm_(DGl[t], w_hh);
  }
}

void rnn_fwd(Tensor XP, Tensor whhT, Tensor h0, Tensor out, optional<Tensor> Hs, optional<Tensor> M,
             optional<Tensor> Mf, int64_t act, bool reverse) {
  const int64_t T = XP.size(0), B = XP.size(1), H = XP.size(2);
  const int64_t p = reverse ? 1 : 0, n = 1 - p;
  V Hl = states(h0, out, Hs, reverse), XPl = XP.unbind(0);
  Tensor hc = at::empty({B, H}, XP.options());
  const bool masked = M.has_value();
  V Ml, Mfl, outl;
  if (masked) { Ml = M->unbind(0); Mfl = Mf->unbind(0); outl = out.unbind(0); }
  WALK(T, reverse) {
    const Tensor& hp = Hl[t + p];
    Tensor h = masked ? hc : Hl[t + n];
    at::addmm_out(h, XPl[t], hp, whhT);
    if (act == TANH) h.tanh_(); else if (act == RELU) h.relu_();
    if (masked) { at::where_out(Hl[t + n], Ml[t], hc, hp); at::mul_out(outl[t], hc, Mfl[t]); }
  }
}

void rnn_bwd(Tensor DG, optional<Tensor> Ad, Tensor gout, Tensor dh, Tensor w_hh, optional<Tensor> Mf,
             optional<Tensor> NR, bool reverse) {
  const int64_t T = DG.size(0), B = DG.size(1), H = DG.size(2);
  V DGl = DG.unbind(0), GOl = gout.unbind(0), Adl, NRl, Mfl;
  if (Ad.has_value()) Adl = Ad->unbind(0);
  if (NR.has_value()) NRl = NR->unbind(0);
  const bool masked = Mf.has_value();
  if (masked) Mfl = Mf->unbind(0);
  Tensor dhc = masked ? at::empty({B, H}, dh.options()) : dh;
  WALK(T, !reverse) {
    dh.add_(GOl[t]);
    if (masked) { at::mul_out(dhc, dh, Mfl[t]); dh.sub_(dhc); }
    if (!NRl.empty()) row_norms_out(NRl[t], dhc);
    if (!Adl.empty()) at::mul_out(DGl[t], dhc, Adl[t]); else DGl[t].copy_(dhc);
    if (masked) dh.addmm_(DGl[t], w_hh); else at::mm_out(dh, DGl[t], w_hh);
  }
}

// dG^T X, the weight gradients' product (dG (N, G), X (N, K) -> (G, K), N = T*B), without materialising dG^T.
// oneDNN's linear needs both operands contiguous along the contraction, so dG^T would be copied first (as large as
// the gate gradients of the whole sequence). oneDNN's matmul reads the transposed view as it is; torch exports it as
// at::native::mkldnn_matmul but ships no header, so it is looked up by its mangled name, which encodes the argument
// types: a changed signature is a missing symbol. Where it is missing or throws, at::mm computes the same product.
// float32 only (oneDNN has no float64 matmul).
using OneDnnMatmul = void (*)(const Tensor&, const Tensor&, const Tensor&, float, float);
static OneDnnMatmul onednn_matmul_found() {
  static const OneDnnMatmul f = [] {
    void* lib = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    void* sym = lib ? dlsym(lib, "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff") : nullptr;
    return reinterpret_cast<OneDnnMatmul>(sym);
  }();
  return f;
}
static OneDnnMatmul onednn_matmul() { return pretend("mkldnn_matmul", "missing") ? nullptr : onednn_matmul_found(); }
Tensor wgrad(Tensor dg, Tensor x) {
  TORCH_CHECK(dg.dim() == 2 && x.dim() == 2 && dg.size(0) == x.size(0),
              "wgrad: dg (N, G) and x (N, K) with the same N expected: got ", dg.sizes(), " and ", x.sizes());
  if (dg.device().is_cpu() && dg.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat && at::hasMKLDNN() &&
      dg.is_contiguous()) {
    if (const OneDnnMatmul matmul = onednn_matmul()) {
      Tensor r = at::empty({dg.size(1), x.size(1)}, dg.options());
      try {
        if (pretend("mkldnn_matmul", "throws")) pretend_throw("mkldnn_matmul");
        matmul(dg.t(), x.contiguous(), r, /*beta: scale of r*/ 0.f, /*alpha: of the product*/ 1.f);
        return r;
      } catch (const std::exception&) {
      }
    }
    ++n_fallbacks;
  }
  return at::mm(dg.t(), x);
}

// The op namespace is the library's name, one per source version (rnnlab/nn/backends/inline_ext.py passes it as a -D define).
#ifndef RNNLAB_OPS_NAMESPACE
#error "compile with -DRNNLAB_OPS_NAMESPACE=<name> (rnnlab/nn/backends/inline_ext.py does)"
#endif
#define RNNLAB_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)  // one level more, so the define is expanded before ## pastes it
RNNLAB_LIBRARY(RNNLAB_OPS_NAMESPACE, m) {
  m.def("wgrad(Tensor dg, Tensor x) -> Tensor", &wgrad);
  m.def("fallbacks() -> int", &fallbacks);
  m.def("has_op(str name, str[] arg_types) -> bool", &has_op);
  m.def("lstm_fwd(Tensor A, Tensor whhT, Tensor h0, Tensor Cs, Tensor TC, Tensor out, Tensor? Hs, Tensor? M, "
        "Tensor? Mf, int kind, bool reverse) -> ()", &lstm_fwd);
  m.def("lstm_bwd(Tensor DG, Tensor Ac, Tensor Adc, Tensor Ao, Tensor? F, Tensor gout, Tensor dh, Tensor dc, "
        "Tensor w_hh, Tensor? Mf, Tensor? NR, bool reverse) -> ()", &lstm_bwd);
  m.def("lstm_bwd_inline(Tensor DG, Tensor A, Tensor TC, Tensor Cs, Tensor gout, Tensor dh, Tensor dc, Tensor w_hh, "
        "Tensor? Mf, Tensor? NR, int kind, bool reverse) -> ()", &lstm_bwd_inline);
  m.def("gru_fwd(Tensor A, Tensor whhT, Tensor XN, Tensor N, Tensor h0, Tensor out, Tensor? Hs, Tensor? M, "
        "Tensor? Mf, bool reverse) -> ()", &gru_fwd);
  m.def("gru_bwd(Tensor DG, Tensor DN, Tensor Az, Tensor An, Tensor Ar, Tensor R, Tensor Z, Tensor gout, "
        "Tensor dh, Tensor w_hh, Tensor? Mf, Tensor? NR, bool reverse) -> ()", &gru_bwd);
  m.def("rnn_fwd(Tensor XP, Tensor whhT, Tensor h0, Tensor out, Tensor? Hs, Tensor? M, Tensor? Mf, int act, "
        "bool reverse) -> ()", &rnn_fwd);
  m.def("rnn_bwd(Tensor DG, Tensor? Ad, Tensor gout, Tensor dh, Tensor w_hh, Tensor? Mf, Tensor? NR, "
        "bool reverse) -> ()", &rnn_bwd);
}
