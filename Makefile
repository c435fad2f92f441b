# The README's two commands: `make book` (the main job) and `make test` (the tests).
# Both create .venv when it is missing and install the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test book data benchmark chapters ci-book book-check study study-regime study-cpu reproduce clean-book

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch>=2.14 in pyproject.toml keeps pip off the CPU-only 2.13 wheel that breaks torchvision.
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# animal-mnist ships the 10,000 animal silhouettes of the near-OOD set `animals`; its declared
	# dependencies include TensorFlow, which its data file does not need, so it goes in without them.
	$(BIN)/python -m pip install --quiet --no-deps "animal-mnist==0.4"
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	@touch $(STAMP)

install: $(STAMP)

# The suite on TEST_WORKERS processes (pytest-xdist; each computes on one thread, tests/conftest.py);
# TEST_WORKERS=0 runs it in one process. worksteal: an idle worker takes queued tests from a busy one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# Fashion-MNIST: found locally, else Debian's dataset-fashion-mnist, else torchvision's download.
data: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/ensure-data.sh fashion_mnist

# The benchmark page's figure and table, from the real data.
benchmark: data
	$(BIN)/python -m moon benchmark --out book/results/benchmark

# The main job: a fresh run of notebooks/ood_eval.ipynb with its defaults (and the DICE theory
# chapter, which reads that run), then the book with the committed chapters and results.
book: benchmark
	$(BIN)/python scripts/run_chapters.py --only ood_eval theory_dice_variance
	$(BIN)/jupyter-book build -W -n --keep-going book/
	@echo "Open book/_build/html/index.html"

# Re-execute every chapter: each template with its own default preset, showing the committed
# studies as they ran (book/results/paper, ablation-cpu; the regime chapter also full-cpu) and
# never training their missing cells; with PRESET (e.g. smoke) every chapter runs what it needs.
PRESET ?=
chapters: data
	$(BIN)/python scripts/run_chapters.py $(if $(PRESET),--preset $(PRESET))

# CI: every template with the smoke preset (runs in a temporary folder), then the book with
# warnings as errors. Overwrites book/chapters/ (git checkout book/chapters restores them).
SMOKE_RESULTS ?= $(CURDIR)/.smoke-results
ci-book: benchmark
	$(BIN)/python scripts/run_chapters.py --preset smoke --results $(SMOKE_RESULTS)
	$(BIN)/jupyter-book build -W -n --keep-going book/

# Check the built book like a reader: every page of book/_build/html in headless Chromium (broken
# images, error or stderr cell outputs, tracebacks; the intro's headline figure above the fold),
# screenshots in book/_build/check. Builds nothing: run `make book` or `make ci-book` first.
# Needs Debian's chromium and chromium-driver (sudo apt-get install -y chromium chromium-driver).
book-check:
	$(BIN)/python scripts/book_check.py

# The paper-length study (studies/paper.yaml, the `paper` preset: 100 epochs on all images; the MLP
# grid with 5 seeds, LeNet-5 with 3, the alpha sweep: 112 runs, about 5 hours on a 2-core CPU),
# resumable: a killed study continues where it stopped. WORKERS and ENGINE=ray scale it;
# STUDY_OUT=/tmp/again runs it afresh elsewhere (finished cells of a folder are skipped).
STUDY_OUT ?= book/results
WORKERS ?= 2
ENGINE ?= local
study: data
	$(BIN)/python -m moon sweep paper --preset paper --via run --workers $(WORKERS) --engine $(ENGINE) --out $(STUDY_OUT)/paper

# The regime study (studies/regime.yaml; the `paper` schedule): its pilot (one seed, which decided
# n = 2,500 and the parts arm's n by rules declared before it ran), the data-size arm and the parts
# arm (n = 2,500, 5,000, 15,000: 350 runs, about 2.5 hours with two workers), then the capacity arm
# (a 784-1024-1024 MLP on all images: 12 runs; its RigL cells train on CSR kernels, kernel=csr,
# about 3x faster than masked at this width; the dense cells have no mask and stay dense, hours
# each). Resumable.
REGIME = $(BIN)/python -m moon sweep regime --preset paper --via run --workers $(WORKERS) --engine $(ENGINE) --out $(STUDY_OUT)/regime
study-regime: data
	$(BIN)/python -m moon sweep regime-pilot --preset paper --via run --workers $(WORKERS) --engine $(ENGINE) --out $(STUDY_OUT)/regime-pilot
	$(REGIME) --only max_train_samples=2500,5000,15000
	$(REGIME) --only max_train_samples=0 --only method=rigl kernel=csr
	$(REGIME) --only max_train_samples=0 --only method=dense

# The short-schedule arm (10 epochs on 15,000 images): the full study and the ablation, cpu preset.
study-cpu: data
	$(BIN)/python -m moon sweep full --preset cpu --workers $(WORKERS) --engine $(ENGINE) --out $(STUDY_OUT)/full-cpu
	$(BIN)/python -m moon sweep ablation --preset cpu --workers $(WORKERS) --engine $(ENGINE) --out $(STUDY_OUT)/ablation-cpu

# Retrain CELLS of the committed runs of REPRODUCE (spread over the grid), compare every metric.
CELLS ?= 3
REPRODUCE ?= book/results/paper
reproduce: data
	$(BIN)/python -m moon reproduce $(REPRODUCE) --cells $(CELLS)

clean-book:
	rm -rf book/_build
