# Shared machinery of the pipelines: stores and runs are files, so make decides what
# is left to do.
#   - A store is STORES/NAME with STORES/NAME.ok written after wsml-ingest succeeded;
#     an interrupted ingest leaves no .ok and is redone from scratch (--force).
#   - A run is a directory RUNDIR with RUNDIR/done written only when run.jsonl holds
#     wsml-train's final line. A finished run is never redone (its run.jsonl final line
#     is checked even when done is missing); an interrupted one (last.safetensors, no
#     final line) resumes exactly where it stopped (wsml-train --resume); a run that
#     stopped early (--max-steps, a signal) makes make fail, and the next make resumes it.
#   - Stores, the pretrained weights and the executables are order-only prerequisites:
#     rebuilding wsml-train or re-ingesting a store never reruns finished runs (remove
#     RUNDIR to redo one).
#   - Every run has its own directory and stores are only read by runs, so `make -j` is
#     safe; `make -n table1` prints the plan (the commands still to run) and runs nothing.
#
# Knobs (command line or environment):
#   DATA=DIR        raw releases (see README "make table1 / make table2")
#   STORES=DIR      where stores go (default data/stores)
#   RUNS=DIR        where runs go (default runs)
#   RESULTS=DIR     where tables go (default results)
#   BACKEND=cpu|cuda, SEED=N (default 1), TRAIN_FLAGS="..." extra wsml-train flags,
#   INGEST_FLAGS="..." extra wsml-ingest flags (e.g. --size 224 --jobs 8)
#   LR_GRID=paper|full|"V1 V2 ..." (the paper's chosen lr, the supplement's quartered
#                   grid, or your own values)

STORES ?= data/stores
RUNS ?= runs
RESULTS ?= results
BACKEND ?= cpu
SEED ?= 1
TRAIN_FLAGS ?=
INGEST_FLAGS ?=
# Commands use absolute paths (so a run's config.json names them wherever make ran);
# prerequisites use $(BUILD) as the GNUmakefile's rules name the executables, so that a
# fresh checkout builds them first.
WSML := $(abspath $(BUILD))
WSML_TRAIN_DEPS := $(BUILD)/wsml-train $(if $(filter cuda,$(BACKEND)),$(CUDA_SO))

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

# ---- stores --------------------------------------------------------------------------
# $(1) = store name, $(2) = wsml-ingest flags. Target: $(STORES)/NAME.ok, written only
# after wsml-ingest succeeded (an interrupted ingest is redone with --force).
define WSML_STORE
$(STORES)/$(1).ok: | $(BUILD)/wsml-ingest
	@mkdir -p $(STORES)
	$(WSML)/wsml-ingest $(2) --out $(STORES)/$(1) --force $(INGEST_FLAGS)
	touch $$@
endef

# ---- runs ------------------------------------------------------------------------------
# $(1) = run dir, $(2) = store path (made by a rule for $(2).ok), $(3) = wsml-train flags
# (a --seed in them overrides SEED: the last one wins), $(4) = more order-only
# prerequisites (e.g. the pretrained weights when a rule makes them).
define WSML_RUN
$(1)/done: | $(2).ok $(WSML_TRAIN_DEPS) $(4)
	@mkdir -p $(1)
	$(call wsml_finished,$(1)) || $(WSML)/wsml-train --store $(2) --out $(1) --backend $(BACKEND) --seed $(SEED) $(3) $(TRAIN_FLAGS) $$$$(test -f $(1)/last.safetensors && echo --resume || echo --force)
	@$(call wsml_finished,$(1)) && touch $$@ || { echo "make: $(1): wsml-train stopped before the end (no final line in run.jsonl); make again to resume it" >&2; exit 1; }
endef

# The methods of Table 1/2 on one dataset. $(1) = table name, $(2) = store name,
# $(3) = lr values, $(4) = delta-rel values, $(5) = common flags.
# Defines run targets and appends their done files to RUNS_$(1).
define WSML_METHOD_GRID
$(foreach lr,$(3),\
  $(eval $(call WSML_RUN,$(RUNS)/$(1)/$(2)/an-lr$(lr),$(STORES)/$(2),--loss an --lr $(lr) $(5)))\
  $(eval RUNS_$(1) += $(RUNS)/$(1)/$(2)/an-lr$(lr)/done)\
  $(foreach m,ll-r ll-ct ll-cp,\
    $(foreach d,$(4),\
      $(eval $(call WSML_RUN,$(RUNS)/$(1)/$(2)/$(m)-rel$(d)-lr$(lr),$(STORES)/$(2),--loss $(m) --threshold relative --delta-rel $(d) --lr $(lr) $(5)))\
      $(eval RUNS_$(1) += $(RUNS)/$(1)/$(2)/$(m)-rel$(d)-lr$(lr)/done))\
    $(foreach r0,$(R0_GRID),$(foreach da,$(DELTA_ABS_GRID),\
      $(eval $(call WSML_RUN,$(RUNS)/$(1)/$(2)/$(m)-abs$(r0)-$(da)-lr$(lr),$(STORES)/$(2),--loss $(m) --threshold absolute --r0 $(r0) --delta-abs $(da) --lr $(lr) $(5)))\
      $(eval RUNS_$(1) += $(RUNS)/$(1)/$(2)/$(m)-abs$(r0)-$(da)-lr$(lr)/done)))))
endef

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
endif
endef
