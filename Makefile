# kmemdes: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench reports clean validate lab fuzz

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/kmemdes demo

test: $(STAMP)
	@$(PY) -m pytest kmemdes tests

# 10,000 corrupted versions of the shipped traces through `kmemdes replay` (tests/_fuzz.py);
# fails on any internal error, traceback or hang (README: "Reliability")
fuzz: $(STAMP)
	@$(PY) -m tests._fuzz --count $(or $(FUZZ_COUNT),10000) --seed $(or $(FUZZ_SEED),1)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Published reports: per experiments/*.toml an HTML report (a comparison when the config has a
# "# sweep:" line) and its Markdown tables, the shipped compile trace replayed (mirror mode),
# and reports/screenshot.png of that report when a headless browser is installed.
# Run directories go to runs/reports/ (not committed; a sweep's folder is made anew, since a sweep
# skips runs it already has and the models may have changed since); the HTML files to reports/.
RUNS_REPORTS := runs/reports
BROWSER = $(firstword $(foreach b,chromium chromium-browser google-chrome,$(shell command -v $(b) 2>/dev/null)))

reports: $(STAMP)
	@mkdir -p $(RUNS_REPORTS) reports
	@for cfg in experiments/*.toml; do \
	  [ -e "$$cfg" ] || continue; \
	  name=$$(basename "$$cfg" .toml); \
	  sweep=$$(sed -n 's/^# sweep: *//p' "$$cfg" | head -1); \
	  if [ -n "$$sweep" ]; then \
	    sets=""; for s in $$sweep; do sets="$$sets --set $$s"; done; \
	    echo "experiment $$name: sweep$$sets"; \
	    rm -rf $(RUNS_REPORTS)/$$name; \
	    $(VENV)/bin/kmemdes sweep "$$cfg" $$sets -o $(RUNS_REPORTS)/$$name >/dev/null || exit 1; \
	    cp $(RUNS_REPORTS)/$$name/compare.html reports/$$name.html; \
	    $(VENV)/bin/kmemdes compare $$(ls -d $(RUNS_REPORTS)/$$name/*/) --format md -o reports/$$name.md --force || exit 1; \
	  else \
	    echo "experiment $$name: run"; \
	    $(VENV)/bin/kmemdes run "$$cfg" -o $(RUNS_REPORTS)/$$name --force >/dev/null || exit 1; \
	    $(VENV)/bin/kmemdes report $(RUNS_REPORTS)/$$name -o reports/$$name.html --force || exit 1; \
	    $(VENV)/bin/kmemdes compare $(RUNS_REPORTS)/$$name --format md -o reports/$$name.md --force || exit 1; \
	  fi; \
	done
	@$(VENV)/bin/kmemdes replay traces/b_compile_head -o $(RUNS_REPORTS)/compile-mirror --force >/dev/null
	@$(VENV)/bin/kmemdes report $(RUNS_REPORTS)/compile-mirror -o reports/compile-mirror.html --force
	@shot=reports/compile-mirror.html; \
	if [ -n "$(BROWSER)" ]; then \
	  tmp=$$(mktemp -d); \
	  "$(BROWSER)" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	    --disable-sync --no-first-run --hide-scrollbars --user-data-dir=$$tmp --virtual-time-budget=10000 \
	    --window-size=1400,2000 --screenshot=reports/screenshot.png "file://$(CURDIR)/$$shot" 2>/dev/null; \
	  rm -rf $$tmp; echo "reports/screenshot.png: $$shot"; \
	else echo "no chromium/google-chrome on PATH: reports/screenshot.png not updated"; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Live validation: capture a short built-in workload on this kernel, replay it, compare (needs root + tracefs).
validate: $(STAMP)
	@if [ "$$(id -u)" != 0 ] || ! grep -qw tracefs /proc/filesystems; then \
		echo "make validate: skipped (needs root and a kernel with tracefs)"; exit 0; fi; \
	tmp=$$(mktemp -d); printf 'int f(int x){return x*x;}\n' > $$tmp/x.c; \
	$(VENV)/bin/kmemdes validate --live -- sh -c "for i in 1 2 3 4 5; do cc -O2 -c $$tmp/x.c -o $$tmp/x.o; done"; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# Lab runs on this machine's real kernel (root): every experiments/*.toml with a [lab] table, its
# lab.compare variants alternated LAB_REPLICAS times (A B A B ...), written to runs/lab/<name>/ and
# compared (beside the simulated runs of `make reports` when runs/reports/<name>/ exists) into
# reports/lab-<name>.html and .md (else beside one simulated run of the config as it is).  The shipped recipes leave 1.5 GiB available; on a shared machine
# leave more: make lab LAB_SET="--set lab.free=8G --set lab.min_available=6G"
RUNS_LAB    := runs/lab
LAB_REPLICAS ?= 1
LAB_SET     ?=
lab: $(STAMP)
	@if [ "$$(id -u)" != 0 ] || ! grep -qw tracefs /proc/filesystems; then \
		echo "make lab: skipped (needs root and a kernel with tracefs)"; exit 0; fi; \
	mkdir -p $(RUNS_LAB) reports; \
	for cfg in experiments/*.toml; do \
	  grep -q '^\[lab\]' "$$cfg" || continue; \
	  name=$$(basename "$$cfg" .toml); echo "lab $$name"; \
	  $(VENV)/bin/kmemdes lab "$$cfg" $(LAB_SET) --replicas $(LAB_REPLICAS) -o $(RUNS_LAB)/$$name --force || exit 1; \
	  if [ -d $(RUNS_REPORTS)/$$name ]; then sim=$$(find $(RUNS_REPORTS)/$$name -name summary.json -printf '%h\n' | sort); \
	  else $(VENV)/bin/kmemdes run "$$cfg" -o $(RUNS_LAB)/$$name-sim --force >/dev/null || exit 1; sim=$(RUNS_LAB)/$$name-sim; fi; \
	  $(VENV)/bin/kmemdes compare $(RUNS_LAB)/$$name/*/ $$sim -o reports/lab-$$name.html --force >/dev/null || exit 1; \
	  $(VENV)/bin/kmemdes compare $(RUNS_LAB)/$$name/*/ $$sim --format md -o reports/lab-$$name.md --force || exit 1; \
	done
