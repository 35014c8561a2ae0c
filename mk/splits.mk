# Class splits: `make splits` regenerates splits/ (random halves + WordNet man-made/natural) from the committed
# splits/synsets.txt; an unchanged file is left alone, a hand-edited one is an error (see splits/README.md).
# SPLITS_SYNSETS=FILE copies a new synsets.txt (and the synset_words.txt beside it) in first.
SPLITS_SYNSETS ?=

.PHONY: splits test-splits
splits: | $(VENV)/.installed
	$(TRANSFER) splits make --out splits $(if $(SPLITS_SYNSETS),--synsets $(SPLITS_SYNSETS))

test-splits: | $(VENV)/.installed
	$(PY) -m pytest -q tests/test_splits.py tests/test_wordnet.py
