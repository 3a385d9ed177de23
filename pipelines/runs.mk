# Shared machinery of the pipelines: stores and runs are files, so make decides what
# is left to do.
#   - A store is STORES/NAME with STORES/NAME.ok written after wsml-ingest succeeded;
#     an interrupted ingest leaves no .ok and is redone from scratch (--force).
#   - A run is a directory RUNDIR with RUNDIR/done written only when run.jsonl holds
#     wsml-train's final line. A finished run is never redone (its run.jsonl final line
#     is checked even when done is missing); an interrupted one (last.safetensors, no
#     final line) resumes exactly where it stopped (wsml-train --resume); a run that
#     stopped early (--max-steps, a signal) makes make fail, and the next make resumes it.
#     A run that diverges (NaN/Inf) ends as a finished run with "status": "diverged" in
#     its final line (wsml-train exits 3, which is accepted here); the tables skip it.
#   - Run identity (the table pipelines): a run's directory name carries its method, its
#     grid point and its seed, plus a short hash of every other flag that can change its
#     numbers (the table's flags, TRAIN_FLAGS, BACKEND, SCHEME, the weights' path), e.g.
#     runs/table1/voc/ll-ct_drel0.2_lr1e-5_s1_3fa2c1. Changing a flag therefore makes new
#     runs and never picks up old ones. Before an existing directory is resumed or
#     restarted, and before a table is rendered, its config.json is compared with the
#     flags asked for (`wsml-eval check-config`): a difference stops make with a line
#     naming the flag (and the store: one ingested again at the same path with other
#     flags, e.g. another --size, no longer matches the runs' config.json). Execution flags that never change the numbers (--max-steps,
#     --workers, --save-every, --quiet, --trace, --device) and --threads are not part of
#     the hash; --threads, when given, is still compared.
#   - Stores, the pretrained weights and the executables are order-only prerequisites:
#     rebuilding wsml-train or re-ingesting a store never reruns finished runs (remove
#     RUNDIR to redo one).
#   - Every run has its own directory and stores are only read by runs, so `make -j` is
#     safe; `make -n table1` prints the plan (the commands still to run) and a summary
#     (runs per method, images x epochs, GPU-hours, disk) and runs nothing.
#
# Knobs (command line or environment):
#   DATA=DIR        raw releases (see README "make table1 / make table2")
#   STORES=DIR      where stores go (default data/stores)
#   RUNS=DIR        where runs go (default runs)
#   RESULTS=DIR     where tables go (default results)
#   BACKEND=cpu|cuda, TRAIN_FLAGS="..." extra wsml-train flags,
#   INGEST_FLAGS="..." extra wsml-ingest flags (e.g. --size 224 --jobs 8)
#   SEEDS="1 2 3"   every setting once per seed (default SEED, default 1; a seed given
#                   twice counts once); tables show mean ± std over seeds and pick by
#                   the mean validation mAP
#   METHODS="an an-ls wan epr role ll-r ll-ct ll-cp full"  the grid's methods (default
#                   an ll-r ll-ct ll-cp, the supplement's tables); ll-* run with each of
#                   THRESHOLDS (default "relative absolute"); FLAGS_<method>="..." adds
#                   wsml-train flags to that method's runs only (e.g. FLAGS_an-ls="--ls
#                   0.2"): changing them makes new runs of that method only
#   SCHEME=end-to-end|linearinit  end-to-end (default): every run starts from the
#                   ImageNet weights; linearinit (supp. §A): each setting first trains the
#                   head on a frozen backbone (LINEARINIT_FROZEN_FLAGS, default
#                   --freeze-backbone --no-flip --no-early-stop) for LINEARINIT_EPOCHS
#                   (25; its directory's hash leaves out LINEARINIT_FT_EPOCHS), then
#                   fine-tunes that run's best checkpoint end to end (--init) for
#                   LINEARINIT_FT_EPOCHS (10); its tables are RESULTS/TABLE-linearinit.*,
#                   without paper columns (the supplement has End-to-end values only)
#   LR_GRID=paper|full|"V1 V2 ..." (the paper's chosen lr, the supplement's quartered
#                   grid, or your own values)
#   GPUS="0 1 2 3"  place each run on a free GPU of the list (wsml-train --device N;
#                   never two runs on one GPU at a time: flock on RUNS/.gpus/N.lock);
#                   use with make -jN, N = the number of GPUs
#   WSML_LAUNCH="srun -N1 -n1 --gpus=1"  a prefix for every training command (a Slurm
#                   step, a container runner); WSML_LAUNCH_INGEST (default WSML_LAUNCH)
#                   for wsml-ingest
#   GPU_BENCH=FILE  the GPU benchmark's rows (bench/gpu.sh's gpu-bench.jsonl) that the
#                   plan summary's GPU-hours come from

