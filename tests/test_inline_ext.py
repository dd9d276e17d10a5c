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
