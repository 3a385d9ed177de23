# make table2 DATA=DIR — Table 2: OpenImages V3 with its real partial labels, mAP by
# class-frequency group G1..G5; 20 epochs, lr 2e-5, delta-rel in {0.005, 0.01} (supp. §A).

TABLE2_DELTA_REL ?= 0.005 0.01
TABLE2_FLAGS ?= --recipe paper --pretrained $(PRETRAINED) --epochs 20

$(eval $(call WSML_STORE,openimages,--format openimages --root $(DATA)/openimages))
$(eval $(call WSML_METHOD_GRID,table2,openimages,$(if $(filter paper,$(LR_GRID)),2e-5,$(call lr_values,2e-5)),$(TABLE2_DELTA_REL),$(TABLE2_FLAGS)))

.PHONY: table2
table2: table1-check $(RUNS_table2) | $(WSML)/wsml-eval
	@mkdir -p results
	$(WSML)/wsml-eval table $(dir $(RUNS_table2)) --by group --out results/table2
	@cat results/table2.md
