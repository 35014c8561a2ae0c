# The paper's datasets: LMDBs of 256x256 Datums and train means, laid out as the plan expects:
#   $(DATA_DIR)/<dataset>/train_lmdb, val_lmdb, mean.binaryproto
#
#   make data IMAGENET_DIR=/data/ILSVRC2012 TRAIN_LIST=train.txt VAL_LIST=val.txt
#
# IMAGENET_DIR holds train/ and val/; the lists are Caffe's ILSVRC2012 lists ("path label" lines,
# e.g. from Caffe's get_ilsvrc_aux.sh). JPEGs are decoded once, into all/train_lmdb and all/val_lmdb;
# every other dataset is derived from those (Datums relabelled, no decoding). Every step resumes where
# it stopped when rerun. Train databases are shuffled (seeded): Caffe reads them in order.
DATA_DIR ?= data/ilsvrc12
DATA_SEED ?= 0
DATA_JOBS ?= 0
# Extra `transfer data build` options, e.g. --skip-bad.
DATA_BUILD_FLAGS ?=
DATA_HALVES := half0A half0B half1A half1B half2A half2B half3A half3B
DATA_NATMAN := manmade natural
DATA_REDUCED := reduced1300 reduced1000 reduced0750 reduced0500 reduced0250 reduced0100 reduced0050 \
                reduced0025 reduced0010 reduced0005 reduced0002 reduced0001
DATA_TRAIN_SETS := all $(DATA_HALVES) $(DATA_NATMAN) $(DATA_REDUCED)
DATA_VAL_SETS := all $(DATA_HALVES) $(DATA_NATMAN)
# 3*256*256 bytes + Datum/LMDB page overhead: 49 pages of 4 KiB.
DATA_KIB_PER_IMAGE := 196

_comma := ,
_empty :=
_space := $(_empty) $(_empty)
_csv = $(subst $(_space),$(_comma),$(strip $(1)))

DATA_TARGETS := $(foreach d,$(DATA_TRAIN_SETS),$(DATA_DIR)/$(d)/train_lmdb/manifest.json $(DATA_DIR)/$(d)/mean.binaryproto) \
                $(foreach d,$(DATA_VAL_SETS),$(DATA_DIR)/$(d)/val_lmdb/manifest.json)

.PHONY: data data-check data-estimate data-verify
data: data-estimate
	$(MAKE) --no-print-directory $(DATA_TARGETS)

data-check:
	@test -n "$(IMAGENET_DIR)" -a -n "$(TRAIN_LIST)" -a -n "$(VAL_LIST)" || \
	  { echo "usage: make data IMAGENET_DIR=dir (with train/ and val/) TRAIN_LIST=train.txt VAL_LIST=val.txt"; exit 2; }
	@test -d "$(IMAGENET_DIR)/train" -a -d "$(IMAGENET_DIR)/val" || { echo "$(IMAGENET_DIR) lacks train/ or val/"; exit 2; }
	@test -f "$(TRAIN_LIST)" -a -f "$(VAL_LIST)" || { echo "$(TRAIN_LIST) or $(VAL_LIST) not found"; exit 2; }

# Estimates from the list lengths: whole sets once, the 4 random splits and man-made/natural each
# cover the whole set again (A+B), the reduced sets are the first n images of each class.
data-estimate: data-check
	@t=$$(grep -c . "$(TRAIN_LIST)"); v=$$(grep -c . "$(VAL_LIST)"); k=$(DATA_KIB_PER_IMAGE); \
	 r=$$(( (1000+750+500+250+100+50+25+10+5+2+1) * 1000 )); \
	 gib() { echo $$(( $$1 * k / 1024 / 1024 )); }; \
	 echo "disk estimate at $$k KiB an image:"; \
	 echo "  all (decoded once)          train $$t, val $$v images: $$(gib $$((t + v))) GiB"; \
	 echo "  4 random splits (A+B)       $$(gib $$((4 * (t + v)))) GiB"; \
	 echo "  man-made + natural          $$(gib $$((t + v))) GiB"; \
	 echo "  reduced sets (1000 classes)  $$(gib $$((r + t))) GiB (reduced1300 is about the whole train set again)"; \
	 echo "  total                       $$(gib $$((6 * (t + v) + r + t))) GiB"; \
	 mkdir -p "$(DATA_DIR)"; df -h "$(DATA_DIR)" | tail -1 | awk '{print "  free on " $$6 ": " $$4}'

# The two decoded databases.
$(DATA_DIR)/all/train_lmdb/manifest.json: $(TRAIN_LIST)
	$(TRANSFER) data build --list "$(TRAIN_LIST)" --root "$(IMAGENET_DIR)/train" --out $(@D) \
	  --shuffle --seed $(DATA_SEED) --jobs $(DATA_JOBS) $(DATA_BUILD_FLAGS)
$(DATA_DIR)/all/val_lmdb/manifest.json: $(VAL_LIST)
	$(TRANSFER) data build --list "$(VAL_LIST)" --root "$(IMAGENET_DIR)/val" --out $(@D) \
	  --jobs $(DATA_JOBS) $(DATA_BUILD_FLAGS)

# Derived lists (DIR/NAME/files.txt: the whole list's paths in its order, labels remapped).
$(DATA_DIR)/lists/train/.written: $(TRAIN_LIST)
	$(TRANSFER) splits write-lists --whole-list "$(TRAIN_LIST)" --out $(@D) \
	  --only $(call _csv,$(DATA_HALVES) $(DATA_NATMAN) $(DATA_REDUCED))
	touch $@
$(DATA_DIR)/lists/val/.written: $(VAL_LIST)
	$(TRANSFER) splits write-lists --whole-list "$(VAL_LIST)" --out $(@D) \
	  --only $(call _csv,$(DATA_HALVES) $(DATA_NATMAN))
	touch $@

# Derived databases: relabelled Datums of the whole ones, byte-identical to building the list directly.
$(DATA_DIR)/%/train_lmdb/manifest.json: $(DATA_DIR)/all/train_lmdb/manifest.json $(DATA_DIR)/lists/train/.written
	$(TRANSFER) data derive --from $(DATA_DIR)/all/train_lmdb --list $(DATA_DIR)/lists/train/$*/files.txt \
	  --out $(@D) --shuffle --seed $(DATA_SEED)
$(DATA_DIR)/%/val_lmdb/manifest.json: $(DATA_DIR)/all/val_lmdb/manifest.json $(DATA_DIR)/lists/val/.written
	$(TRANSFER) data derive --from $(DATA_DIR)/all/val_lmdb --list $(DATA_DIR)/lists/val/$*/files.txt \
	  --out $(@D)

$(DATA_DIR)/%/mean.binaryproto: $(DATA_DIR)/%/train_lmdb/manifest.json
	$(TRANSFER) data mean $(DATA_DIR)/$*/train_lmdb --out $@

data-verify:
	@for m in $(wildcard $(DATA_DIR)/*/*_lmdb/manifest.json); do $(TRANSFER) data verify $$(dirname $$m) || exit 1; done
