# `make demo` and `make test` each set up .venv by themselves on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfedge-installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Train a small MobileNetV2 on the embedded digits data, quantize it to int8,
# check it on the TFLM interpreter and write the artifacts to out/.
demo: $(STAMP)
	$(BIN)/tfedge compress --model=mobilenet_v2 --width=0.35 --dataset=digits \
	    --input_size=32 --epochs=30 --output_dir=out

# One worker per core (TensorFlow's tracing and tfmot's graph rewrites are single-threaded).
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses=4

clean:
	rm -rf $(VENV) out build dist *.egg-info
