# rnnlab — `make help` lists the targets.
PYTHON ?= python
# A CPU build by default; `make install TORCH=torch` (or a CUDA index) on a GPU machine.
TORCH ?= torch==2.13.0
EXPERIMENT ?= bilstm
# Test processes (pytest-xdist, one test file each at a time): 2 fits the 2-core CI machine; `make test JOBS=8`.
JOBS ?= 2
PYTEST = $(PYTHON) -m pytest -q -n $(JOBS) --dist loadfile --durations=10

.PHONY: help install install-gpu test test-all test-cluster bench triton-aot train sweep tensorboard clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## install rnnlab (editable) with test, sweep, study and cluster extras
	$(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[dev,sweep,study,cluster]"
	$(PYTHON) -m rnnlab.nn.backends.cpp  # build the fused cells' C++ loops once (cached; Python fallback if no compiler)

install-gpu:  ## also install triton for the GPU kernels
	$(PYTHON) -m pip install -e ".[dev,sweep,study,cluster,gpu]"

test:  ## fast test suite (what CI runs); slow and cluster tests excluded
	$(PYTEST) -m "not slow and not slurm"

test-all:  ## every test, slow ones included
	$(PYTEST)

# One process: the cluster's jobs need the cores. Root; installs slurm-wlm, munge and postgresql with apt-get if missing.
test-cluster:  ## the SLURM and PostgreSQL tests, on a one-node cluster this starts and stops (scripts/slurm_local.sh)
	$(PYTHON) -m pytest -q -p no:xdist -m slurm

bench:  ## cell and data benchmarks (ratios against torch.nn / plain Python)
	$(PYTHON) scripts/bench_cells.py --quick
	$(PYTHON) scripts/bench_data.py

triton-aot:  ## compile the Triton kernels for an H100 here, no GPU needed; registers, spills, shared memory
	env -u TRITON_INTERPRET $(PYTHON) -m rnnlab.nn.backends.triton.aot --hidden 256
	env -u TRITON_INTERPRET $(PYTHON) -m rnnlab.nn.backends.triton.aot --hidden 256 --config split_units=16

train:  ## train the main job (EXPERIMENT=bilstm by default)
	$(PYTHON) -m rnnlab.train +experiment=$(EXPERIMENT)

sweep:  ## a named Hydra multirun over depth, bidirectionality and clipping
	$(PYTHON) -m rnnlab.train -m +experiment=$(EXPERIMENT) +sweep=depth_bidir_clip

tensorboard:  ## open TensorBoard on every run under outputs/ and multirun/
	tensorboard --logdir . --port 6006

clean:  ## remove caches (not outputs)
	rm -rf .pytest_cache build *.egg-info
