# make cam-figure DATA=DIR PRETRAINED=FILE — the supplement's Figure 1 (supp. §C,
# docs/methods.md §5): class activation maps of COCO test images, one row per ground-truth class of
# each image, columns image | Naive AN | ROLE | LL-Ct, each column the run of its method
# on COCO that the validation split picks (best mean val mAP: `wsml-eval table`'s rule).
# Writes $(RESULTS)/cam-figure.png.
#
# Runs: Naive AN and LL-Ct (relative threshold) are Table 1's runs on COCO
# (pipelines/table1.mk: RUNS/table1/coco/, same names and identity), so `make table1` and
# `make cam-figure` share them; ROLE is not in Table 1 by default, so its runs are
# defined here (unless METHODS has role), with Table 1's recipe, lr grid and seeds.
# Knobs: CAM_COUNT=N (the first N test images with a positive label; default 8) or
# CAM_IDS=ID,ID,... (ids as `wsml-store export --what ids` prints them), CAM_SIZE=PX
# (tile width, default 224), CAM_THREADS=N (cpu threads, default 0 = all),
# CAM_FIGURE=FILE (wsml-cam runs under WSML_LAUNCH, as training does), and the knobs of runs.mk and table1.mk (DATA, PRETRAINED,
# TABLE1_FLAGS, LR_GRID, DELTA_REL_GRID, SEEDS, SCHEME, BACKEND, ...).

CAM_COUNT ?= 8
CAM_IDS ?=
CAM_SIZE ?= 224
CAM_THREADS ?= 0
CAM_FIGURE ?= $(RESULTS)/cam-figure.png
CAM_RUNDIR = $(RUNS)/table1/coco
CAM_PICKS = $(RUNS)/cam-figure/picks
# table1.mk's defaults, needed here already: this file is read before table1.mk
PRETRAINED ?= data/resnet50-imagenet.safetensors
TABLE1_FLAGS ?= --recipe paper

# Table 1's identity (table1.mk sets the same value again) and the runs of the three
# methods on COCO (table1.mk defines the rules of the an and ll-ct runs; the role runs'
# rules are made here unless Table 1 has them).
WSML_ID_table1 := $(call wsml_table_id,$(TABLE1_FLAGS))
CAM_RUNS = $(foreach lr,$(call lr_values,1e-5),$(foreach s,$(SEEDS),$(CAM_RUNDIR)/an_lr$(lr)_s$(s)_$(call wsml_method_id,table1,an) \
  $(CAM_RUNDIR)/role_lr$(lr)_s$(s)_$(call wsml_method_id,table1,role) \
  $(foreach d,$(DELTA_REL_GRID),$(CAM_RUNDIR)/ll-ct_drel$(d)_lr$(lr)_s$(s)_$(call wsml_method_id,table1,ll-ct))))
ifeq ($(filter role,$(METHODS)),)
$(foreach lr,$(call lr_values,1e-5),$(foreach s,$(SEEDS),\
  $(call WSML_SETTING,table1,coco,role_lr$(lr)_s$(s),--loss role --lr $(lr) --seed $(s),$(TABLE1_FLAGS) $(FLAGS_role),$(abspath $(PRETRAINED)),cam)))
endif

# The picked run dir of method $(1): its row of PREFIX.picks.csv
# (method,dataset,picked,...,run_dirs; several seeds are ';'-separated: the first seed's
# checkpoint is drawn).
cam_pick = $$(awk -F, -v m='$(1)' '$$1 == m { split($$NF, d, ";"); print d[1] }' $(CAM_PICKS).picks.csv)
cam_images = $(if $(CAM_IDS),--ids $(CAM_IDS),--count $(CAM_COUNT))

$(eval $(call WSML_TABLE_CHECK,cam-figure))
ifneq ($(filter cam-figure,$(MAKECMDGOALS)),)
ifneq ($(words $(filter an ll-ct,$(METHODS)) $(filter relative,$(THRESHOLDS))),3)
$(error make cam-figure: Table 1's an and relative ll-ct runs are its AN and LL-Ct columns: METHODS needs an and ll-ct, THRESHOLDS relative)
endif
endif

.PHONY: cam-figure
cam-figure: $(CAM_FIGURE)

$(CAM_FIGURE): $(addsuffix /done,$(CAM_RUNS)) | $(STORES)/coco.ok $(BUILD)/wsml-eval $(BUILD)/wsml-cam
	@mkdir -p $(dir $@) $(dir $(CAM_PICKS))
	$(WSML)/wsml-eval table $(CAM_RUNS) --by dataset --out $(CAM_PICKS) --quiet
	an=$(call cam_pick,Naive AN); role=$(call cam_pick,ROLE); llct=$(call cam_pick,LL-Ct); \
	for r in "$$an" "$$role" "$$llct"; do \
	  test -n "$$r" || { echo "make cam-figure: a method has no finished run (see $(CAM_PICKS).md)" >&2; exit 1; }; \
	done; \
	$(WSML_SLOT) $(WSML_LAUNCH) $(WSML)/wsml-cam --store $(STORES)/coco --split test $(cam_images) --size $(CAM_SIZE) \
	  --model $$an/best.safetensors --name "Naive AN" \
	  --model $$role/best.safetensors --name ROLE \
	  --model $$llct/best.safetensors --name LL-Ct \
	  --backend $(BACKEND) --threads $(CAM_THREADS) --out $@
	@echo "CAM figure: $@ (runs picked: $(CAM_PICKS).md)"
