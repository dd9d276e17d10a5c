"""The C++ extensions' life cycle without a working build: a failed compile costs speed, never a crash or a retry loop."""
import os
import warnings

import pytest

from rnnlab.inline_ext import InlineExtension

BROKEN = "#include <rnnlab_no_such_header.h>\nTORCH_LIBRARY(NAMESPACE, m) {}\n"  # a fatal error at line 1


@pytest.fixture
def ext(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    return InlineExtension("rnnlab_test", BROKEN, [], env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                           fallback="the Python fallback")


def test_failed_build_in_wait_mode_warns_once_and_returns_none(ext, monkeypatch):
    monkeypatch.setenv("RNNLAB_TEST_EXT", "wait")
    with pytest.warns(RuntimeWarning, match=r"rnnlab\.test_ext unavailable, using the Python fallback"):
        assert ext.ops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither rebuilds nor warns again
        assert ext.ops() is None


def test_failed_background_build_is_not_retried_by_later_processes(ext, monkeypatch):
    with pytest.raises(Exception):
        ext.main()  # what the background process runs
    assert os.path.exists(os.path.join(ext.build_dir(), "FAILED"))
    later = InlineExtension("rnnlab_test", BROKEN, [], env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                            fallback="the Python fallback")
    monkeypatch.setenv("RNNLAB_TEST_EXT", "auto")
    assert later.ops() is None and later.state["failed"] and not later.state["started"]


def test_off_means_never(ext, monkeypatch):
    monkeypatch.setenv("RNNLAB_TEST_EXT", "0")
    assert ext.ops() is None and not ext.state["started"]
    assert not os.path.exists(ext.build_dir())


def test_build_folder_is_named_by_the_source():
    a = InlineExtension("x", "a", [], env="E", module="m", fallback="f")
    b = InlineExtension("x", "b", [], env="E", module="m", fallback="f")
    assert a.name != b.name and a.name == InlineExtension("x", "a", [], env="E", module="m", fallback="f").name


def test_compiler_errors_name_the_source_file_and_line(tmp_path, monkeypatch):
    """A source given as a file is compiled from that file: the compiler's message points at its real path and line
    (the extension's TORCH_LIBRARY namespace arrives as -DRNNLAB_OPS_NAMESPACE, not by rewriting the text)."""
    src = tmp_path / "broken.cpp"
    src.write_text("#include <torch/library.h>\n\nint broken( {\n")  # a syntax error on line 3
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("RNNLAB_TEST_EXT", "wait")
    ext = InlineExtension("rnnlab_test", sources=[src], env="RNNLAB_TEST_EXT", module="rnnlab.test_ext",
                          fallback="the Python fallback")
    with pytest.warns(RuntimeWarning, match=f"{src}:3:") as record:
        assert ext.ops() is None
    assert len(record) == 1


def test_an_extension_takes_a_source_string_or_files_not_both(tmp_path):
    with pytest.raises(ValueError, match="exactly one of `source`"):
        InlineExtension("x", "a", sources=[tmp_path / "a.cpp"], env="E", module="m", fallback="f")
    with pytest.raises(ValueError, match="exactly one of `source`"):
        InlineExtension("x", env="E", module="m", fallback="f")


def test_fused_loops_source_ships_as_a_file_next_to_its_loader():
    from rnnlab.nn.backends import cpp

    assert [os.path.basename(p) for p in cpp.SOURCES] == ["fused_loops.cpp"]
    assert all(os.path.isfile(p) for p in cpp.SOURCES)
    assert cpp.EXT.source is None and cpp.EXT.sources == cpp.SOURCES
