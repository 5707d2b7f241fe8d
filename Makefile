# The README's two commands: `make demo` and `make test`. Both install first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-full test-fast bench clean

install: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/ragpipe run configs/quickstart.yaml
	$(VENV)/bin/ragpipe status configs/quickstart.yaml --json
	$(VENV)/bin/ragpipe search configs/quickstart.yaml "how do I roll back a bad embedding model upgrade?" -k 3
	$(VENV)/bin/ragpipe search configs/quickstart.yaml "如何只处理修改过的文档？" -k 3

test: install
	$(VENV)/bin/pytest -q -ra

# The whole third-party corpus, large files included: several more minutes of embedding.
test-full: install
	RAGPIPE_FULL_CORPUS=1 $(VENV)/bin/pytest -q -ra

test-fast: install
	$(VENV)/bin/pytest -q -ra -m "not slow"

bench: install
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf .ragpipe .pytest_cache