STORES ?= data/stores
RUNS ?= runs
RESULTS ?= results
BACKEND ?= cpu
SEED ?= 1
SEEDS ?= $(SEED)
# A seed given twice is one run (SEEDS="1 1" trains and counts seed 1 once).
wsml_uniq = $(if $(1),$(firstword $(1)) $(call wsml_uniq,$(filter-out $(firstword $(1)),$(1))))
override SEEDS := $(strip $(call wsml_uniq,$(SEEDS)))
TRAIN_FLAGS ?=
INGEST_FLAGS ?=
METHODS ?= an ll-r ll-ct ll-cp
THRESHOLDS ?= relative absolute
SCHEME ?= end-to-end
LINEARINIT_EPOCHS ?= 25
LINEARINIT_FT_EPOCHS ?= 10
# The frozen phase: Cole et al. train the head on features extracted once from unflipped
# images, so no flips, and their linear phase has no early stop (docs/methods.md
# "LinearInit, precisely").
LINEARINIT_FROZEN_FLAGS ?= --freeze-backbone --no-flip --no-early-stop
GPUS ?=
WSML_LAUNCH ?=
WSML_LAUNCH_INGEST ?= $(WSML_LAUNCH)
GPU_BENCH ?= $(BUILD)/bench/gpu/gpu-bench.jsonl
# Commands use absolute paths (so a run's config.json names them wherever make ran);
# prerequisites use $(BUILD) as the GNUmakefile's rules name the executables, so that a
# fresh checkout builds them first.
WSML := $(abspath $(BUILD))
WSML_TRAIN_DEPS := $(BUILD)/wsml-train $(BUILD)/wsml-eval $(if $(filter cuda,$(BACKEND)),$(CUDA_SO))
WSML_METHODS_KNOWN := full an an-ls wan epr role ll-r ll-ct ll-cp

# ---- hyper-parameter grids (supp. §A, §B) ------------------------------------------
DELTA_REL_GRID ?= 0.1 0.2 0.3 0.4 0.5
R0_GRID ?= 1.0 1.5 2.0
DELTA_ABS_GRID ?= 0.1 0.15 0.2
# "dividing the range between values in {0.01, 0.001, 0.0001, 0.00001} into quarters"
# (supp. §A), read as linear quarters of each decade: 13 values.
LR_GRID_FULL := 1e-5 3.25e-5 5.5e-5 7.75e-5 1e-4 3.25e-4 5.5e-4 7.75e-4 1e-3 3.25e-3 5.5e-3 7.75e-3 1e-2
LR_GRID ?= paper
# $(1) = the paper's lr for the table
lr_values = $(if $(filter full,$(LR_GRID)),$(LR_GRID_FULL),$(if $(filter paper,$(LR_GRID)),$(1),$(LR_GRID)))

# A run is finished when its run.jsonl holds wsml-train's final line.
# $(1) = run dir
wsml_finished = grep -qs '"event": *"final"' $(1)/run.jsonl

