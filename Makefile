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
	$(PY) -m pip install -q -e '.[test,faces,app]'
	touch $(STAMP)

install: $(STAMP)

# The face path's 3DMM: the shared Surrey Face Model when present (offline machines), else downloaded once.
SFM := $(wildcard ../shared/data/sfm)
FACE_ENV := $(if $(SFM),STRUCTVID_SFM_DIR=$(abspath $(SFM)),)

demo: $(STAMP)
	$(VENV)/bin/structvid demo --out demo_out
	$(FACE_ENV) $(VENV)/bin/structvid demo --task face --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -x tests

bench: $(STAMP)
	$(VENV)/bin/structvid bench forecast

clean:
	rm -rf $(VENV) demo_out .pytest_cache
