"""rnnlab.nn as a drop-in for torch.nn, checked on PyTorch's own module test data.

The installed torch ships ``torch.testing._internal.common_modules.module_db``: for each module, the constructor and
forward arguments PyTorch's ``test/test_modules.py`` runs (``module_inputs_func``), their reference outputs
(``reference_fn``) and the mistakes that must raise, with the exception type (``module_error_inputs_func``). This
script takes the entries of ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and the cells ``nn.LSTMCell``, ``nn.GRUCell``,
``nn.RNNCell``, swaps in rnnlab's class of the same name, and checks, per sample, what those tests check:

===============  ====================================================================================================
check            passes when
===============  ====================================================================================================
``params``       the parameters have torch's names and shapes (torch's ``state_dict`` loads strictly)
``forward``      with torch's weights, every output equals torch's (float64 1e-10, float32 1e-5)
``reference``    the output equals the sample's ``reference_fn`` run on rnnlab's module (unbatched = batched of one)
``grad``         every gradient (inputs and parameters) equals torch's
``gradcheck``    ``torch.autograd.gradcheck`` (float64) through the inputs and parameters
``gradgrad``     ``torch.autograd.gradgradcheck`` (float64): second derivatives
``noncontig``    non-contiguous inputs give the contiguous inputs' outputs
``pickle``       a pickled and unpickled module gives the same outputs
``repr``         ``repr(module)`` equals torch's, but for rnnlab's ``backend`` and ``nonlinearity`` (torch's RNN
                 does not print it)
``error``        a mistake raises an instance of torch's exception type (messages are rnnlab's; the count of
                 messages that also match torch's pattern is printed)
===============  ====================================================================================================

A check counts only where torch.nn itself passes it (the ``reference``, ``gradcheck``, ``gradgrad``, ``noncontig``,
``pickle`` and ``error`` checks run on torch's module too); a failure prints its sample and reason.

    python scripts/dropin_check.py                     # both backends, float64 and float32
    python scripts/dropin_check.py --backends loop --dtypes float64 --modules LSTM

It prints one row per (module, backend) with pass/fail counts and exits 1 if anything failed. Needs ``expecttest``
(torch's test utilities import it; ``pip install -e ".[dev]"``).
"""
from __future__ import annotations

import argparse
import copy
import io
import re
import sys
import warnings
from collections import Counter

import torch
from torch.func import functional_call
from torch.utils._pytree import tree_flatten, tree_map

import rnnlab.nn as rn

MODULES = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]
BACKENDS = ["fused", "loop"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _tensors(tree):
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _fresh(tree):
    """Leaf copies of the sample's tensors (each module gets its own; requires_grad kept)."""
    return tree_map(lambda t: t.detach().clone().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t,
                    tree)


def _close(a, b, tol):
    ta, tb = _tensors(a), _tensors(b)
    return len(ta) == len(tb) and all(x.shape == y.shape and (x - y).abs().max().item() <= tol if x.numel() else
                                      x.shape == y.shape for x, y in zip(ta, tb))


def _build(cls, cinput, backend):
    kwargs = dict(cinput.kwargs)
    if backend is not None:
        kwargs["backend"] = backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(*cinput.args, **kwargs)


def _grads(module, args, kwargs):
    """Outputs, then the gradients of a fixed random weighting of them w.r.t. the inputs and parameters."""
    out = module(*args, **kwargs)
    leaves = [t for t in _tensors((args, kwargs)) if t.requires_grad] + list(module.parameters())
    outs = [t for t in _tensors(out) if t.requires_grad]
    g = torch.Generator().manual_seed(0)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in outs)
    return out, torch.autograd.grad(loss, leaves, allow_unused=True)


def _autograd_check(module, args, kwargs, second: bool) -> bool:
    """gradcheck / gradgradcheck of the module as a function of its differentiable inputs and its parameters."""
    flat, spec = tree_flatten((args, kwargs))
    where = [i for i, t in enumerate(flat) if isinstance(t, torch.Tensor) and t.requires_grad]
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def f(*xs):
        inputs = list(flat)
        for i, x in zip(where, xs[: len(where)]):
            inputs[i] = x
        a, k = spec.unflatten(inputs)
        return tuple(_tensors(functional_call(module, dict(zip(names, xs[len(where):])), a, k)))

    xs = [flat[i].detach().clone().requires_grad_() for i in where] + params
    check = torch.autograd.gradgradcheck if second else torch.autograd.gradcheck
    return check(f, xs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True, raise_exception=False)


def _contiguous_twin(tree):
    """The same values as non-contiguous tensors (every other element of a doubled last dimension)."""
    def nc(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        big = torch.stack([t.detach(), t.detach()], dim=-1).flatten(-2)[..., ::2]
        return big.requires_grad_(t.requires_grad)
    return tree_map(nc, tree)


def _pickled(module):
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)  # a module this process just built