# The short hash of a run's identity: $(1) = every flag of the run that is not in its
# name, without the execution flags that never change its numbers.
wsml_id = $(shell printf '%s\n' '$(subst ','"'"',$(strip $(1)))' | \
  sed -E 's/(^| )--(max-steps|threads|workers|save-every|device)( +|=)[^ ]+/ /g; s/(^| )(--quiet|-q|--trace)( |$$)/ /g' | \
  tr -s ' ' | cksum | awk '{ printf "%06x", $$1 % 16777216 }')

# The identity of a table's runs: $(1) = the table's flags of every run; with TRAIN_FLAGS,
# BACKEND, the weights and the scheme.
wsml_table_id = $(call wsml_id,$(1) $(TRAIN_FLAGS) --backend $(BACKEND) --pretrained $(abspath $(PRETRAINED)) scheme=$(SCHEME)$(if $(filter linearinit,$(SCHEME)), $(LINEARINIT_EPOCHS) $(LINEARINIT_FT_EPOCHS) $(LINEARINIT_FROZEN_FLAGS)))

# The epochs a run's flags ask for (the last --epochs; default and --recipe paper: 10).
wsml_epochs = $(or $(lastword $(patsubst --epochs=%,%,$(filter --epochs=%,$(subst --epochs ,--epochs=,$(strip $(1)))))),10)

# ---- stores --------------------------------------------------------------------------
# $(1) = store name, $(2) = wsml-ingest flags. Target: $(STORES)/NAME.ok, written only
# after wsml-ingest succeeded (an interrupted ingest is redone with --force); it holds the
# ingest's flags (with INGEST_FLAGS). A store whose .ok holds other flags than the ones
# asked for now is never reused: make stops, naming both (an empty .ok, from wsml before
# it recorded them, is taken as it is).
wsml_eq = $(and $(findstring x$(1)x,x$(2)x),$(findstring x$(2)x,x$(1)x))
define WSML_STORE
WSML_STORE_FLAGS_$(1) := $$(strip $(2) $$(INGEST_FLAGS))
WSML_STORE_MADE_$(1) := $$(strip $$(if $$(wildcard $(STORES)/$(1).ok),$$(file <$(STORES)/$(1).ok)))
WSML_STORE_DIFF_$(1) := $$(if $$(WSML_STORE_MADE_$(1)),$$(if $$(call wsml_eq,$$(WSML_STORE_MADE_$(1)),$$(WSML_STORE_FLAGS_$(1))),,1))
$(STORES)/$(1).ok: $$(if $$(WSML_STORE_DIFF_$(1)),wsml-store-flags-changed) | $(BUILD)/wsml-ingest
	$$(if $$(WSML_STORE_DIFF_$(1)),$$(error store $(STORES)/$(1) was ingested with "$$(WSML_STORE_MADE_$(1))" but is asked for with "$$(WSML_STORE_FLAGS_$(1))" (INGEST_FLAGS or DATA changed?): remove $(STORES)/$(1) and $(STORES)/$(1).ok to ingest it again (and the runs trained on it) or set STORES to another folder))
	@mkdir -p $(STORES)
	$(WSML_LAUNCH_INGEST) $(WSML)/wsml-ingest $$(WSML_STORE_FLAGS_$(1)) --out $(STORES)/$(1) --force
	printf '%s\n' '$$(subst ','"'"',$$(WSML_STORE_FLAGS_$(1)))' > $$@
endef
.PHONY: wsml-store-flags-changed
wsml-store-flags-changed: ;

# ---- runs ------------------------------------------------------------------------------
# GPUS: the training command runs under pipelines/gpu-slot.sh, which waits for a GPU of
# the list that no other run holds and adds --device N.
WSML_SLOT = $(if $(strip $(GPUS)),GPUS="$(strip $(GPUS))" $(abspath pipelines/gpu-slot.sh) $(abspath $(RUNS))/.gpus)
# wsml-train's flags of a run: $(1) = the run's own flags (the table runs carry their
# --seed; without one, wsml-train's default 1).
wsml_train_flags = --backend $(BACKEND) $(1) $(TRAIN_FLAGS)
# Stops make when RUNDIR $(1) holds a run made with other flags than $(2).
wsml_check_run = if [ -f $(1)/config.json ]; then $(WSML)/wsml-eval check-config $(1) -- $(2) || { echo "make: $(1) holds a run made with other settings (the line above names the first difference); remove it to redo it" >&2; exit 1; }; fi

# $(1) = run dir, $(2) = store path (made by a rule for $(2).ok), $(3) = wsml-train flags
# (TRAIN_FLAGS follow them: the last of a flag wins), $(4) = more order-only
# prerequisites (e.g. the pretrained weights when a rule makes them).
define WSML_RUN
$(1)/done: | $(2).ok $(WSML_TRAIN_DEPS) $(4)
	@mkdir -p $(1)
	@$(call wsml_check_run,$(1),--store $(2) $(call wsml_train_flags,$(3)))
	$(call wsml_finished,$(1)) || $(WSML_SLOT) $(WSML_LAUNCH) $(WSML)/wsml-train --store $(2) --out $(1) $(call wsml_train_flags,$(3)) $$$$(test -f $(1)/last.safetensors && echo --resume || echo --force) || [ $$$$? = 3 ]
	@$(call wsml_finished,$(1)) && touch $$@ || { echo "make: $(1): wsml-train stopped before the end (no final line in run.jsonl); make again to resume it" >&2; exit 1; }
endef

# ---- the table grids ---------------------------------------------------------------------
# The identity hash of method $(2)'s runs in table $(1): the table's (WSML_ID_$(1)), or,
# when FLAGS_$(2) gives the method flags of its own, a hash of both, so that changing a
# method's own flags makes new runs of that method only (computed once, then kept).
wsml_method_id = $(if $(strip $(FLAGS_$(2))),$(or $(WSML_MID_$(1)_$(2)),$(eval WSML_MID_$(1)_$(2) := $(call wsml_id,$(WSML_ID_$(1)) $(FLAGS_$(2))))$(WSML_MID_$(1)_$(2))),$(WSML_ID_$(1)))

# The identity hash of method $(2)'s LinearInit frozen runs in table $(1), $(3) = the
# table's flags of its runs (with FLAGS_$(2)): as wsml_table_id, but without the
# fine-tune's settings (LINEARINIT_FT_EPOCHS), so that changing them keeps the frozen
# runs (computed once per table and method, then kept).
wsml_frozen_id = $(or $(WSML_FZID_$(1)_$(2)),$(eval WSML_FZID_$(1)_$(2) := $(call wsml_id,$(3) $(TRAIN_FLAGS) --backend $(BACKEND) --pretrained $(abspath $(PRETRAINED)) scheme=linearinit-frozen $(LINEARINIT_EPOCHS) $(LINEARINIT_FROZEN_FLAGS)))$(WSML_FZID_$(1)_$(2)))

# One setting of a table on one dataset, under SCHEME. $(1) = table, $(2) = dataset,
# $(3) = run name (method, grid point, seed), $(4) = the setting's wsml-train flags,
# $(5) = the flags of every run of the table, $(6) = the ImageNet weights (absolute),
# $(7) = the list the run joins (default the table). Appends the run's done file to
# RUNS_$(7), "DIR FLAGS" to WSML_REQ_$(7) (checked before the table is rendered) and
# "DATASET:METHOD:EPOCHS:TODO" to WSML_PLAN_$(7) (the plan summary; a LinearInit setting
# counts both phases).
WSML_LINEAR_DIR = $(RUNS)/$(1)/$(2)/linear/$(3)_$(call wsml_frozen_id,$(1),$(word 2,$(4)),$(5))
define WSML_SETTING
$(if $(filter linearinit,$(SCHEME)),\
  $(eval $(call WSML_RUN,$(WSML_LINEAR_DIR),$(STORES)/$(2),$(4) $(5) --pretrained $(6) $(LINEARINIT_FROZEN_FLAGS) --epochs $(LINEARINIT_EPOCHS)))\
  $(eval $(call wsml_plan_add,$(or $(7),$(1)),$(2),$(4),$(WSML_LINEAR_DIR),$(4) $(5) --epochs $(LINEARINIT_EPOCHS) $(TRAIN_FLAGS)))\
  $(eval $(call WSML_RUN,$(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))),$(STORES)/$(2),$(4) $(5) --init $(WSML_LINEAR_DIR)/best.safetensors --epochs $(LINEARINIT_FT_EPOCHS),$(WSML_LINEAR_DIR)/done))\
  $(eval $(call wsml_plan_add,$(or $(7),$(1)),$(2),$(4),$(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))),$(4) $(5) --epochs $(LINEARINIT_FT_EPOCHS) $(TRAIN_FLAGS)))\
  $(eval WSML_REQ_$(or $(7),$(1)) += $(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))) --store $(STORES)/$(2) $(call wsml_train_flags,$(4) $(5) --init $(WSML_LINEAR_DIR)/best.safetensors --epochs $(LINEARINIT_FT_EPOCHS));;),\
  $(eval $(call WSML_RUN,$(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))),$(STORES)/$(2),$(4) $(5) --pretrained $(6)))\
  $(eval $(call wsml_plan_add,$(or $(7),$(1)),$(2),$(4),$(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))),$(4) $(5) $(TRAIN_FLAGS)))\
  $(eval WSML_REQ_$(or $(7),$(1)) += $(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4))) --store $(STORES)/$(2) $(call wsml_train_flags,$(4) $(5) --pretrained $(6));;))\
