"""Inside the nets (`transfer analyze`): how similar the layers of a plan's nets are, and how far
fine-tuning moved them. One job a module:

  cka.py          linear CKA: the unbiased minibatch estimator and the full-batch reference (numpy)
  imageset.py     a fixed, seeded draw of validation images in batches; a net's TEST-phase transform
  activations.py  per-batch Gram matrices of every layer (pycaffe), cached in the run directory
  worker.py       forward runs in child processes, several at once; threads.py their BLAS threads
  pairs.py        which nets are compared, read off the plan
  movement.py     relative weight movement per layer from the start and from the base (caffe_pb2)
  stats.py        bootstrap intervals over nets and over image batches
  summary.py      pair results pooled into groups and rows
  compute.py      the whole analysis of a plan -> AnalysisResult
  result.py       the typed result and analysis.json
  figures.py      heat maps, CKA against n beside Figure 2, movement
  section.py      the report's section "Inside the nets"; verdicts.py its sentences
  analyze.py      the `transfer analyze` command
"""