def check_samples(info, ours_cls, backend, dtype, results, failures):
    """The sample checks of one (module, backend, dtype)."""
    float64 = dtype == torch.float64
    for training in (True, False):
        samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)
        for n, sample in enumerate(samples):
            tag = f"sample {n} {'train' if training else 'eval'} {sample.constructor_input.kwargs}"
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs

            def record(check, ok, why=""):
                results[check] += 1 if ok else 0
                results[check + " total"] += 1
                if not ok:
                    failures.append(f"{check:10s} {tag}: {why}")

            torch.manual_seed(0)
            ref = _build(info.module_cls, sample.constructor_input, None).to(dtype).train(training)
            try:
                ours = _build(ours_cls, sample.constructor_input, backend).to(dtype).train(training)
                ours.load_state_dict(ref.state_dict())
                record("params", True)
            except Exception as e:  # noqa: BLE001 - a refused argument or other parameters: this check fails
                record("params", False, f"{type(e).__name__}: {str(e).splitlines()[0]}")
                continue
            ours_repr = re.sub(r", (backend|nonlinearity)='[^']*'", "", repr(ours))  # rnnlab's extras
            record("repr", ours_repr.split("(", 1)[1] == repr(ref).split("(", 1)[1], f"{repr(ours)} != {repr(ref)}")
            ra, rk = _fresh((args, kwargs))
            oa, ok_ = _fresh((args, kwargs))
            try:
                want, want_g = _grads(ref, ra, rk)
                got, got_g = _grads(ours, oa, ok_)
            except Exception as e:  # noqa: BLE001 - any exception is this check's failure, reported
                record("forward", False, f"{type(e).__name__}: {e}")
                continue
            record("forward", _close(got, want, TOL[dtype]), "outputs differ")
            record("grad", _close(got_g, want_g, 100 * TOL[dtype]), "gradients differ")
            if sample.reference_fn is not None:
                with torch.no_grad():
                    ref_out = sample.reference_fn(ours, *_fresh(args), **_fresh(kwargs))
                    torch_ref = sample.reference_fn(ref, *_fresh(args), **_fresh(kwargs))
                if _close(torch_ref, ref(*_fresh(args), **_fresh(kwargs)), TOL[dtype]):
                    record("reference", _close(ref_out, ours(*_fresh(args), **_fresh(kwargs)), TOL[dtype]),
                           "differs from reference_fn")
            with torch.no_grad():
                nc_out = ours(*_contiguous_twin(_fresh(args)), **_contiguous_twin(_fresh(kwargs)))
            record("noncontig", _close(nc_out, got, TOL[dtype]), "non-contiguous inputs give other outputs")
            with torch.no_grad():
                record("pickle", _close(_pickled(ours)(*_fresh(args), **_fresh(kwargs)), got, 0.0), "unpickled differs")
            if float64 and not training:  # gradcheck once per sample (train and eval run the same function here)
                for check, second in (("gradcheck", False), ("gradgrad", True)):
                    if _autograd_check(ref, _fresh(args), _fresh(kwargs), second):
                        record(check, _autograd_check(ours, _fresh(args), _fresh(kwargs), second), "check failed")


def check_errors(info, ours_cls, backend, dtype, results, failures):
    from torch.testing._internal.common_modules import ModuleErrorEnum

    errors = info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=True)
    for n, err in enumerate(errors):
        mi = err.module_error_input
        tag = f"error {n} {mi.constructor_input.args} {mi.constructor_input.kwargs}"

        def raised(cls, be):
            try:
                m = _build(cls, mi.constructor_input, be)
                if err.error_on == ModuleErrorEnum.FORWARD_ERROR:
                    m(*mi.forward_input.args, **mi.forward_input.kwargs)
            except Exception as e:  # noqa: BLE001 - the exception is what is checked
                return e
            return None

        want = raised(info.module_cls, None)
        if not isinstance(want, err.error_type):
            continue  # torch.nn itself does not pass this case
        got = raised(ours_cls, backend)
        ok = isinstance(got, err.error_type)
        results["error"] += ok
        results["error total"] += 1
        results["error message"] += ok and re.search(err.error_regex, str(got)) is not None
        if not ok:
            failures.append(f"{'error':10s} {tag}: expected {err.error_type.__name__}, got "
                            f"{type(got).__name__ if got else 'no exception'}: {got}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=MODULES)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r"LSTM\(proj_size=.*runs on the 'loop' backend")  # once per module
    try:
        from torch.testing._internal.common_modules import module_db
    except ImportError as e:
        print(f"error: torch's module test data needs {e.name}: install it (pip install -e \".[dev]\")",
              file=sys.stderr)
        return 2
    infos = {info.module_cls.__name__: info for info in module_db if info.module_cls.__name__ in args.modules
             and info.module_cls.__module__.startswith("torch.nn")}
    total_fail = 0
    print(f"torch {torch.__version__}; module_db entries: {', '.join(sorted(infos))}")
    print(f"{'module':10s} {'backend':8s} " + " ".join(f"{c:>11s}" for c in CHECKS) + "   passed/total")
    for name in args.modules:
        info, ours_cls = infos[name], getattr(rn, name)
        for backend in (args.backends if not name.endswith("Cell") else [None]):
            results, failures = Counter(), []
            for dtype in (DTYPES[d] for d in args.dtypes):
                check_samples(info, ours_cls, backend, dtype, results, failures)
                check_errors(info, ours_cls, backend, dtype, results, failures)
            passed = sum(results[c] for c in CHECKS)
            total = sum(results[c + " total"] for c in CHECKS)
            cells = " ".join(f"{results[c]:>5d}/{results[c + ' total']:<5d}" for c in CHECKS)
            print(f"{name:10s} {backend or '-':8s} {cells}   {passed}/{total}  "
                  f"(error messages matching torch's pattern: {results['error message']})")
            for f in failures:
                print(f"    FAIL {f}")
            total_fail += total - passed
    print(f"failed: {total_fail}")
    return 1 if total_fail else 0


CHECKS = ["params", "forward", "reference", "grad", "gradcheck", "gradgrad", "noncontig", "pickle", "repr", "error"]

if __name__ == "__main__":
    sys.exit(main())
