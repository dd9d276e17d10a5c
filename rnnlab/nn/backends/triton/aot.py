"""Compile rnnlab's Triton kernels for a GPU, on a machine without one: ``python -m rnnlab.nn.backends.triton.aot``.

Each cell runs forward and backward through ``backend='triton'`` on small CPU tensors while the kernel launches of
:mod:`rnnlab.nn.backends.triton.persistent` (or, with ``--per-step``, of :class:`rnnlab.nn.backends.triton.step.TritonLoops`) are
recorded instead of run. Every distinct launch (kernel, argument types,
compile-time constants, warps) then goes to ``triton.compile`` for the target (default ``cuda:90``, an H100), and
the cubin's registers, stack (spilled registers) and shared memory are reported. This catches what Triton's interpreter cannot:
kernels that do not compile for the GPU, and register spills. It says nothing about speed or about results on a GPU
(``scripts/gpu_check.sh`` does both where there is one). Needs triton with its NVIDIA backend (its ``ptxas`` and
``cuobjdump`` ship in the wheel).
"""
import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile

import torch

from rnnlab.nn.registry import RNNLAB_CELLS, build_cell

_TYPES = {torch.float32: "*fp32", torch.float64: "*fp64", torch.float16: "*fp16", torch.bfloat16: "*bf16",
          torch.int32: "*i32", torch.int64: "*i64"}


class _Recorder:
    """Stands in for a per-step kernel: ``kernel[grid](*args, **meta)`` records the launch instead of running it."""

    def __init__(self, name, kernel, seen):
        self.name, self.kernel, self.seen = name, kernel, seen

    def __getitem__(self, grid):
        return lambda *args, **meta: _record(self.seen, self.name, self.kernel, args, meta)


def _record(seen, name, kernel, args, meta):
    seen.setdefault((name, tuple(_signature(args)), tuple(sorted(meta.items()))), (name, kernel, args, meta))
    return True


@contextlib.contextmanager
def _recording(config, fp32_precision, per_step):
    """Kernel launches recorded into a dict instead of run: the persistent ones as on a GPU (one launch per loop),
    or with ``per_step`` the per-step kernels of :class:`rnnlab.nn.backends.triton.step.TritonLoops`."""
    from rnnlab.nn.backends.triton import persistent as tp, step

    saved = (tp._launch, tp.interpreting, tp._fp32_precision, tp.CONFIG, tp.ENABLED, step.interpreting,
             dict(step._kernels()))
    seen = {}
    tp._launch = lambda name, grid, args, meta, dtype: _record(seen, name, tp._kernels()[name], args, meta)
    tp.interpreting, tp._fp32_precision = (lambda: False), (lambda device: fp32_precision)
    tp.CONFIG, tp.ENABLED = dict(tp.CONFIG, **config), not per_step
    step.interpreting = lambda: True  # lets backend='triton' take CPU tensors
    step._K.update({name: _Recorder(name, k, seen) for name, k in saved[-1].items() if hasattr(k, "arg_names")})
    try:
        yield seen
    finally:
        tp._launch, tp.interpreting, tp._fp32_precision, tp.CONFIG, tp.ENABLED, step.interpreting = saved[:6]
        step._K.update(saved[-1])


def _signature(args):
    return ["i32" if not isinstance(a, torch.Tensor) else _TYPES[a.dtype] for a in args]


def launches(hidden=128, cells=RNNLAB_CELLS, dtypes=(torch.float32, torch.float64), config=None,
             fp32_precision="tf32x3", per_step=False):
    """The distinct launches of forward + backward for each cell x dtype x (padded, variable lengths), as
    ``(kernel name, kernel, args, meta)``. ``config`` updates the persistent kernels' CONFIG (e.g. ``split_units``);
    ``per_step``: the per-step kernels instead of the persistent ones."""
    with _recording(config or {}, fp32_precision, per_step) as seen:
        for cell in cells:
            for dtype in dtypes:
                for lengths in (None, torch.tensor([5, 2, 4])):
                    m = build_cell(cell, 8, hidden, backend="triton", dtype=dtype).record_grad_norms()
                    out, _ = m(torch.randn(5, 3, 8, dtype=dtype, requires_grad=True), lengths=lengths)
                    out.sum().backward()
    return list(seen.values())


def compile_launch(kernel, args, meta, target="cuda:90"):
    """``triton.compile`` of one recorded launch for ``target`` ("backend:arch", e.g. "cuda:90")."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile

    options = {k: meta[k] for k in ("num_warps", "num_stages") if k in meta}
    consts = {k: v for k, v in meta.items() if k not in options}
    types = dict(zip(kernel.arg_names, _signature(args)))
    signature = {n: "constexpr" if n in consts else types[n] for n in kernel.arg_names}
    backend, arch = target.split(":")
    return compile(ASTSource(kernel, signature, consts), target=GPUTarget(backend, int(arch), 32), options=options)


def resources(compiled):
    """Registers, stack bytes (where spilled registers go) and shared memory of the cubin Triton built, from
    ``cuobjdump --dump-resource-usage`` (shipped with triton's NVIDIA backend)."""
    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        report = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    usage = dict(re.findall(r"(REG|STACK):(\d+)", report))
    return {"regs": int(usage.get("REG", -1)), "stack": int(usage.get("STACK", -1)), "shared": compiled.metadata.shared}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--cells", default=",".join(RNNLAB_CELLS), help=f"comma list of {list(RNNLAB_CELLS)}")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--config", default="", help="persistent-kernel CONFIG overrides, e.g. 'split_units=16,num_warps=8'")
    p.add_argument("--fp32-precision", default="tf32x3", help="what float32 products use (a TF32 GPU at 'highest': tf32x3)")
    p.add_argument("--target", default="cuda:90")
    p.add_argument("--per-step", action="store_true", help="the per-step kernels (hidden > 256, other dtypes)")
    p.add_argument("--no-resources", action="store_true", help="compile only; no register / stack / shared report")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("rnnlab.nn.backends.triton.aot: unset TRITON_INTERPRET (interpreted kernels cannot be compiled for a GPU)")
    from rnnlab.nn.backends.triton.persistent import parse_config

    config = {k: v for k, v in parse_config(args.config).items() if f"{k}=" in args.config}
    cells = args.cells.split(",")
    unknown = [c for c in cells if c not in RNNLAB_CELLS]
    if unknown:
        sys.exit(f"error: `--cells` must be a comma list of {', '.join(RNNLAB_CELLS)}: got {', '.join(unknown)}")
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    recorded = launches(args.hidden, cells, dtypes, config, args.fp32_precision, args.per_step)
    failed = 0
    for name, kernel, kargs, meta in recorded:
        shown = {k: v for k, v in meta.items() if k in ("KIND", "MASKED", "RECORD", "PREC", "U", "num_warps")}
        dtype = next(str(a.dtype).replace("torch.", "") for a in kargs if isinstance(a, torch.Tensor))
        try:
            compiled = compile_launch(kernel, kargs, meta, args.target)
        except Exception as e:  # report every kernel, then fail
            failed += 1
            print(f"FAIL {name:15s} {dtype:8s} {shown}: {type(e).__name__}: {str(e)[:2000]}")
            continue
        res = "" if args.no_resources else " ".join(f"{k}={v}" for k, v in resources(compiled).items())
        print(f"ok   {name:15s} {dtype:8s} {shown} {res}")
    print(f"{len(recorded)} kernels compiled for {args.target} (hidden {args.hidden}), {failed} failed")
    return 1 if failed or not recorded else 0


if __name__ == "__main__":
    sys.exit(main())
