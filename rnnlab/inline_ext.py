"""Optional C++ extensions compiled with ``torch.utils.cpp_extension``: built once, cached, never required.

rnnlab has one, :mod:`rnnlab.nn.backends.cpp` (the fused cells' per-step loops, from
``rnnlab/nn/backends/csrc/fused_loops.cpp``); an extension declares its sources and gets this life cycle from
:class:`InlineExtension`:

* a build folder named by the hash of the source, the torch version and the flags, under ``$TORCH_EXTENSIONS_DIR``
  (default ``~/.cache/torch_extensions``), so a changed source never loads a stale library;
* the ``TORCH_LIBRARY`` namespace is that folder's name too, passed as ``-DRNNLAB_OPS_NAMESPACE=<name>`` (the
  sources are compiled as the files they are, so compiler messages name the real file and line);
* ``python -m <module>`` builds ahead of time (``make install`` does, ~15-20 s of CPU each);
* otherwise the first use starts the build in a background process and the caller's Python fallback (same numbers)
  runs until it is ready; a missing compiler leaves the fallback in place: a failed build leaves ``FAILED`` and
  ``build.log`` in the build folder and is not retried by later processes;
* an environment variable chooses: ``auto`` (default), ``wait`` (build in this process on first use, blocking: for
  benchmarks and tests), ``0`` (never).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings

import torch


class InlineExtension:
    """One extension: C++ ``sources`` (paths) compiled with ``-DRNNLAB_OPS_NAMESPACE=<name>``."""

    def __init__(self, prefix: str, sources: list, cflags: list = (), *, env: str, module: str, fallback: str):
        self.sources = [os.fspath(p) for p in sources]
        text = "".join(open(p, encoding="utf-8").read() for p in self.sources)
        digest = hashlib.sha1((text + torch.__version__ + " ".join(cflags)).encode()).hexdigest()[:12]
        self.name = f"{prefix}_{digest}"  # library, op namespace and build folder: one per source version
        self.cflags, self.env, self.module, self.fallback = list(cflags), env, module, fallback
        self.state = {"ops": None, "started": False, "failed": False}

    def build_dir(self) -> str:
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                      "torch_extensions")
        return os.path.join(root, self.name)

    def build(self):
        """Compile (blocking) and load the extension; returns its ``torch.ops`` namespace."""
        from torch.utils.cpp_extension import load

        os.makedirs(self.build_dir(), exist_ok=True)
        load(self.name, sources=self.sources, extra_cflags=[*self.cflags, f"-DRNNLAB_OPS_NAMESPACE={self.name}"],
             is_python_module=False, build_directory=self.build_dir(), verbose=False)
        open(os.path.join(self.build_dir(), "READY"), "w").close()
        return getattr(torch.ops, self.name)

    def ops(self):
        """The ``torch.ops`` namespace if built (starting a background build on the first call), else None."""
        st = self.state
        if st["ops"] is not None or st["failed"]:
            return st["ops"]
        mode = os.environ.get(self.env, "auto")
        if mode in ("0", "off", "false"):
            return None
        folder = self.build_dir()
        try:
            if os.path.exists(os.path.join(folder, "READY")):
                torch.ops.load_library(os.path.join(folder, f"{self.name}.so"))
                st["ops"] = getattr(torch.ops, self.name)
            elif os.path.exists(os.path.join(folder, "FAILED")) and mode != "wait":
                st["failed"] = True  # a background build failed here before: see build.log; do not retry every process
            elif mode == "wait":
                st["ops"] = self.build()
            elif not st["started"]:
                st["started"] = True
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, "build.log"), "w") as log:  # the child keeps its own copy
                    subprocess.Popen([sys.executable, "-m", self.module], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        except Exception as e:  # no compiler, no headers, ...: the fallback gives the same numbers
            st["failed"] = True
            warnings.warn(f"{self.module} unavailable, using {self.fallback}: {e}", RuntimeWarning)
        return st["ops"]

    def main(self):
        """``python -m <module>``: build now (the background build runs this too); a failure leaves ``FAILED``."""
        try:
            self.build()
        except Exception:
            os.makedirs(self.build_dir(), exist_ok=True)
            open(os.path.join(self.build_dir(), "FAILED"), "w").close()
            raise
        print("built", self.build_dir())
