# Results: read the training logs of a plan, write report.json, report.md and the paper's figures.
# `make report` for the paper's plan, `make report-small` for the CPU plan, and
# `make report-released RELEASED=path/to/convnet_transfer/results` for the authors' released logs.
RELEASED ?= results

.PHONY: report report-small report-released
report:
	$(TRANSFER) report --plan paper --logs runs/paper --out reports/paper

report-small:
	$(TRANSFER) report --plan small --logs work/small/runs --out reports/small

report-released:
	$(TRANSFER) report --plan paper --layout released --logs $(RELEASED) --out reports/released
