"""The C++ extensions' life cycle without a working build: a failed compile costs speed, never a crash or a retry loop."""
import hashlib
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from rnnlab.nn.backends.inline_ext import InlineExtension

BROKEN = "#include <rnnlab_no_such_header.h>\nTORCH_LIBRARY(RNNLAB_OPS_NAMESPACE, m) {}\n"  # a fatal error at line 1


def source(folder, text: str, name: str = "src.cpp"):
    path = folder / name
    path.write_text(text)
    return [path]


@pytest.fixture
def broken(tmp_path):
    return source(tmp_path, BROKEN, "broken.cpp")


@pytest.fixture
def ext(tmp_path, monkeypatch, broken):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    return InlineExtension("rnnlab_test", broken, env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                           fallback="the Python fallback")


def test_failed_build_in_wait_mode_warns_once_and_returns_none(ext, monkeypatch):
    monkeypatch.setenv("RNNLAB_TEST_EXT", "wait")
    with pytest.warns(RuntimeWarning, match=r"rnnlab\.test_ext unavailable, using the Python fallback"):
        assert ext.ops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither rebuilds nor warns again
        assert ext.ops() is None


def test_failed_background_build_is_not_retried_by_later_processes(ext, broken, monkeypatch):
    with pytest.raises(Exception):
        ext.main()  # what the background process runs
    assert os.path.exists(os.path.join(ext.build_dir(), "FAILED"))
    later = InlineExtension("rnnlab_test", broken, env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                            fallback="the Python fallback")
    monkeypatch.setenv("RNNLAB_TEST_EXT", "auto")
    assert later.ops() is None and later.state["failed"] and not later.state["started"]


def test_off_means_never(ext, monkeypatch):
    monkeypatch.setenv("RNNLAB_TEST_EXT", "0")
    assert ext.ops() is None and not ext.state["started"]
    assert not os.path.exists(ext.build_dir())


def test_build_folder_is_named_by_the_source(tmp_path):
    a, b = source(tmp_path, "a", "a.cpp"), source(tmp_path, "b", "b.cpp")
    named = lambda src: InlineExtension("x", src, env="E", module="m", fallback="f").name  # noqa: E731
    assert named(a) != named(b) and named(a) == named(source(tmp_path, "a", "a2.cpp"))


def test_compiler_errors_name_the_source_file_and_line(tmp_path, monkeypatch):
    """A source given as a file is compiled from that file: the compiler's message points at its real path and line
    (the extension's TORCH_LIBRARY namespace arrives as -DRNNLAB_OPS_NAMESPACE, not by rewriting the text)."""
    src = tmp_path / "broken.cpp"
    src.write_text("#include <torch/library.h>\n\nint broken( {\n")  # a syntax error on line 3
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("RNNLAB_TEST_EXT", "wait")
    ext = InlineExtension("rnnlab_test", [src], env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                          fallback="the Python fallback")
    with pytest.warns(RuntimeWarning, match=f"{src}:3:") as record:
        assert ext.ops() is None
    assert len(record) == 1


def test_fused_loops_source_ships_as_a_file_next_to_its_loader():
    from rnnlab.nn.backends import cpp

    assert [os.path.basename(p) for p in cpp.SOURCES] == ["fused_loops.cpp"]
    assert all(os.path.isfile(p) for p in cpp.SOURCES)
    assert cpp.EXT.sources == cpp.SOURCES


# A library whose constructor runs when it is loaded (dlopen) and creates the marker file: what a planted library does.
CONSTRUCTOR = '#include <stdio.h>\n__attribute__((constructor)) static void ran(void) { fclose(fopen(MARKER, "w")); }\n'


@pytest.fixture
def planted(tmp_path):
    """A compiled library that creates ``ran.marker`` when it is loaded; and the marker's path."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to compile the planted library")
    marker = tmp_path / "ran.marker"
    (tmp_path / "planted.c").write_text(CONSTRUCTOR)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(tmp_path / "planted.so"),
                    str(tmp_path / "planted.c")], check=True, capture_output=True)
    return tmp_path / "planted.so", marker


def plant(ext, library, ready: str = "") -> Path:
    """Put ``library`` in ``ext``'s build folder as its built library, with a ``READY`` holding ``ready``."""
    folder = Path(ext.build_dir())
    folder.mkdir(parents=True, mode=0o755)
    shutil.copy(library, ext.library())
    (folder / "READY").write_text(ready)
    return folder


@pytest.fixture
def no_background_build(monkeypatch):
    """Records the background builds ``ops()`` would start, instead of starting them."""
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kwargs: started.append(args))
    return started


def test_a_library_planted_in_the_build_folder_is_never_loaded_and_is_built_again(ext, planted, no_background_build):
    library, marker = planted
    folder = plant(ext, library)  # READY without the checksum a build records: what the cache trusted before
    with pytest.warns(RuntimeWarning, match=rf"the build folder {re.escape(str(folder))} has no SHA-256 in READY .*"
                                            r"not loaded; building it again") as record:
        assert ext.ops() is None
    assert len(record) == 1 and not marker.exists()
    assert not os.path.exists(ext.library()) and no_background_build  # removed, and the build started again


def test_a_library_that_differs_from_the_one_its_build_recorded_is_never_loaded(ext, planted, no_background_build):
    library, marker = planted
    plant(ext, library, ready="0" * 64 + f"  {ext.name}.so\n")
    with pytest.warns(RuntimeWarning, match=r"is not the library its build recorded in READY"):
        assert ext.ops() is None
    assert not marker.exists() and no_background_build


def test_a_build_folder_others_can_write_is_refused_even_when_its_checksum_matches(ext, planted, no_background_build):
    library, marker = planted
    folder = plant(ext, library, ready=hashlib.sha256(library.read_bytes()).hexdigest())
    folder.chmod(0o777)  # a shared cache: anyone could have written the library and its READY
    with pytest.warns(RuntimeWarning, match=rf"the build folder {re.escape(str(folder))} must be this user's own and "
                                            r"writable by no one else.*writable by its group and others \(mode 777\)"):
        assert ext.ops() is None
    assert not marker.exists() and not no_background_build and ext.state["failed"]
    assert os.path.exists(ext.library())  # left as it was: not this process's to clean


def test_a_build_folder_of_another_user_is_refused(ext, planted, monkeypatch, no_background_build):
    library, marker = planted
    plant(ext, library, ready=hashlib.sha256(library.read_bytes()).hexdigest())
    monkeypatch.setattr(os, "getuid", lambda: os.stat(ext.build_dir()).st_uid + 1)
    with pytest.warns(RuntimeWarning, match=r"must be this user's own .*: it belongs to user id \d+, not to this user"):
        assert ext.ops() is None
    assert not marker.exists() and not no_background_build


def test_a_build_records_the_checksum_of_its_library_and_that_library_is_loaded(ext, planted, monkeypatch):
    library, marker = planted
    import torch.utils.cpp_extension

    def compile_(name, build_directory, **options):  # what torch's builder leaves: the library in its folder
        shutil.copy(library, os.path.join(build_directory, f"{name}.so"))

    monkeypatch.setattr(torch.utils.cpp_extension, "load", compile_)
    ext.main()
    assert (Path(ext.build_dir()) / "READY").read_text().split()[0] == hashlib.sha256(library.read_bytes()).hexdigest()
    assert not marker.exists()
    later = InlineExtension("rnnlab_test", ext.sources, env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                            fallback="the Python fallback")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert later.ops() is not None
    assert marker.exists()  # the library built here, and only it, was loaded
