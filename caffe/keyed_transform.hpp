// Caffe's Datum transform (DataTransformer::Transform of a raw Datum: crop, mirror, mean, scale) for
// a whole batch, by several threads. Installed by caffe/patches/0008.
//
// Caffe draws each image's crop offsets and mirror from one sequential generator, so the draws depend
// on the order in which images are transformed. Here they come from a counter-based stream keyed by
// (key, the image's place in the run): a seeded run gives the same batches whatever the thread count.
// The distribution stays Caffe's: uniform offsets in [0, size - crop], mirror with probability 1/2
// (only with mirror: true), the centre crop outside TRAIN.
#ifndef CAFFE_UTIL_KEYED_TRANSFORM_HPP_
#define CAFFE_UTIL_KEYED_TRANSFORM_HPP_

#include <stdint.h>

#include <atomic>
#include <vector>

#include "caffe/proto/caffe.pb.h"

namespace caffe {

struct CropChoice {
  int h_off;
  int w_off;
  bool mirror;
};

template <typename Dtype>
class KeyedTransform {
 public:
  KeyedTransform(const TransformationParameter& param, Phase phase, uint64_t key);

  // The crop and mirror of image `index` of the run (0, 1, ... in the order the layer reads them).
  CropChoice Choose(uint64_t index, int height, int width) const;
  // One datum into `out` (channels x crop x crop, or the datum's size without a crop).
  void Apply(const Datum& datum, const CropChoice& choice, Dtype* out) const;
  // datums[i] is image first_index + i; its output starts at out + i * (size of one output).
  // On `threads` threads; if one cannot be started, on this one, then and ever after (warned once).
  void Batch(const std::vector<const Datum*>& datums, uint64_t first_index, Dtype* out,
             int threads) const;
  // Threads used when a layer asks for 0 (automatic): the CPUs this process may use (its CPU
  // affinity and its cgroup's CPU quota, v2 or v1), at most 8; worked out and logged once.
  static int AutoThreads();
  uint64_t key() const { return key_; }

 private:
  void CheckShape(const Datum& datum) const;

  const TransformationParameter param_;
  const Phase phase_;
  const uint64_t key_;
  std::vector<Dtype> mean_;         // mean_file, channels x height x width; empty without one
  int mean_channels_, mean_height_, mean_width_;
  std::vector<Dtype> mean_values_;  // mean_value, one per channel (a single value is replicated)
  mutable std::atomic<bool> one_thread_;  // a thread could not be started: no more tries
};

}  // namespace caffe

#endif  // CAFFE_UTIL_KEYED_TRANSFORM_HPP_
