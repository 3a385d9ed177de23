# make report — one static HTML page per result directory (README "make report"):
#   $(DEMO_DIR)/report/index.html   the demo's runs and CAM figure (also at the end of
#                                   make demo)
#   $(RESULTS)/report/index.html    Table 1 and Table 2 (whichever have runs) and the CAM
#                                   figure of make cam-figure (also at the end of make
#                                   table1 and make table2)
# `wsml-eval report` writes the page, the plots' data files and gnuplot scripts into
# DIR.tmp; gnuplot (Debian gnuplot-nox) draws every plot there; then DIR.tmp replaces DIR,
# so a report folder is either complete or absent. A report shows the runs that exist
# when it is made (unfinished ones are listed as missing) and never starts a run.
# Knobs: GNUPLOT (default gnuplot), DEMO_REPORT, RESULTS_REPORT.

GNUPLOT ?= gnuplot
DEMO_REPORT ?= $(DEMO_DIR)/report
RESULTS_REPORT ?= $(RESULTS)/report

# A recipe line that stops when gnuplot is missing: first in every report, and at the
# start of the pipelines that end with one (not after hours of training).
need_gnuplot = @command -v $(GNUPLOT) >/dev/null || { echo "make: $(GNUPLOT) not found: the results page's plots need gnuplot 5 with pngcairo (Debian gnuplot-nox; make deps installs it; GNUPLOT=PATH names another)" >&2; exit 1; }

# make table1/table2 end with the page: without gnuplot they stop before any run (make
# -n only shows the plan). make demo checks in its recipe, which runs first.
ifneq ($(filter table1 table2,$(MAKECMDGOALS)),)
ifeq ($(WSML_DRY_RUN),)
ifeq ($(shell command -v $(GNUPLOT)),)
$(error make $(filter table1 table2,$(MAKECMDGOALS)): $(GNUPLOT) not found: the results page at the end needs gnuplot 5 with pngcairo (Debian gnuplot-nox; make deps installs it; GNUPLOT=PATH names another))
endif
endif
endif

# $(1) = the report folder, $(2) = wsml-eval report's arguments (sections and figures).
define wsml_report
	$(need_gnuplot)
	@rm -rf $(1).tmp
	$(WSML)/wsml-eval report --out $(1).tmp $(2) --quiet
	@cd $(1).tmp/plots && for f in *.gp; do [ -e "$$f" ] || continue; $(GNUPLOT) "$$f" || { echo "make: gnuplot failed on $(1).tmp/plots/$$f" >&2; exit 1; }; done
	@rm -rf $(1) && mv $(1).tmp $(1)
	@echo "report: $(1)/index.html"
endef

# The run directories of a pipeline's runs that exist now. $(1) = their done files.
report_runs = $(wildcard $(dir $(1)))
# The same for table $(1) (table1, table2) in the file RUNS/$(1)/report-runs.txt, for
# wsml-eval report --runs-from (a full grid's list is longer than a command line may be);
# written when the recipe runs, not under make -n. Expands to the file's name.
report_list = $(if $(WSML_DRY_RUN),,$(file >$(RUNS)/$(1)/report-runs.txt,$(subst $(space),$(newline),$(strip $(call report_runs,$(RUNS_$(1)))))))$(RUNS)/$(1)/report-runs.txt

# The hook at the end of make demo / table1 / table2: the report, by a make that takes
# the executables as they are. $(1) = demo-report or results-report.
report_after = @$(MAKE) --no-print-directory $(foreach x,config.mk wsml-eval,-o $(BUILD)/$(x)) $(1)

.PHONY: report demo-report results-report demo-report-clean
demo-report: | $(BUILD)/wsml-eval
	@test -n "$(call report_runs,$(DEMO_RUNS))" || { echo "make demo-report: no demo runs in $(DEMO_DIR)/runs (make demo)" >&2; exit 1; }
	$(call wsml_report,$(DEMO_REPORT),--title "wsml demo: large-loss methods on Fashion-MNIST mosaics" \
	  --table "Demo" $(call report_runs,$(DEMO_RUNS)) $(if $(wildcard $(DEMO_DIR)/cam.png),--cam $(DEMO_DIR)/cam.png))

results-report: | $(BUILD)/wsml-eval
	@test -n "$(call report_runs,$(RUNS_table1) $(RUNS_table2))" || { echo "make results-report: no runs of make table1 or make table2 in $(RUNS)" >&2; exit 1; }
	$(call wsml_report,$(RESULTS_REPORT),--title "wsml: the paper's tables" \
	  $(if $(call report_runs,$(RUNS_table1)),--table "Table 1" --by dataset --runs-from $(call report_list,table1)) \
	  $(if $(call report_runs,$(RUNS_table2)),--table "Table 2" --by group --runs-from $(call report_list,table2)) \
	  $(if $(wildcard $(CAM_FIGURE)),--cam $(CAM_FIGURE)))

# Every report whose runs exist.
report: | $(BUILD)/wsml-eval
	@$(if $(call report_runs,$(DEMO_RUNS) $(RUNS_table1) $(RUNS_table2)),:,{ echo "make report: no runs yet (make demo, make table1 or make table2 first)" >&2; exit 1; })
	$(if $(call report_runs,$(DEMO_RUNS)),$(call report_after,demo-report))
	$(if $(call report_runs,$(RUNS_table1) $(RUNS_table2)),$(call report_after,results-report))

demo-clean: demo-report-clean
demo-report-clean:
	rm -rf $(DEMO_REPORT) $(DEMO_REPORT).tmp
