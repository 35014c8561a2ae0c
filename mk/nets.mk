# Generated net, solver and split files of the paper's plan (committed; tests check they are current).
.PHONY: nets
nets: splits caffe
	$(TRANSFER) nets write --plan paper