$(eval RUNS_$(or $(7),$(1)) += $(RUNS)/$(1)/$(2)/$(3)_$(call wsml_method_id,$(1),$(word 2,$(4)))/done)
endef
# $(1) table, $(2) dataset, $(3) the setting's flags (--loss first), $(4) run dir,
# $(5) the flags that decide its epochs
wsml_plan_add = WSML_PLAN_$(1) += $(2):$(word 2,$(3)):$(call wsml_epochs,$(5)):$(if $(wildcard $(4)/done),0,1)

# The methods of a table on one dataset, SEEDS seeds each. $(1) = table name, $(2) =
# store name, $(3) = lr values, $(4) = delta-rel values, $(5) = common flags, $(6) = the
# ImageNet weights. WSML_ID_$(1) (the identity hash) must be set.
define WSML_METHOD_GRID
$(foreach m,$(METHODS),$(foreach lr,$(3),$(foreach s,$(SEEDS),\
  $(if $(filter ll-%,$(m)),\
    $(if $(filter relative,$(THRESHOLDS)),$(foreach d,$(4),\
      $(call WSML_SETTING,$(1),$(2),$(m)_drel$(d)_lr$(lr)_s$(s),--loss $(m) --threshold relative --delta-rel $(d) --lr $(lr) --seed $(s),$(5) $(FLAGS_$(m)),$(6))))\
    $(if $(filter absolute,$(THRESHOLDS)),$(foreach r0,$(R0_GRID),$(foreach da,$(DELTA_ABS_GRID),\
      $(call WSML_SETTING,$(1),$(2),$(m)_r0-$(r0)_dabs$(da)_lr$(lr)_s$(s),--loss $(m) --threshold absolute --r0 $(r0) --delta-abs $(da) --lr $(lr) --seed $(s),$(5) $(FLAGS_$(m)),$(6))))),\
    $(call WSML_SETTING,$(1),$(2),$(m)_lr$(lr)_s$(s),--loss $(m) --lr $(lr) --seed $(s),$(5) $(FLAGS_$(m)),$(6))))))
