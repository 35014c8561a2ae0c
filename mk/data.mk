# The paper's datasets: LMDBs of 256x256 Datums and train means, where the plan's nets read them:
#   data/ilsvrc12/<dataset>/train_lmdb, val_lmdb, mean.binaryproto
#
#   make data IMAGENET_DIR=/data/ILSVRC2012 [DEVKIT=dir] [TRAIN_LIST=train.txt VAL_LIST=val.txt]
#
# IMAGENET_DIR holds ILSVRC2012 as distributed: train/ (one folder a class) and val/ (one flat folder),
# with the devkit (data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt) in or beside it as
# ILSVRC2012_devkit_t12/, or at DEVKIT. Caffe's train.txt and val.txt are written from these; lists you
# already have (Caffe's, "path label" lines) are used instead when given. `transfer prepare` prints the
# disk it needs, decodes the JPEGs once (all/), derives every other set from those Datums, and resumes
# where it stopped when rerun.
DATA_JOBS ?= 0

.PHONY: data data-verify
data: setup
	@test -n "$(IMAGENET_DIR)" || \
	  { echo "usage: make data IMAGENET_DIR=dir (train/, val/, devkit) [DEVKIT=dir] [TRAIN_LIST=train.txt VAL_LIST=val.txt]"; exit 2; }
	$(TRANSFER) prepare --plan paper --imagenet "$(IMAGENET_DIR)" $(if $(DEVKIT),--devkit "$(DEVKIT)") \
	  $(if $(TRAIN_LIST),--train-list "$(TRAIN_LIST)") $(if $(VAL_LIST),--val-list "$(VAL_LIST)") \
	  $(if $(filter-out 0,$(DATA_JOBS)),--jobs $(DATA_JOBS))

data-verify:
	@for m in $(wildcard data/ilsvrc12/*/*_lmdb/manifest.json); do $(TRANSFER) data verify $$(dirname $$m) || exit 1; done
