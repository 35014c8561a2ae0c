# The paper's datasets: LMDBs of 256x256 Datums and train means, where the plan's nets read them:
#   data/ilsvrc12/<dataset>/train_lmdb, val_lmdb, mean.binaryproto
#
#   make data IMAGENET_DIR=/data/ILSVRC2012 TRAIN_LIST=train.txt VAL_LIST=val.txt
#
# IMAGENET_DIR holds train/ and val/; the lists are Caffe's ILSVRC2012 lists ("path label" lines,
# e.g. from Caffe's get_ilsvrc_aux.sh). `transfer prepare` prints the disk it needs, decodes the JPEGs
# once (all/), derives every other set from those Datums, and resumes where it stopped when rerun.
DATA_JOBS ?= 0

.PHONY: data data-verify
data: setup
	@test -n "$(IMAGENET_DIR)" -a -n "$(TRAIN_LIST)" -a -n "$(VAL_LIST)" || \
	  { echo "usage: make data IMAGENET_DIR=dir (with train/ and val/) TRAIN_LIST=train.txt VAL_LIST=val.txt"; exit 2; }
	$(TRANSFER) prepare --plan paper --train-root $(IMAGENET_DIR)/train --train-list $(TRAIN_LIST) \
	  --val-root $(IMAGENET_DIR)/val --val-list $(VAL_LIST) $(if $(filter-out 0,$(DATA_JOBS)),--jobs $(DATA_JOBS))

data-verify:
	@for m in $(wildcard data/ilsvrc12/*/*_lmdb/manifest.json); do $(TRANSFER) data verify $$(dirname $$m) || exit 1; done
