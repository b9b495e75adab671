# Every target sets up what it needs first, so `make synth` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# jsii (the CDK's Python bridge) and the CDK CLI run on the project's own Node.js 22.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)
# No AWS account is needed to synthesize: never probe instance metadata for credentials.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: setup synth test checkov lint lint-templates typecheck format bench mutation clean

CHECKOV_VENV := .venv-checkov

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml scripts/fetch_robomaker_model.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python scripts/fetch_robomaker_model.py
	touch $@

# checkov pins an older boto3 than the project: it gets a virtualenv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Synthesize the default experiment (or -e CDK_ARGS="-c experiment=all") into cdk.out/ and summarize it.
SYNTH_OUT ?= cdk.out
synth: setup
	cdk synth --quiet --output $(SYNTH_OUT) $(CDK_ARGS)
	$(BIN)/python scripts/summary.py $(SYNTH_OUT)

## Run the whole test suite: lint, types, unit, snapshot, policy, handler and CLI tests.
# In parallel, one worker per core (pytest-xdist; an idle worker takes tests from a busy one).
# Synthesis fixtures are per worker session, so each worker synthesizes what its tests need once.
# checkov (its own virtualenv) runs inside the suite, on every synthesized template.
test: setup $(CHECKOV_VENV)/.installed lint typecheck
	$(BIN)/pytest -n auto --dist worksteal

## checkov on every synthesized template (both backends, all experiments, every variant).
checkov: setup $(CHECKOV_VENV)/.installed
	$(BIN)/pytest -n auto -m checkov

## cfn-lint on the synthesized templates (settings and the one ignored rule: .cfnlintrc.yaml).
lint-templates: synth
	$(BIN)/cfn-lint --config-file .cfnlintrc.yaml -- cdk.out/*.template.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/synth.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/supervisor.py

## Mutation testing (mutmut) of rollouts/, lambda/fanout/ and constructs_lib/; MUTANTS="glob ..."
## narrows it (e.g. MUTANTS="fanout.naming*"), MUTATION_IGNORE="tests/infra" leaves out the
## synthesizing tests (30 s and more per mutant). Not part of `make test`: a full run takes hours.
## It works in build/mutation/, a copy where the Lambda code is src/fanout (mutmut names modules
## by path and strips "src.", so its names match the `fanout` package the tests import) and
## lambda/ links to src/.
MUTATION_DIR := build/mutation
MUTANTS ?=
MUTATION_IGNORE ?=
mutation: setup
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	git ls-files -z | xargs -0 cp --parents -t $(MUTATION_DIR)
	cp -r lambda/fanout/botocore_data $(MUTATION_DIR)/lambda/fanout/
	mv $(MUTATION_DIR)/lambda $(MUTATION_DIR)/src && ln -s src $(MUTATION_DIR)/lambda
	sed -i 's#"lambda/fanout"#"src/fanout"#' $(MUTATION_DIR)/pyproject.toml
	$(foreach path,$(MUTATION_IGNORE),sed -i 's#"not toolchain"\]#"not toolchain", "--ignore=$(path)"]#' $(MUTATION_DIR)/pyproject.toml;)
	mkdir -p $(MUTATION_DIR)/mutants && ln -s src $(MUTATION_DIR)/mutants/lambda
	cd $(MUTATION_DIR) && ROLLOUTS_FIXTURES=$(CURDIR)/../shared/fixtures \
	  $(CURDIR)/$(BIN)/mutmut run --max-children 2 $(MUTANTS); \
	  $(CURDIR)/$(BIN)/mutmut results --all true | $(CURDIR)/$(BIN)/python $(CURDIR)/scripts/mutation_summary.py

clean:
	rm -rf cdk.out build mutants .pytest_cache .mypy_cache .ruff_cache
