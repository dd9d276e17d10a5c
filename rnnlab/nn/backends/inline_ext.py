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
  benchmarks and tests), ``0`` (never);
* what is loaded is what was built (the folder's name is predictable, and ``$TORCH_EXTENSIONS_DIR`` may be a shared
  folder): the build folder must belong to the user and be writable by no one else, or nothing in it is loaded (a
  warning names it, and the fallback runs); ``READY`` records the SHA-256 of the library the build made, and a
  library that does not match it is not loaded: it is removed with ``READY`` and built again, with a warning.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import warnings

import torch

from rnnlab.security import UntrustedFile, private_folder_problem, sha256_file, write_atomic


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

    def library(self) -> str:
        """The path of the built library in :meth:`build_dir`."""
        return os.path.join(self.build_dir(), f"{self.name}.so")

    def _private_build_dir(self) -> str:
        """:meth:`build_dir`, created if missing (``rwxr-xr-x``); an :class:`~rnnlab.security.UntrustedFile` error if
        it belongs to another user or others can write it (anything in it may have been put there by them)."""
        folder = self.build_dir()
        os.makedirs(folder, mode=0o755, exist_ok=True)  # 0o755 whatever the umask: never group/other-writable
        problem = private_folder_problem(folder)
        if problem:
            raise UntrustedFile(f"the build folder {folder} must be this user's own and writable by no one else, "
                                f"since its library is loaded into this process: {problem}. Remove it, or set "
                                f"TORCH_EXTENSIONS_DIR to a folder of your own")
        return folder

    def build(self):
        """Compile (blocking) and load the extension; returns its ``torch.ops`` namespace. ``READY`` records the
        SHA-256 of the library built."""
        from torch.utils.cpp_extension import load

        folder = self._private_build_dir()  # before torch's loader, which loads a library it finds up to date
        load(self.name, sources=self.sources, extra_cflags=[*self.cflags, f"-DRNNLAB_OPS_NAMESPACE={self.name}"],
             is_python_module=False, build_directory=folder, verbose=False)
        digest = sha256_file(self.library())
        write_atomic(os.path.join(folder, "READY"), lambda f: f.write(f"{digest}  {self.name}.so\n".encode()))
        return getattr(torch.ops, self.name)

    def _unbuilt(self, folder: str) -> str | None:
        """None if the folder's library is the one its build recorded in ``READY``; otherwise what is wrong."""
        with open(os.path.join(folder, "READY"), errors="replace") as f:
            recorded = f.read().split(" ")[0].strip()
        if not recorded:
            return "has no SHA-256 in READY (built by an earlier rnnlab, or planted)"
        if not os.path.exists(self.library()):
            return f"lacks {self.name}.so"
        if sha256_file(self.library()) != recorded:
            return f"holds a {self.name}.so that is not the library its build recorded in READY (SHA-256)"
        return None

    def ops(self):
        """The ``torch.ops`` namespace if built (starting a background build on the first call), else None."""
        st = self.state
        if st["ops"] is not None or st["failed"]:
            return st["ops"]
        mode = os.environ.get(self.env, "auto")
        if mode in ("0", "off", "false"):
            return None
        try:
            folder = self._private_build_dir()
            ready = os.path.exists(os.path.join(folder, "READY"))
            wrong = self._unbuilt(folder) if ready else None
            if wrong:  # never loaded: removed with its READY, and built again (in a private folder: only relinked)
                warnings.warn(f"{self.module}: the build folder {folder} {wrong}: not loaded; building it again "
                              f"(until then, {self.fallback})", RuntimeWarning)
                for name in ("READY", f"{self.name}.so"):
                    with contextlib.suppress(FileNotFoundError):  # another process may have removed it first
                        os.remove(os.path.join(folder, name))
                ready = False
            if ready:
                torch.ops.load_library(self.library())
                st["ops"] = getattr(torch.ops, self.name)
            elif os.path.exists(os.path.join(folder, "FAILED")) and mode != "wait":
                st["failed"] = True  # a background build failed here before: see build.log; do not retry every process
            elif mode == "wait":
                st["ops"] = self.build()
            elif not st["started"]:
                st["started"] = True
                with open(os.path.join(folder, "build.log"), "w") as log:  # the child keeps its own copy
                    subprocess.Popen([sys.executable, "-m", self.module], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        except Exception as e:  # no compiler, no headers, a shared build folder: the fallback gives the same numbers
            st["failed"] = True
            warnings.warn(f"{self.module} unavailable, using {self.fallback}: {e}", RuntimeWarning)
        return st["ops"]

    def main(self):
        """``python -m <module>``: build now (the background build runs this too); a failure leaves ``FAILED``."""
        try:
            self.build()
        except Exception as e:
            if not isinstance(e, UntrustedFile):  # nothing is written in a folder that is not the user's own
                os.makedirs(self.build_dir(), mode=0o755, exist_ok=True)
                open(os.path.join(self.build_dir(), "FAILED"), "w").close()
            raise
        print("built", self.build_dir())
