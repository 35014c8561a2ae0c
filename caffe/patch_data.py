"""The Data layer's batch transform by several threads, with keyed random crops (keyed_transform.hpp).

Caffe's Data layer crops, mirrors and subtracts the mean of a batch's images one after another in its
one prefetch thread, drawing every crop from one sequential generator: on a modern GPU that thread is
the bottleneck. Here the layer pops the batch's Datums, then KeyedTransform transforms them on
`transform_threads` threads (DataParameter; 0 = the hardware's, at most 8) with each image's crop and
mirror keyed by (transform_key, its place in the run). The key is drawn from Caffe's generator, which
the solver's random_seed seeds, unless `transform_key` sets it.

All edits or none: a tree whose Data layer differs from brocolli-caffe's (BVLC master reads its
cursor itself) keeps Caffe's own transform, and the build log says so.
"""
from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROTO_AFTER = "  optional string key_file = 12;\n"
PROTO_ADD = (
    "  // batch transform: threads (0: the hardware's, at most 8) and the key of the crops' random\n"
    "  // stream (unset: drawn from Caffe's generator, seeded by the solver's random_seed)\n"
    "  optional uint32 transform_threads = 13 [default = 0];\n"
    "  optional uint64 transform_key = 14;\n")

HPP_INCLUDE = '#include "caffe/util/db.hpp"\n'
HPP_MEMBERS = "  DataReader<Datum> reader_;\n"
HPP_MEMBERS_ADD = (
    "  // the batch transform (keyed_transform.hpp): images transformed so far, threads\n"
    "  shared_ptr<KeyedTransform<Dtype> > keyed_;\n"
    "  uint64_t images_done_;\n"
    "  int transform_threads_;\n")

CPP_INCLUDE = '#include "caffe/data_transformer.hpp"\n'
CPP_SETUP = "  // Reshape top[0] and prefetch_data according to the batch_size.\n"
CPP_SETUP_ADD = (
    "  const DataParameter& dp = this->layer_param_.data_param();\n"
    "  const uint64_t key = dp.has_transform_key() ? dp.transform_key()\n"
    "      : (static_cast<uint64_t>(caffe_rng_rand()) << 32) ^ caffe_rng_rand();\n"
    "  keyed_.reset(new KeyedTransform<Dtype>(this->transform_param_, this->phase_, key));\n"
    "  images_done_ = 0;\n"
    "  transform_threads_ = dp.transform_threads() ? dp.transform_threads()\n"
    "                                               : KeyedTransform<Dtype>::AutoThreads();\n"
    "  LOG(INFO) << this->layer_param_.name() << \": batch transform on \" << transform_threads_\n"
    "            << \" threads, crop key \" << key;\n")
CPP_LOOP = """\
  for (int item_id = 0; item_id < batch_size; ++item_id) {
    timer.Start();
    // get a datum
    Datum& datum = *(reader_.full().pop("Waiting for data"));
    read_time += timer.MicroSeconds();
    timer.Start();
    // Apply data transformations (mirror, scale, crop...)
    int offset = batch->data_.offset(item_id);
    this->transformed_data_.set_cpu_data(top_data + offset);
    this->data_transformer_->Transform(datum, &(this->transformed_data_));
    // Copy label.
    if (this->output_labels_) {
      top_label[item_id] = datum.label();
    }
    trans_time += timer.MicroSeconds();

    reader_.free().push(const_cast<Datum*>(&datum));
  }
"""
CPP_LOOP_NEW = """\
  // The batch's Datums first, then their transform on several threads (keyed_transform.hpp).
  std::vector<const Datum*> items(batch_size);
  timer.Start();
  for (int item_id = 0; item_id < batch_size; ++item_id) {
    items[item_id] = reader_.full().pop("Waiting for data");
    if (this->output_labels_) {
      top_label[item_id] = items[item_id]->label();
    }
  }
  read_time += timer.MicroSeconds();
  timer.Start();
  keyed_->Batch(items, images_done_, top_data, transform_threads_);
  images_done_ += batch_size;
  trans_time += timer.MicroSeconds();
  for (int item_id = 0; item_id < batch_size; ++item_id) {
    reader_.free().push(const_cast<Datum*>(items[item_id]));
  }
"""

# (file, anchor, text put after it; or for the loop, text that replaces it)
EDITS: list[tuple[str, str, str, str]] = [
    ("src/caffe/proto/caffe.proto", PROTO_AFTER, PROTO_ADD, "after"),
    ("include/caffe/layers/data_layer.hpp", HPP_INCLUDE, '#include "caffe/util/keyed_transform.hpp"\n', "after"),
    ("include/caffe/layers/data_layer.hpp", HPP_MEMBERS, HPP_MEMBERS_ADD, "after"),
    ("src/caffe/layers/data_layer.cpp", CPP_INCLUDE,
     '#include "caffe/util/keyed_transform.hpp"\n#include "caffe/util/math_functions.hpp"\n', "after"),
    ("src/caffe/layers/data_layer.cpp", CPP_SETUP, CPP_SETUP_ADD, "before"),
    ("src/caffe/layers/data_layer.cpp", CPP_LOOP, CPP_LOOP_NEW, "replace"),
]


def keyed_data_layer(tree: Path) -> list[str]:
    """Apply EDITS to `tree` when every anchor is found once; otherwise change nothing."""
    texts = {rel: (tree / rel).read_text() for rel in {e[0] for e in EDITS} if (tree / rel).is_file()}
    if "transform_threads" in texts.get("src/caffe/proto/caffe.proto", ""):
        return []   # already applied
    if any(rel not in texts or texts[rel].count(anchor) != 1 for rel, anchor, _, _ in EDITS):
        return ["src/caffe/layers/data_layer.cpp: not brocolli-caffe's Data layer: "
                "Caffe's sequential transform kept (no transform_threads)"]
    for rel, anchor, text, where in EDITS:
        new = {"after": anchor + text, "before": text + anchor, "replace": text}[where]
        texts[rel] = texts[rel].replace(anchor, new)
    for rel, text in texts.items():
        (tree / rel).write_text(text)
    shutil.copy(HERE / "keyed_transform.hpp", tree / "include/caffe/util/keyed_transform.hpp")
    shutil.copy(HERE / "keyed_transform.cpp", tree / "src/caffe/util/keyed_transform.cpp")
    return [f"{rel}: the batch transform on several threads, keyed crops" for rel in sorted(texts)]
