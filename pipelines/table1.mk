# make table1 DATA=DIR — Table 1 of the supplement: VOC, COCO, NUS-WIDE, CUB with
# single positive labels, End-to-end, ResNet-50 ImageNet weights (PRETRAINED=FILE),
# AN and LL-R/Ct/Cp with relative and absolute thresholds over the supplement's grids,
# each picked on the validation split; the table shows the test mAP of the pick.

TABLE1_DATASETS ?= voc coco nuswide cub
PRETRAINED ?= data/resnet50-imagenet.safetensors
TABLE1_FLAGS ?= --recipe paper --pretrained $(PRETRAINED)

$(eval $(call WSML_STORE,voc,--format voc --root $(DATA)/VOCdevkit/VOC2012))
$(eval $(call WSML_STORE,coco,--format coco --root $(DATA)/coco))
$(eval $(call WSML_STORE,nuswide,--format npy --root $(DATA)/nuswide))
$(eval $(call WSML_STORE,cub,--format cub --root $(DATA)/cub))

$(foreach ds,$(TABLE1_DATASETS),$(eval $(call WSML_METHOD_GRID,table1,$(ds),$(call lr_values,1e-5),$(DELTA_REL_GRID),$(TABLE1_FLAGS))))

.PHONY: table1 table1-check
table1-check:
	@test -n "$(DATA)" || { echo "make table1: set DATA=DIR (the raw releases; see README)" >&2; exit 2; }
	@test -f "$(PRETRAINED)" || { echo "make table1: ImageNet weights not found: $(PRETRAINED) (see README, PRETRAINED=FILE)" >&2; exit 2; }

table1: table1-check $(RUNS_table1) | $(WSML)/wsml-eval
	@mkdir -p results
	$(WSML)/wsml-eval table $(dir $(RUNS_table1)) --by dataset --out results/table1
	@cat results/table1.md
