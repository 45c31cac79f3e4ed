# cmr-node: `make demo` and `make test` each do their own set-up on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := dcmtk orthanc orthanc-webviewer orthanc-dicomweb dicom3tools dcm2niix strace openssl systemd \
                   chromium chromium-driver postgresql
SYSTEM_TOOLS := storescu echoscu storescp Orthanc dciodvfy dcm2niix strace openssl systemd-analyze chromium chromedriver
SYSTEM_FILES := /usr/share/orthanc/plugins/libOrthancWebViewer.so /usr/share/orthanc/plugins/libOrthancDicomWeb.so \
                /usr/lib/postgresql/*/bin/initdb

.PHONY: demo test check venv system-tools benchmark clean

$(BIN)/cmr-node: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/cmr-node

# DCMTK (the scanner in tests), Orthanc (the PACS) with its Web Viewer and DICOMweb plugins, dicom3tools (dciodvfy) and
# dcm2niix (an independent reader of our derived images), strace (to watch the node flush what it acknowledges)
# Chromium with its driver (the browser the viewer test opens the results in) and PostgreSQL (a registry several
# nodes share; the tests start their own server) from Debian.
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	for file in $(SYSTEM_FILES); do [ -e $$file ] || missing="$$missing $$file"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing from Debian packages: $(SYSTEM_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing$$missing: run 'sudo apt-get install $(SYSTEM_PACKAGES)' (or make test as root)"; exit 1; \
	  fi; \
	fi

demo: venv
	@PATH="$$PATH:/usr/sbin" command -v Orthanc >/dev/null 2>&1 || \
	  echo "note: Orthanc not installed; the demo uses its built-in storage SCP (make system-tools installs Orthanc)"
	PATH="$$PATH:/usr/sbin" $(BIN)/cmr-node demo --workdir demo-output

test: venv system-tools
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m pytest -q -p no:cacheprovider tests

# Lint (ruff: pyflakes and pycodestyle errors) everywhere, type-check (mypy) the analysis and output packages.
check: venv
	$(BIN)/ruff check node analysis dicom_out tests benchmarks
	$(BIN)/mypy analysis dicom_out

benchmark: venv system-tools
	-PATH="$$PATH:/usr/sbin" $(BIN)/python benchmarks/receive_throughput.py
	-PATH="$$PATH:/usr/sbin" $(BIN)/python benchmarks/receive_load.py
	-$(BIN)/python benchmarks/ddce_fit_speed.py
	-$(BIN)/python benchmarks/ddce_fit_reference.py
	-$(BIN)/python benchmarks/ddce_interval_coverage.py
	-$(BIN)/python benchmarks/ddce_joint_speed.py
	-$(BIN)/python benchmarks/t1_fit_speed.py
	-$(BIN)/python benchmarks/myocardium_accuracy.py
	-PATH="$$PATH:/usr/sbin" $(BIN)/python benchmarks/backfill.py

clean:
	rm -rf $(VENV) demo-output *.egg-info