endef

# The recipe lines of a table target, before it is rendered: every run's config.json
# against the flags asked for (all mismatches listed, then make stops). $(1) = table.
define WSML_CHECK_RUNS
	@$(if $(WSML_DRY_RUN),:,$(file >$(RUNS)/$(1)/requested.txt,$(subst ;; ,$(newline),$(strip $(WSML_REQ_$(1))) )))
	@bad=0; while read -r d flags; do [ -n "$$d" ] || continue; \
	  $(WSML)/wsml-eval check-config $$d -- $$flags || bad=1; done < $(RUNS)/$(1)/requested.txt; \
	  [ $$bad = 0 ] || { echo "make $(1): the runs above were made with other settings than asked for; remove them to redo them" >&2; exit 1; }
endef
# The file RUNS/$(1)/runs.txt listing the table's run dirs (written when the recipe runs,
# not under make -n), for wsml-eval table --runs-from: a full grid's list is longer than
# one command line may be. Expands to the file's name.
wsml_run_list = $(if $(WSML_DRY_RUN),,$(file >$(RUNS)/$(1)/runs.txt,$(subst $(space),$(newline),$(strip $(dir $(RUNS_$(1)))))))$(RUNS)/$(1)/runs.txt
space := $(subst ,, )
define newline


endef

