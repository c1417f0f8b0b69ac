# The README's two commands are `make demo` and `make test`; everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AXE := tests/browser/node_modules/.package-lock.json
SKAB := ../shared/data/skab/data
PEOPLE := https://w3id.org/twinkg/plant/skab-testbed/

.PHONY: demo test setup mosquitto browser axe neo4j lint vocab bench-seed bench-contracts bench-ingest bench-decisions bench-api bench-skab bench-diagnosis bench-sim bench-opcua-loop clean

demo: setup neo4j
	$(BIN)/twinkg db start
	$(BIN)/twinkg seed --plant skab-testbed
	@echo "== the HTTP API (docs at /docs) and the MCP server (/mcp) start in the background"
	$(BIN)/twinkg api start
	$(BIN)/python -m twinkg.api.demo keys
	@if [ -f $(SKAB)/other/13.csv ] && [ -f $(SKAB)/other/14.csv ]; then \
		echo "== SKAB cavitation run: ingest, then the agents decide (an HTTP job, its steps streamed)"; \
		$(BIN)/twinkg ingest --skab $(SKAB)/other/13.csv && \
		$(BIN)/python -m twinkg.api.demo agents && \
		echo "== SKAB hot-water run: ingest, then the agents decide" && \
		$(BIN)/twinkg ingest --skab $(SKAB)/other/14.csv && \
		$(BIN)/python -m twinkg.api.demo agents && \
		echo "== the shift supervisor approves the controlled stop over HTTP (POST /decisions/…/approve)" && \
		approved=$$($(BIN)/python -m twinkg.api.demo approve) && echo "$$approved" && \
		applied=$$(echo "$$approved" | sed -n 's/^  decision: //p') && \
		echo "== lineage, replay and chain verification of the decision that applied the stop" && \
		$(BIN)/twinkg lineage "$$applied" && \
		$(BIN)/twinkg replay "$$applied" && \
		$(BIN)/twinkg verify && \
		echo "== compliance asks the SPARQL endpoint (the RDF projection) about every decision" && \
		$(BIN)/python -m twinkg.api.demo sparql; \
	else echo "SKAB data not found under $(SKAB): skipping the replays and the agents"; fi
	$(BIN)/twinkg show
	@echo "== the closed loop over OPC UA: Net1's network served by an OPC UA server (Basic256Sha256 SignAndEncrypt), the twin deciding as its client"
	$(BIN)/twinkg sim run --scenario scenarios/net1-pump-wear.toml --policy twinkg --seeds 4 --over opcua
	@echo "== the twin as a service: Mosquitto (TLS, client certificates, ACLs) and twinkg run in the background"
	$(BIN)/twinkg broker start
	$(BIN)/twinkg service start
	$(BIN)/twinkg service status
	@echo
	@echo "Neo4j, the API, the broker and the service keep running:"
	@$(BIN)/python -m twinkg.api.demo where
	@echo "CLI        $(BIN)/twinkg cypher 'MATCH (p:Pump) RETURN p.tag'   ·   $(BIN)/twinkg agents list"
	@echo "stop       $(BIN)/twinkg service stop && $(BIN)/twinkg broker stop && $(BIN)/twinkg api stop && $(BIN)/twinkg db stop"

test: setup neo4j
	$(BIN)/pytest

setup: $(STAMP) mosquitto browser axe

# Debian's Mosquitto, the MQTT broker the project starts itself (`twinkg broker start`).
mosquitto:
	@command -v mosquitto >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's mosquitto"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null; \
		else echo "mosquitto is missing: run 'sudo apt-get install mosquitto' (the MQTT tests need it)"; exit 1; fi; }

# Debian's headless Chromium and its chromedriver, which Selenium drives in the browser tests.
browser:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium and chromium-driver"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; \
		else echo "chromium or chromedriver is missing: run 'sudo apt-get install chromium chromium-driver' (the browser tests need them)"; exit 1; fi; }

# axe-core, pinned by tests/browser/package-lock.json, for the browser tests' accessibility checks.
axe: $(AXE)

$(AXE): tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,postgres,llm]'
	touch $(STAMP)

# Fetch Neo4j 5.26 LTS with Maven (retried: Maven Central can answer 429) and build the launcher.
neo4j: setup
	$(BIN)/python -c "from twinkg.kg.local_server import build; print(build(log=print))" >/dev/null

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

vocab: setup
	$(BIN)/python -m twinkg.ontology.codegen

bench-seed: setup neo4j
	$(BIN)/python benchmarks/seed_load.py

bench-contracts: setup
	$(BIN)/python benchmarks/contracts.py

bench-ingest: setup neo4j
	$(BIN)/python benchmarks/ingest.py

bench-decisions: setup neo4j
	$(BIN)/python benchmarks/decisions.py

bench-api: setup neo4j
	$(BIN)/python -m benchmarks.api

bench-sim: setup neo4j
	$(BIN)/python -m benchmarks.sim

bench-opcua-loop: setup
	$(BIN)/python -m benchmarks.opcua_loop

bench-skab: setup
	$(BIN)/python -m benchmarks.skab

bench-diagnosis: setup
	$(BIN)/python -m benchmarks.diagnosis

clean:
	-$(BIN)/twinkg api stop
	-$(BIN)/twinkg db stop
	rm -rf $(VENV) kg/neo4j-server/target
