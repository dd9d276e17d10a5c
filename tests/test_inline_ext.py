"""The C++ extensions' life cycle without a working build: a failed compile costs speed, never a crash or a retry loop."""
import os
import warnings

import pytest

from rnnlab.inline_ext import InlineExtension

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
