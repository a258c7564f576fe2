# tvmc-mobilenet: set up, build a verified MobileNet for this host, test, benchmark.
#   make demo    set up and build + verify + time MobileNet v1 1.0-224 for this host
#   make test    set up (system packages included) and run the whole test suite
#   make bench   untuned TVM vs PyTorch vs ONNX Runtime, JSON in benchmarks/results/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-packages demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first (on this machine's disk); a plain "torch" would pull CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(STAMP)

system-packages:
	./scripts/install-system-packages.sh

demo: setup
	$(BIN)/tvmc-mobilenet build --alpha 1.0 --resolution 224 -o mobilenet_v1_1_224-host.tar
	$(BIN)/tvmc-mobilenet bench mobilenet_v1_1_224-host.tar

test: setup system-packages
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/untuned_vs_peers.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache mobilenet_v1_*.tar
