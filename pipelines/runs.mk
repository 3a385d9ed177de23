# Shared machinery of the pipelines: stores and runs are files, so make decides what
# is left to do. A finished run (RUNDIR/done) is never redone; an interrupted one
# (RUNDIR/last.safetensors without done) resumes; every run has its own directory,
# so `make -j` is safe; `make -n table1` prints the plan.
#
# Knobs (command line or environment):
#   DATA=DIR        raw releases (see README "Datasets for make table1/table2")
#   STORES=DIR      where stores go (default data/stores)
#   RUNS=DIR        where runs go (default runs)
#   BACKEND=cpu|cuda, SEED=N (default 1), TRAIN_FLAGS="..." extra wsml-train flags
#   LR_GRID=paper|full (the paper's chosen lr, or the supplement's quartered grid)

STORES ?= data/stores
RUNS ?= runs
BACKEND ?= cpu
SEED ?= 1
TRAIN_FLAGS ?=
INGEST_FLAGS ?=
WSML := $(abspath $(BUILD))

# ---- hyper-parameter grids (supp. §A, §B) ------------------------------------------
DELTA_REL_GRID ?= 0.1 0.2 0.3 0.4 0.5
R0_GRID ?= 1.0 1.5 2.0
DELTA_ABS_GRID ?= 0.1 0.15 0.2
# "dividing the range between values in {0.01, 0.001, 0.0001, 0.00001} into quarters"
# (supp. §A), read as linear quarters of each decade: 13 values.
LR_GRID_FULL := 1e-5 3.25e-5 5.5e-5 7.75e-5 1e-4 3.25e-4 5.5e-4 7.75e-4 1e-3 3.25e-3 5.5e-3 7.75e-3 1e-2
LR_GRID ?= paper
lr_values = $(if $(filter full,$(LR_GRID)),$(LR_GRID_FULL),$(if $(filter paper,$(LR_GRID)),$(1),$(LR_GRID)))

# ---- stores --------------------------------------------------------------------------
# $(1) = store name, $(2) = wsml-ingest flags. Target: $(STORES)/NAME.ok, written only
# after wsml-ingest succeeded (an interrupted ingest is redone with --force).
define WSML_STORE
$(STORES)/$(1).ok: | $(WSML)/wsml-ingest
	@mkdir -p $(STORES)
	$(WSML)/wsml-ingest $(2) --out $(STORES)/$(1) --force $(INGEST_FLAGS)
	touch $$@
endef

# ---- runs ------------------------------------------------------------------------------
# $(1) = run dir, $(2) = store path (made by a rule for $(2).ok), $(3) = wsml-train flags
# (a --seed in them overrides SEED). RUNDIR/done is written only after wsml-train
# succeeded; a run with last.safetensors but no done resumes where it stopped.
define WSML_RUN
$(1)/done: $(2).ok | $(WSML)/wsml-train
	@mkdir -p $(1)
	$(WSML)/wsml-train --store $(2) --out $(1) --backend $(BACKEND) --seed $(SEED) $(3) $(TRAIN_FLAGS) $$$$(test -f $(1)/last.safetensors && echo --resume || echo --force)
	touch $$@
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
