import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_archive = bool(os.environ.get("RNNLAB_IMDB_ARCHIVE"))
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))
        if "imdb" in item.keywords and not has_archive:
            item.add_marker(pytest.mark.skip(reason="set RNNLAB_IMDB_ARCHIVE to the labeled IMDB archive"))
