# make table2 DATA=DIR PRETRAINED=FILE — Table 2: OpenImages V3 (DATA/openimages: 2017_11/,
# images_*/) with its real partial labels, mAP by class-frequency group G1..G5; 20
# epochs, lr 2e-5, delta-rel in {0.005, 0.01} (supp. §A); the absolute grid of runs.mk.
# Knobs: TABLE2_FLAGS, TABLE2_DELTA_REL, LR_GRID, R0_GRID, DELTA_ABS_GRID, and SEEDS,
# METHODS, THRESHOLDS, SCHEME, GPUS, WSML_LAUNCH of runs.mk. The table has the
# supplement's Table 2 beside ours (a paper column and our difference per cell; not under
# SCHEME=linearinit: RESULTS/table2-linearinit.*).

TABLE2_DELTA_REL ?= 0.005 0.01
TABLE2_FLAGS ?= --recipe paper --epochs 20

$(eval $(call WSML_STORE,openimages,--format openimages --root $(DATA)/openimages))
WSML_ID_table2 := $(call wsml_table_id,$(TABLE2_FLAGS))
$(eval $(call WSML_METHOD_GRID,table2,openimages,$(call lr_values,2e-5),$(TABLE2_DELTA_REL),$(TABLE2_FLAGS),$(abspath $(PRETRAINED))))

$(eval $(call WSML_TABLE_CHECK,table2))

.PHONY: table2
table2: $(RUNS_table2) | $(BUILD)/wsml-eval
	$(call WSML_CHECK_RUNS,table2)
	@mkdir -p $(RESULTS)
	$(WSML)/wsml-eval table --runs-from $(call wsml_run_list,table2) --by group $(call wsml_paper_flag,table2,2) --out $(call wsml_table_out,table2)
	@cat $(call wsml_table_out,table2).md
	$(call report_after,results-report)
	$(call WSML_PLAN_SUMMARY,table2,openimages)

# For a Slurm job array (README "On a cluster"): the stores first, then one run per
# array task (`make $(make -s table2-list | sed -n "${SLURM_ARRAY_TASK_ID}p")`), then
# `make table2` renders the table.
.PHONY: table2-stores table2-list
table2-stores: $(STORES)/openimages.ok
table2-list:
	@: $(foreach r,$(RUNS_table2),$(info $(r)))
