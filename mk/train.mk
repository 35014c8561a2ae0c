# Training on this machine, one target per experiment family (`transfer run`: resumable, locked).
# PLAN=paper (default) trains on GPUs $(GPUS) (comma-separated ids, one net per GPU);
# PLAN=small, full, huh-small or tiny trains on the CPU, two nets at a time. A rerun continues where it stopped.
PLAN ?= paper
GPUS ?= 0
ONLY ?=
ifeq ($(filter $(PLAN),small full huh-small tiny),)
RUN_WHERE := --gpus $(GPUS)
else
RUN_WHERE := --cpu --jobs 2
endif
TRAIN_RUN = $(TRANSFER) run --plan $(PLAN) $(RUN_WHERE)

.PHONY: train train-random-split train-natman train-whole train-random-weights train-reduced train-status
train: | $(VENV)/.installed          ## every net of the plan (ONLY=patterns to narrow)
	$(TRAIN_RUN) $(if $(ONLY),--only '$(ONLY)')
train-random-split: | $(VENV)/.installed
	$(TRAIN_RUN) --only 'base-half*,half*'
train-natman: | $(VENV)/.installed
	$(TRAIN_RUN) --only 'base-manmade,base-natural,manmade-*,natural-*'
train-whole: | $(VENV)/.installed
	$(TRAIN_RUN) --only 'base-all'
train-random-weights: | $(VENV)/.installed     # their base is the 1000-class net (compared, not copied)
	$(TRAIN_RUN) --only 'base-all,random-*'
train-reduced: | $(VENV)/.installed
	$(TRAIN_RUN) --only 'reduced-*'
train-status: | $(VENV)/.installed
	$(TRANSFER) status --plan $(PLAN)

# Huh et al. 2016 in miniature on the CPU: label sets of the synthetic class tree, two data budgets,
# readouts and transfer to a synthetic target dataset, then the report (reports/huh-small/).
.PHONY: demo-huh
demo-huh: setup
	$(TRANSFER) demo --plan huh-small
