"""The Data layer's batch transform by several threads, with keyed random crops (keyed_transform.hpp).

Caffe's Data layer crops, mirrors and subtracts the mean of a batch's images one after another in its
one prefetch thread, drawing every crop from one sequential generator: on a modern GPU that thread is
the bottleneck. Here the layer pops the batch's Datums, then KeyedTransform transforms them on
`transform_threads` threads (DataParameter; 0 = the hardware's, at most 8) with each image's crop and
mirror keyed by (transform_key, its place in the run). The key is drawn from Caffe's generator, which
the solver's random_seed seeds, unless `transform_key` sets it.

The forward pass also logs, every 100 batches, how many of them it waited for (data_wait_log): Caffe's own
"Data layer prefetch queue empty" is logged once per 1000 waits, so a run that waits on every batch
may show it once or never.

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


WAIT_HPP = "  Blob<Dtype> transformed_data_;\n};\n"
WAIT_HPP_NEW = (
    "  Blob<Dtype> transformed_data_;\n\n"
    "  // The batch a forward pass takes; counts and logs the waits for the prefetch thread.\n"
    "  Batch<Dtype>* next_batch();\n"
    "  double waited_ms_ = 0;\n"
    "  int waited_batches_ = 0, batches_ = 0;\n"
    "};\n")
WAIT_POP = '  Batch<Dtype>* batch = prefetch_full_.pop("Data layer prefetch queue empty");\n'
WAIT_CPP_AT = "template <typename Dtype>\nvoid BasePrefetchingDataLayer<Dtype>::Forward_cpu("
WAIT_CPP_NEW = """\
template <typename Dtype>
Batch<Dtype>* BasePrefetchingDataLayer<Dtype>::next_batch() {
  CPUTimer timer;
  timer.Start();
  Batch<Dtype>* batch = prefetch_full_.pop("Data layer prefetch queue empty");
  const double ms = timer.MilliSeconds();
  // Not the first batch: that one always waits for the prefetch thread to start.
  if (batches_++ > 0 && ms > 0.5) {
    waited_ms_ += ms;
    ++waited_batches_;
  }
  if (batches_ % 100 == 0 && waited_batches_ > 0) {
    LOG(INFO) << this->layer_param_.name() << ": waited for data in " << waited_batches_
              << " of the last 100 batches, " << waited_ms_ << " ms";
    waited_ms_ = 0;
    waited_batches_ = 0;
  }
  return batch;
}

"""


def data_wait_log(tree: Path) -> list[str]:
    """Count and log the forward pass's waits for data (BasePrefetchingDataLayer::next_batch)."""
    hpp, cpp, cu = (tree / "include/caffe/layers/base_data_layer.hpp",
                    tree / "src/caffe/layers/base_data_layer.cpp", tree / "src/caffe/layers/base_data_layer.cu")
    if not (hpp.is_file() and cpp.is_file()) or "next_batch()" in hpp.read_text():
        return []
    h, c = hpp.read_text(), cpp.read_text()
    u = cu.read_text() if cu.is_file() else WAIT_POP
    if h.count(WAIT_HPP) != 1 or c.count(WAIT_POP) != 1 or c.count(WAIT_CPP_AT) != 1 or u.count(WAIT_POP) != 1:
        return ["src/caffe/layers/base_data_layer.cpp: not brocolli-caffe's: no log of the waits for data"]
    hpp.write_text(h.replace(WAIT_HPP, WAIT_HPP_NEW))
    c = c.replace(WAIT_POP, "  Batch<Dtype>* batch = next_batch();\n").replace(WAIT_CPP_AT, WAIT_CPP_NEW + WAIT_CPP_AT)
    cpp.write_text(c.replace('#include "caffe/util/blocking_queue.hpp"\n',
                             '#include "caffe/util/benchmark.hpp"\n#include "caffe/util/blocking_queue.hpp"\n'))
    if cu.is_file():
        cu.write_text(u.replace(WAIT_POP, "  Batch<Dtype>* batch = this->next_batch();\n"))
    return [f"{p.relative_to(tree)}: the forward pass logs its waits for data" for p in (hpp, cpp, cu) if p.is_file()]
