# make table1 DATA=DIR PRETRAINED=FILE — Table 1 of the supplement: VOC, COCO, NUS-WIDE,
# CUB with single positive labels, End-to-end, ResNet-50 ImageNet weights, AN and
# LL-R/Ct/Cp with relative and absolute thresholds over the supplement's grids, each
# picked on the validation split; the table shows the test mAP of the pick.
#
# DATA layout (README "make table1 / make table2"):
#   DATA/VOCdevkit/VOC2012/   PASCAL VOC 2012 (ImageSets/Main, JPEGImages)
#   DATA/coco/                COCO 2014 (annotations/, train2014/, val2014/)
#   DATA/nuswide/             the benchmark's formatted_*.npy + Flickr/ images
#                             (+ Concepts81.txt for class names, if present)
#   DATA/cub/                 CUB-200-2011 (CUB_200_2011/, attributes.txt)
#   DATA/openimages/          OpenImages V3 (2017_11/, images_*/), make table2 only
# Knobs: TABLE1_DATASETS (subset, e.g. "voc coco"), TABLE1_FLAGS (wsml-train flags of
# every run, default the paper's recipe), SEEDS, METHODS, THRESHOLDS, SCHEME, LR_GRID, the
# grids, GPUS and WSML_LAUNCH of runs.mk. Runs: RUNS/table1/DATASET/NAME_sSEED_ID (the
# frozen phase of SCHEME=linearinit: RUNS/table1/DATASET/linear/...). The table has the
# supplement's Table 1 beside ours (a paper column and our difference per cell; not under
# SCHEME=linearinit, whose table is RESULTS/table1-linearinit.*: the supplement has
# End-to-end values only).

TABLE1_DATASETS ?= voc coco nuswide cub
PRETRAINED ?= data/resnet50-imagenet.safetensors
TABLE1_FLAGS ?= --recipe paper

$(eval $(call WSML_STORE,voc,--format voc --root $(DATA)/VOCdevkit/VOC2012))
$(eval $(call WSML_STORE,coco,--format coco --root $(DATA)/coco))
$(eval $(call WSML_STORE,nuswide,--format npy --root $(DATA)/nuswide --name nuswide $(if $(wildcard $(DATA)/nuswide/Concepts81.txt),--classes $(DATA)/nuswide/Concepts81.txt)))
$(eval $(call WSML_STORE,cub,--format cub --root $(DATA)/cub))

# The identity of every run of the table beyond its name (runs.mk "Run identity").
WSML_ID_table1 := $(call wsml_table_id,$(TABLE1_FLAGS))
$(foreach ds,$(TABLE1_DATASETS),$(eval $(call WSML_METHOD_GRID,table1,$(ds),$(call lr_values,1e-5),$(DELTA_REL_GRID),$(TABLE1_FLAGS),$(abspath $(PRETRAINED)))))

$(eval $(call WSML_TABLE_CHECK,table1))

.PHONY: table1
table1: $(RUNS_table1) | $(BUILD)/wsml-eval
	$(call WSML_CHECK_RUNS,table1)
	@mkdir -p $(RESULTS)
	$(WSML)/wsml-eval table --runs-from $(call wsml_run_list,table1) --by dataset $(call wsml_paper_flag,table1,1) --out $(call wsml_table_out,table1)
	@cat $(call wsml_table_out,table1).md
	$(call report_after,results-report)
	$(call WSML_PLAN_SUMMARY,table1,$(TABLE1_DATASETS))

# For a Slurm job array (README "On a cluster"): the stores first, then one run per
# array task (`make $(make -s table1-list | sed -n "${SLURM_ARRAY_TASK_ID}p")`), then
# `make table1` renders the table.
.PHONY: table1-stores table1-list
table1-stores: $(foreach ds,$(TABLE1_DATASETS),$(STORES)/$(ds).ok)
table1-list:
	@: $(foreach r,$(RUNS_table1),$(info $(r)))
