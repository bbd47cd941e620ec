# `make demo` and `make test` work on a fresh clone with only Python 3.11 present.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU wheel of torch (on disk on our machines); GPU users: see README "Installation".
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,faces]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/structvid demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -x tests

bench: $(STAMP)
	$(VENV)/bin/structvid bench forecast

clean:
	rm -rf $(VENV) demo_out .pytest_cache