# make -n TABLE: the plan summary (pipelines/plan-summary.sh), printed even under -n.
# $(1) = table, $(2) = its store names.
define WSML_PLAN_SUMMARY
	+@$(if $(WSML_DRY_RUN),sh $(abspath pipelines/plan-summary.sh) "$(1)" "$(STORES)" "$(GPU_BENCH)" "$(INGEST_FLAGS)" "$(WSML)" "$(2)" "$(METHODS)" $(call wsml_plan_counts,$(1)),:)
endef
# WSML_PLAN_$(1)'s entries counted: DATASET:METHOD:EPOCHS:TODO:COUNT, one per kind (a
# full grid's per-run list is longer than one command line may be).
define wsml_plan_counts
$(foreach u,$(sort $(WSML_PLAN_$(1))),$(u):$(words $(filter $(u),$(WSML_PLAN_$(1)))))
endef

# The tables of SCHEME=linearinit go to their own files (RESULTS/table1-linearinit.md,
# ...) without the paper columns: the supplement reports End-to-end values only.
# $(1) = table, $(2) = the supplement's table number.
wsml_table_out = $(RESULTS)/$(1)$(if $(filter linearinit,$(SCHEME)),-linearinit)
wsml_paper_flag = $(if $(filter linearinit,$(SCHEME)),,--paper $(2))

# The words of $(1) that are not whole numbers.
wsml_not_numbers = $(strip $(foreach w,$(1),$(if $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(w))))))))))),$(w))))

# Checks made when make reads the makefiles, only if one of the goals is a table: a
# missing DATA or PRETRAINED stops make before anything runs (also under -j). Under -n
# they are warnings, so that `make -n table1` shows the plan before anything is
# downloaded.
comma := ,
WSML_DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
wsml_check_fail = $(if $(WSML_DRY_RUN),$$(warning $(1) (make -n: the plan is shown anyway)),$$(error $(1)))
# $(1) = the goal
define WSML_TABLE_CHECK
ifneq ($(filter $(1),$(MAKECMDGOALS)),)
ifeq ($(strip $(DATA)),)
$(call wsml_check_fail,make $(1): set DATA=DIR$(comma) the folder holding the raw releases (README "make table1 / make table2"))
endif
ifeq ($(wildcard $(PRETRAINED)),)
$(call wsml_check_fail,make $(1): ImageNet weights not found: PRETRAINED=$(PRETRAINED) (README "make table1 / make table2"))
endif
ifneq ($(filter-out $(WSML_METHODS_KNOWN),$(METHODS)),)
$$(error make $(1): METHODS: unknown method '$(firstword $(filter-out $(WSML_METHODS_KNOWN),$(METHODS)))' (known: $(WSML_METHODS_KNOWN)))
endif
ifneq ($(call wsml_not_numbers,$(SEEDS)),)
$$(error make $(1): SEEDS: '$(firstword $(call wsml_not_numbers,$(SEEDS)))' is not a seed (give whole numbers, e.g. SEEDS="1 2 3"))
endif
ifneq ($(filter-out end-to-end linearinit,$(SCHEME)),)
$$(error make $(1): SCHEME must be end-to-end or linearinit, not '$(SCHEME)')
endif
ifneq ($(filter-out relative absolute,$(THRESHOLDS)),)
$$(error make $(1): THRESHOLDS: '$(THRESHOLDS)': give relative, absolute or both)
endif
endif
endef
