import os
import subprocess
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run under Triton's CPU interpreter. The switch must be set before anything imports
# triton (lightning does, through torch), since triton reads it then: here, before any test module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and OpenMP threads spin badly on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["python", "cpp"])
def loops(request, monkeypatch):
    """Both implementations of the fused backend's per-step loops: the Python one and the C++ extension."""
    from rnnlab.nn.backends import cpp, fused

    impl = fused.PythonLoops
    if request.param == "cpp":
        monkeypatch.setenv("RNNLAB_FUSED_EXT", "wait")  # build now (once per source version, cached)
        impl = cpp.loops()
        if impl is None:
            pytest.skip("the C++ extension could not be built here (no compiler?)")
    monkeypatch.setattr(fused, "loops", lambda: impl)
    return impl


@pytest.fixture
def no_data_env(monkeypatch):
    """CI sets RNNLAB_IMDB_ARCHIVE / RNNLAB_DATA; tests that choose the archive and cache explicitly unset them."""
    from rnnlab.data import imdb

    monkeypatch.delenv(imdb.ENV_ARCHIVE, raising=False)
    monkeypatch.delenv(imdb.ENV_ROOT, raising=False)


@pytest.fixture(scope="session")
def text_ckpt(tmp_path_factory):
    """The last checkpoint of a one-epoch run on a tiny neg/pos folder dataset (a text classifier's)."""
    from helpers import make_text_folder
    from hydra import compose, initialize_config_module

    import rnnlab.conf  # noqa: F401
    from rnnlab.train import train

    tmp = tmp_path_factory.mktemp("text_run")
    root = make_text_folder(tmp / "texts", n_per_class=12)
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=folder", f"data.train_dir={root}", f"data.root={tmp / 'cache'}", "data.batch_size=8",
            "model=torch_gru", "model.embedding_dim=8", "model.hidden_size=4", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", f"output_dir={tmp / 'run'}"])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg)
    finally:
        torch.set_num_threads(n)
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def slurm_cluster():
    """The one-node SLURM cluster and PostgreSQL server of ``scripts/slurm_local.sh``, started once for the test run
    and stopped after it: ``{"SLURM_CONF": ..., "RNNLAB_PG_URL": ...}``, also set in ``os.environ`` meanwhile (so
    the subprocesses of a test see them). Skips, with the script's one-line reason, where it cannot start (not root,
    packages missing and no apt-get or no network to the package mirror)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"
    start = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
    reason = next((line for line in start.stderr.splitlines() if line.startswith("skip: ")), None)
    if start.returncode == 3 and reason:
        pytest.skip(reason[len("skip: "):])
    assert start.returncode == 0, f"scripts/slurm_local.sh start failed:\n{start.stderr[-3000:]}"
    folder = Path(start.stdout.strip().splitlines()[-1])
    env = dict(line.removeprefix("export ").split("=", 1) for line in (folder / "env").read_text().splitlines())
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(["bash", str(script), "stop", str(folder)], timeout=300, check=True)


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_archive = bool(os.environ.get("RNNLAB_IMDB_ARCHIVE"))
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))
        if "imdb" in item.keywords and not has_archive:
            item.add_marker(pytest.mark.skip(reason="set RNNLAB_IMDB_ARCHIVE to the labeled IMDB archive"))
