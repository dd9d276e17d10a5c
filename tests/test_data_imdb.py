"""IMDB: local archive, download via pooch (against a local http.server), atomic extraction, bad input."""

import functools
import hashlib
import http.server
import os
import tempfile
import threading

import numpy as np
import pytest

from helpers import make_imdb_archive
from rnnlab.data import imdb


pytestmark = pytest.mark.usefixtures("no_data_env")


@pytest.fixture
def server(tmp_path):
    """An http.server on 127.0.0.1 (free port) serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_local_archive_is_extracted_and_read_with_labels_and_ratings(tmp_path):
    archive = make_imdb_archive(tmp_path / "a.tar.gz", n_per_class=5, unsup=3)
    prep = imdb.prepare(tmp_path / "cache", archive)
    assert prep.folder == tmp_path / "cache" / "imdb" / prep.fingerprint / "aclImdb"
    assert not (prep.folder / "train" / "unsup").exists()
    for split in ("train", "test"):
        r = imdb.read_split(prep.folder, split)
        assert len(r) == 10 and r.class_names == ["neg", "pos"]
        assert r.labels.tolist() == [0] * 5 + [1] * 5
        assert np.all(r.ratings[r.labels == 0] <= 4) and np.all(r.ratings[r.labels == 1] >= 7)
        assert all(p.endswith(f"_{rt}.txt") for p, rt in zip(r.paths, r.ratings))


def test_env_variables_choose_archive_and_root(tmp_path, monkeypatch):
    archive = make_imdb_archive(tmp_path / "a.tar.gz", n_per_class=2)
    monkeypatch.setenv(imdb.ENV_ARCHIVE, str(archive))
    monkeypatch.setenv(imdb.ENV_ROOT, str(tmp_path / "envroot"))
    prep = imdb.prepare()
    assert prep.folder.is_relative_to(tmp_path / "envroot")
    assert imdb.data_root("explicit") == imdb.Path("explicit")  # the argument wins over the env


def test_missing_archive_names_the_path_and_both_ways_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        imdb.prepare(tmp_path, tmp_path / "nope.tar.gz")
    msg = str(e.value)
    assert str(tmp_path / "nope.tar.gz") in msg
    assert imdb.IMDB_URL in msg and "RNNLAB_IMDB_ARCHIVE" in msg and "data.archive" in msg


@pytest.mark.parametrize("layout, problem", [
    (dict(splits=("train",)), "aclImdb/test/neg/ has no .txt file"),
    (dict(classes=("pos",)), "aclImdb/train/neg/ has no .txt file"),
    (dict(empty=[("test", "pos")]), "aclImdb/test/pos/ has no .txt file"),
    (dict(top=""), "aclImdb/train/neg/ has no .txt file"),
])
def test_wrong_layout_is_rejected_and_nothing_is_left_behind(tmp_path, layout, problem):
    archive = make_imdb_archive(tmp_path / "bad.tar.gz", n_per_class=2, **layout)
    with pytest.raises(imdb.LayoutError, match="does not have the IMDB layout") as e:
        imdb.prepare(tmp_path / "cache", archive)
    assert problem in str(e.value)
    dest = next((tmp_path / "cache" / "imdb").iterdir())
    assert list(dest.iterdir()) == []  # no half dataset, no temporary folder


def test_interrupted_extraction_is_not_trusted(tmp_path):
    """A folder without the completion marker (a run killed mid-rename) is replaced by a full extraction."""
    archive = make_imdb_archive(tmp_path / "a.tar.gz", n_per_class=3)
    prep = imdb.prepare(tmp_path / "cache", archive)
    (prep.folder / ".rnnlab-complete").unlink()
    for f in list((prep.folder / "test" / "pos").iterdir())[1:]:
        f.unlink()
    (prep.folder.parent / ".extract-leftover").mkdir()  # a killed run's temporary folder
    os.rename(prep.folder, prep.folder.parent / "aclImdb")
    again = imdb.prepare(tmp_path / "cache", archive)
    assert len(imdb.read_split(again.folder, "test")) == 6


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path, caplog):
    texts = {"neg": [b"bad \xff\xfe byte", "fine"], "pos": ["good", b"caf\xe9"]}
    archive = make_imdb_archive(tmp_path / "a.tar.gz", texts=texts)
    prep = imdb.prepare(tmp_path / "cache", archive)
    r = imdb.read_split(prep.folder, "train")
    assert r.n_replaced_files == 2
    assert "bad \ufffd\ufffd byte" in r.texts and "caf\ufffd" in r.texts
    assert "2 of 4 files" in caplog.text


def test_download_with_pooch_from_a_local_server(tmp_path, server):
    www, url = server
    archive = make_imdb_archive(www / "aclImdb_v1.tar.gz", n_per_class=3)
    root, known = tmp_path / "cache", f"md5:{md5(archive)}"
    prep = imdb.prepare(root, url=f"{url}/aclImdb_v1.tar.gz", known_hash=known, progressbar=False)
    assert (root / imdb.ARCHIVE_NAME).read_bytes() == archive.read_bytes()
    assert len(imdb.read_split(prep.folder, "train")) == 6
    (www / "aclImdb_v1.tar.gz").unlink()  # a second run uses the cache and needs no server
    assert imdb.prepare(root, url=f"{url}/aclImdb_v1.tar.gz", known_hash=known).folder == prep.folder


def test_no_network_or_an_http_error_names_the_url_and_the_local_archive_option(tmp_path, server):
    www, url = server
    root = tmp_path / "cache"
    with pytest.raises(imdb.DownloadError, match=r"could not download .*/missing\.tar\.gz \(the server answered HTTP "
                                                 r"404\); nothing was written\. Get the data one of two ways"):
        imdb.prepare(root, url=f"{url}/missing.tar.gz", known_hash=None, progressbar=False)
    closed = url.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens on 127.0.0.1 there
    with pytest.raises(imdb.DownloadError, match=r"\(ConnectionError: no network, or a proxy\).*RNNLAB_IMDB_ARCHIVE"):
        imdb.prepare(root, url=f"{closed}/aclImdb_v1.tar.gz", known_hash=None, progressbar=False)
    assert not list(root.rglob("*.tar.gz"))


@pytest.mark.parametrize("corruption", ["truncated", "flipped"])
def test_corrupt_download_raises_checksum_error_removes_it_and_touches_nothing_else(tmp_path, server, corruption):
    www, url = server
    good = make_imdb_archive(tmp_path / "good.tar.gz", n_per_class=3)
    data = good.read_bytes()
    data = data[: len(data) // 2] if corruption == "truncated" else data[:100] + bytes([data[100] ^ 1]) + data[101:]
    (www / "aclImdb_v1.tar.gz").write_bytes(data)
    root = tmp_path / "cache"
    (root / "other").mkdir(parents=True)
    (root / "other" / "keep.txt").write_text("user data")
    (root / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(imdb.ChecksumError, match=f"expected md5:{md5(good)}"):
        imdb.prepare(root, url=f"{url}/aclImdb_v1.tar.gz", known_hash=f"md5:{md5(good)}", progressbar=False)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # bad file gone, every other file as it was
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "other"]


IMDB_ARCHIVE = os.environ.get(imdb.ENV_ARCHIVE)
# Shared by the imdb-marked tests (extraction is keyed by the archive's hash and atomic, so reuse is safe).
IMDB_ROOT = os.environ.get(imdb.ENV_ROOT) or os.path.join(tempfile.gettempdir(), "rnnlab-imdb-tests")


@pytest.mark.imdb
def test_real_archive_counts_and_balance():
    prep = imdb.prepare(IMDB_ROOT, IMDB_ARCHIVE)
    for split in ("train", "test"):
        r = imdb.read_split(prep.folder, split)
        assert len(r) == 25_000
        assert np.bincount(r.labels).tolist() == [12_500, 12_500]
        assert set(r.ratings[r.labels == 0]) <= {1, 2, 3, 4} and set(r.ratings[r.labels == 1]) <= {7, 8, 9, 10}


@pytest.mark.parametrize("kind, problem", [
    ("truncated", r"it ends before the archive does \([\d,]+ bytes\): truncated"),
    ("text", r"it is not a gzip-compressed tar archive \(it starts with b'<html>"),
    ("empty", r"it is empty \(0 bytes\)"),
    ("gzip of no tar", r"it is corrupt"),
])
def test_an_unreadable_archive_is_named_with_what_is_wrong_and_the_cache_is_untouched(tmp_path, kind, problem):
    import gzip

    good = make_imdb_archive(tmp_path / "good.tar.gz", n_per_class=30)
    root = tmp_path / "cache"
    prep = imdb.prepare(root, good)  # an earlier, complete extraction
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    data = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "text": b"<html>404 Not Found</html>\n",
            "empty": b"", "gzip of no tar": gzip.compress(b"not a tar archive " * 100)}[kind]
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(data)
    with pytest.raises(imdb.ArchiveError, match=rf"IMDB archive {bad} cannot be read: {problem}.*get a complete copy"):
        imdb.prepare(root, bad)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing written, nothing corrupted
    assert len(imdb.read_split(prep.folder, "train")) == 60


def test_a_directory_given_as_the_archive_is_named_as_a_directory(tmp_path):
    folder = tmp_path / "aclImdb"
    folder.mkdir()
    with pytest.raises(imdb.ArchiveError, match=rf"IMDB archive {folder} is a directory: expected the \.tar\.gz file"):
        imdb.prepare(tmp_path / "cache", folder)
