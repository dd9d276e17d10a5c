"""Forward + backward time of rnnlab's cells per backend against torch.nn, measured in the same run.

    python scripts/bench_cells.py --quick                  # 12 rows, a minute or two on 2 cores
    python scripts/bench_cells.py --json cells.json        # the full grid (long)
    python scripts/bench_cells.py --device cuda --backends fused,triton,loop
    python scripts/bench_cells.py --device cuda --backends triton,triton_step --hidden 32,128,256 --dirs uni

Grid: batch {32, 128} x steps {100, 600} x hidden {32, 128, 512} x {uni, bi}directional x
{padded, variable-length}, input 256; ``--quick`` keeps batch 32, steps 100. Per row and cell
(lstm, gru, cifg) it times ``out.sum().backward()`` (median of ``--repeats`` after a warm-up,
backends interleaved; CUDA synchronised) for each rnnlab backend and for ``torch.nn.LSTM`` / ``torch.nn.GRU`` on the
same input (CIFG has no torch peer: it is compared with ``torch.nn.LSTM``, which does more work).
Padded rows: every sequence has T steps, no lengths. Variable rows: lengths uniform in [T/4, T];
torch gets ``pack_padded_sequence`` / ``pad_packed_sequence`` (its way), rnnlab gets ``lengths=``.
``rec`` is fused with per-timestep gradient-norm recording on (its overhead is ``rec/fused``).
``triton`` is the persistent Triton kernels (one launch per layer, direction and pass, where they apply);
``triton_step`` is the same backend with them switched off (one Triton kernel + one cuBLAS matmul per step).
``--hidden/--batch/--steps/--dirs/--lens`` restrict the grid. On CUDA, torch.nn runs cuDNN, whose float32
RNNs use TF32 math while ``torch.backends.cudnn.allow_tf32`` is on (PyTorch's default; printed in the header,
``--cudnn-tf32 off`` turns it off); rnnlab's float32 products are full float32 unless
``torch.set_float32_matmul_precision`` says otherwise.

Denormals are flushed on both sides (``torch.set_flush_denormal(True)``; they cost plain
PyTorch several times here). Targets on a 2-core CPU: fused at most 1.0x torch.nn on
the median row and at most 1.5x on every row.
"""
import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Time the checkout this script is in: `python scripts/bench_cells.py` puts scripts/ (not the repo root) on
# sys.path, so `import rnnlab` would otherwise load whichever copy is pip-installed, possibly another checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rnnlab.nn as rnn  # noqa: E402
from rnnlab.nn.backends import cpp as cpp_ext  # noqa: E402

TORCH_PEER = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "cifg": torch.nn.LSTM}
OURS = {"lstm": rnn.LSTM, "gru": rnn.GRU, "cifg": rnn.CIFGLSTM}
VARIANTS = {"triton_step": "triton"}  # extra column -> the backend it runs (with the persistent kernels off)


def timed(device, fn):
    """Milliseconds of one call of fn (CUDA: between synchronised events)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def bench(device, fns, repeats):
    """Median ms of each of fns after one warm-up; the repeats interleave the fns, so noise from other
    processes on a shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(device, fn))
    return {k: statistics.median(v) for k, v in times.items()}


def step_torch(m, x, lengths):
    def fn():
        xi = pack_padded_sequence(x, lengths, enforce_sorted=False) if lengths is not None else x
        out, _ = m(xi)
        if lengths is not None:
            out, _ = pad_packed_sequence(out, total_length=x.size(0))
        out.sum().backward()
    return fn


def step_ours(m, x, lengths, persistent=True, config=None):
    """persistent=False: the per-step Triton kernels; config: the persistent kernels' CONFIG for this column."""
    def fn():
        from rnnlab.nn.backends.triton import persistent as tp
        was = tp.ENABLED, tp.CONFIG
        tp.ENABLED, tp.CONFIG = persistent and tp.ENABLED, config or tp.CONFIG
        try:
            out, _ = m(x, lengths=lengths)
            out.sum().backward()
        finally:
            tp.ENABLED, tp.CONFIG = was
    return fn


def ints(text):
    return [int(v) for v in text.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 32, steps 100 only (12 rows)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--backends", default=None, help="comma list of rnnlab backends (default: fused, +triton on cuda)")
    ap.add_argument("--cells", default="lstm,gru,cifg")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per cell (default 5 quick, 3 full)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's, 2 here); 1 is far steadier when other jobs share the cores")
    ap.add_argument("--no-rec", action="store_true", help="skip the grad-norm recording column (needs fused)")
    ap.add_argument("--hidden", type=ints, default=[32, 128, 512], help="comma list of hidden sizes")
    ap.add_argument("--batch", type=ints, default=None, help="comma list of batch sizes (default 32,128; quick 32)")
    ap.add_argument("--steps", type=ints, default=None, help="comma list of sequence lengths (default 100,600; quick 100)")
    ap.add_argument("--dirs", default="uni,bi", help="uni, bi or uni,bi")
    ap.add_argument("--lens", default="pad,var", help="pad (all T steps), var (lengths in [T/4, T]) or pad,var")
    ap.add_argument("--triton-configs", default="",
                    help="';'-separated persistent-kernel configs, each timed as a column triton#1, triton#2, ..., e.g. "
                         "'num_warps=8;fp32_precision=tf32x3,num_warps=8' (keys: rnnlab.nn.backends.triton.persistent.CONFIG)")
    ap.add_argument("--cudnn-tf32", choices=["default", "on", "off"], default="default",
                    help="torch.backends.cudnn.allow_tf32 for the torch.nn peer on CUDA")
    ap.add_argument("--json", default=None, help="write every row to this file")
    ap.add_argument("--e2e", type=int, default=0, metavar="N",
                    help="also time N training batches (-1: a whole epoch) of the bilstm experiment, model.cell=lstm "
                         "vs torch_lstm (needs the IMDB archive: --archive or $RNNLAB_IMDB_ARCHIVE)")
    ap.add_argument("--archive", default=os.environ.get("RNNLAB_IMDB_ARCHIVE"))
    ap.add_argument("--e2e-repeats", type=int, default=2, help="interleaved runs per cell for --e2e")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    flushed = torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends.split(",") if args.backends else (["fused", "triton"] if device.type == "cuda" else ["fused"])
    backends = [b for b in backends if b in rnn.BACKENDS or b in VARIANTS]
    configs = {}
    if args.triton_configs:
        from rnnlab.nn.backends.triton import persistent as triton_persistent
        for i, text in enumerate(filter(None, args.triton_configs.split(";")), 1):
            configs[f"triton#{i}"] = triton_persistent.parse_config(text, triton_persistent.CONFIG)
            VARIANTS[f"triton#{i}"] = "triton"
            backends.append(f"triton#{i}")
    if "fused" not in backends:
        args.no_rec = True
    if args.cudnn_tf32 != "default":
        torch.backends.cudnn.allow_tf32 = args.cudnn_tf32 == "on"
    cells = args.cells.split(",")
    repeats = args.repeats or (5 if args.quick else 3)
    os.environ.setdefault("RNNLAB_FUSED_EXT", "wait")  # build the C++ loops before timing
    cpp = cpp_ext.loops() is not None
    batches, steps = ([32], [100]) if args.quick else ([32, 128], [100, 600])
    batches, steps = args.batch or batches, args.steps or steps
    dirs = [{"uni": False, "bi": True}[d] for d in args.dirs.split(",")]
    lens = [{"pad": False, "var": True}[v] for v in args.lens.split(",")]
    grid = list(itertools.product(batches, steps, args.hidden, dirs, lens))
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}, denormals flushed: {flushed} (both sides), "
          f"fused C++ loops: {cpp}, median of {repeats} after warm-up, input 256, forward+backward ms")
    if device.type == "cuda":
        import triton
        from rnnlab.nn.backends.triton import persistent as triton_persistent
        print(f"# {torch.cuda.get_device_name()}, triton {triton.__version__}, cuDNN {torch.backends.cudnn.version()} "
              f"allow_tf32={torch.backends.cudnn.allow_tf32}, float32 matmul precision "
              f"{torch.get_float32_matmul_precision()}, persistent Triton CONFIG {triton_persistent.CONFIG}")
        for name, cfg in configs.items():
            print(f"# {name}: {cfg}")
    cols = ["torch"] + backends + ([] if args.no_rec else ["rec"])
    w = {c: max(9, len(c)) for c in cols + [b + "/t" for b in backends]}  # column widths
    head = f"{'cell':5} {'B':>4} {'T':>4} {'H':>4} {'dir':>3} {'len':>4} " + " ".join(f"{c:>{w[c]}}" for c in cols)
    head += " " + " ".join(f"{b + '/t':>{w[b + '/t']}}" for b in backends) + ("" if args.no_rec else f" {'rec/fus':>8}")
    print(head)
    rows = []
    for (B, T, H, bi, var), cell in itertools.product(grid, cells):
        torch.manual_seed(0)
        x = torch.randn(T, B, 256, device=device, requires_grad=True)
        lengths = torch.randint(T // 4, T + 1, (B,)) if var else None
        peer = TORCH_PEER[cell](256, H, bidirectional=bi, device=device)
        fns = {"torch": step_torch(peer, x, lengths)}
        for b in backends + ([] if args.no_rec else ["rec"]):
            m = OURS[cell](256, H, bidirectional=bi, device=device, backend="fused" if b == "rec" else VARIANTS.get(b, b))
            m.record_grad_norms(b == "rec")
            fns[b] = step_ours(m, x, lengths, persistent=b != "triton_step", config=configs.get(b))
        row = {"cell": cell, "batch": B, "steps": T, "hidden": H, "bidirectional": bi, "variable": var}
        row.update({f"{k}_ms": v for k, v in bench(device, fns, repeats).items()})
        rows.append(row)
        line = f"{cell:5} {B:4d} {T:4d} {H:4d} {'bi' if bi else 'uni':>3} {'var' if var else 'pad':>4} "
        line += " ".join(f"{row[c + '_ms']:{w[c]}.1f}" for c in cols)
        line += " " + " ".join(f"{row[b + '_ms'] / row['torch_ms']:{w[b + '/t']}.2f}" for b in backends)
        if not args.no_rec:
            line += f" {row['rec_ms'] / row['fused_ms']:8.3f}"
        print(line, flush=True)
        if args.json:  # after every row, so an interrupted run keeps what it measured
            write_json(args.json, device, flushed, cpp, rows, None, configs)

    print("\n# ratio to torch.nn per cell and backend: median row, worst row (targets: CPU fused <= 1.0 median, "
          "<= 1.5 every row; CUDA triton <= 1.5 every row with hidden <= 256)")
    for cell, b in itertools.product(cells, backends):
        r = [row[f"{b}_ms"] / row["torch_ms"] for row in rows if row["cell"] == cell]
        med, worst = statistics.median(r), max(r)
        ok = ""
        if b == "fused" and device.type == "cpu":
            ok = "  PASS" if med <= 1.0 and worst <= 1.5 else "  MISS"
        small = [row[f"{b}_ms"] / row["torch_ms"] for row in rows if row["cell"] == cell and row["hidden"] <= 256]
        if b == "triton" and device.type == "cuda" and small:
            ok = f"  hidden <= 256: worst {max(small):.2f}x " + ("PASS" if max(small) <= 1.5 else "MISS")
        print(f"{cell:5} {b:11} median {med:.2f}x  worst {worst:.2f}x{ok}")
    if not args.no_rec:
        rec = [row["rec_ms"] / row["fused_ms"] for row in rows]
        print(f"grad-norm recording overhead (rec/fused): median {statistics.median(rec):.3f}, worst {max(rec):.3f}")
    e2e = end_to_end(args) if args.e2e else None
    if args.json:
        write_json(args.json, device, flushed, cpp, rows, e2e, configs)


def write_json(path, device, flushed, cpp, rows, e2e, configs):
    meta = {"device": str(device), "threads": torch.get_num_threads(), "denormals_flushed": flushed,
            "fused_cpp_loops": cpp, "torch": torch.__version__}
    if device.type == "cuda":
        import triton
        from rnnlab.nn.backends.triton import persistent as triton_persistent
        meta.update(gpu=torch.cuda.get_device_name(), triton=triton.__version__,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    float32_matmul_precision=torch.get_float32_matmul_precision(),
                    triton_persistent_config=dict(triton_persistent.CONFIG), triton_configs=configs,
                    triton_persistent_failed=dict(triton_persistent.FAILED))
    with open(path, "w") as f:
        json.dump({**meta, "rows": rows, "e2e": e2e}, f, indent=1)


def end_to_end(args):
    """Training-epoch time of `+experiment=bilstm` with rnnlab's LSTM vs torch.nn.LSTM (train.py's EpochTimer,
    validation excluded; flush_denormal is on in both, the config's default), runs interleaved."""
    if not args.archive:
        print("\n# end-to-end skipped: pass --archive or set RNNLAB_IMDB_ARCHIVE")
        return None
    import subprocess
    import tempfile

    limit = "null" if args.e2e < 0 else str(args.e2e)
    times = {"lstm": [], "torch_lstm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep, cell in itertools.product(range(args.e2e_repeats), times):
            out = os.path.join(tmp, f"{cell}-{rep}")
            cmd = [sys.executable, "-m", "rnnlab.train", "+experiment=bilstm", f"model.cell={cell}",
                   f"data.archive={args.archive}", "trainer.max_epochs=1", f"trainer.limit_train_batches={limit}",
                   "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "test=false",
                   f"hydra.run.dir={out}"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(out, "metrics.json")) as f:
                times[cell].append(json.load(f)["epoch_times_s"][0])
    med = {k: statistics.median(v) for k, v in times.items()}
    what = "a whole epoch" if args.e2e < 0 else f"{args.e2e} batches"
    print(f"\n# end-to-end bilstm, {what} of batch 32 (train time, median of {args.e2e_repeats}): "
          f"rnnlab lstm {med['lstm']:.1f} s, torch_lstm {med['torch_lstm']:.1f} s, "
          f"ratio {med['lstm'] / med['torch_lstm']:.2f} (target <= 1.1)")
    return {"batches": args.e2e, "seconds": times, "ratio": med["lstm"] / med["torch_lstm"]}


if __name__ == "__main__":
    main()
