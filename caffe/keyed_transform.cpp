// See keyed_transform.hpp. Installed as src/caffe/util/keyed_transform.cpp by caffe/patches/0008.
#include <sched.h>
#include <stdint.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/keyed_transform.hpp"

namespace caffe {

namespace {

// SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer; consecutive inputs give
// statistically independent outputs, which is what a counter-based stream needs.
inline uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Uniform in [0, n) from 64 random bits (Lemire's multiply-shift; bias below n / 2^64).
inline int below(uint64_t bits, int n) {
  return static_cast<int>((static_cast<unsigned __int128>(bits) * static_cast<uint64_t>(n)) >> 64);
}

// CPUs this process may run on (sched_getaffinity), or 0 if unknown.
int affinity_cpus() {
  for (int n = 1024; n <= (1 << 16); n *= 4) {   // a larger mask on a machine with more CPUs
    cpu_set_t* set = CPU_ALLOC(n);
    if (set == NULL) return 0;
    const size_t size = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(size, set);
    const int status = sched_getaffinity(0, size, set);
    const int err = errno;
    const int count = status == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (status == 0 || err != EINVAL) return count;
  }
  return 0;
}

// The CPU quota of a cgroup directory, in CPUs (v2 cpu.max "QUOTA PERIOD", v1 cpu.cfs_quota_us and
// cpu.cfs_period_us); 0 for none ("max", -1) or none readable.
double quota_cpus(const std::string& dir) {
  double quota = 0, period = 0;
  std::ifstream v2((dir + "/cpu.max").c_str());
  std::string text;
  if (v2 >> text) {
    if (text == "max" || !(v2 >> period)) return 0;
    quota = std::atof(text.c_str());
  } else {
    std::ifstream q((dir + "/cpu.cfs_quota_us").c_str()), p((dir + "/cpu.cfs_period_us").c_str());
    if (!(q >> quota) || !(p >> period)) return 0;
  }
  return quota > 0 && period > 0 ? quota / period : 0;
}

// The smallest CPU quota on the way from this process's cgroup up to the hierarchy's root (a
// parent's quota bounds its children), in CPUs; 0 if there is none. /proc/self/cgroup names the
// cgroup: "0::PATH" (v2, under /sys/fs/cgroup) or "ID:cpu,cpuacct:PATH" (v1).
double cgroup_cpus() {
  std::ifstream in("/proc/self/cgroup");
  double least = 0;
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    std::vector<std::string> mounts;
    if (controllers == ",,") {               // v2; "unified" where v1 and v2 are mounted together
      mounts.push_back("/sys/fs/cgroup");
      mounts.push_back("/sys/fs/cgroup/unified");
    } else if (controllers.find(",cpu,") != std::string::npos) {
      mounts.push_back("/sys/fs/cgroup/cpu,cpuacct");
      mounts.push_back("/sys/fs/cgroup/cpu");
    } else {
      continue;
    }
    for (size_t m = 0; m < mounts.size(); ++m) {
      for (std::string path = line.substr(b + 1);; path = path.substr(0, path.rfind('/'))) {
        const double cpus = quota_cpus(mounts[m] + path);
        if (cpus > 0 && (least == 0 || cpus < least)) least = cpus;
        if (path.empty() || path == "/") break;
      }
    }
  }
  return least;
}

// What AutoThreads returns (logged).
int count_threads() {
  const int affinity = affinity_cpus();
  const double quota = cgroup_cpus();
  int cpus = affinity > 0 ? affinity : static_cast<int>(std::thread::hardware_concurrency());
  if (quota > 0) cpus = std::min(cpus, static_cast<int>(std::ceil(quota)));
  const int threads = std::max(1, std::min(cpus, 8));
  std::ostringstream q;
  if (quota > 0) q << quota; else q << "none";
  LOG(INFO) << "batch transform: " << threads << " thread(s) by default (CPU affinity "
            << affinity << ", cgroup CPU quota " << q.str() << ", at most 8)";
  return threads;
}

int usable_threads() {
  static const int threads = count_threads();   // once a process (thread-safe)
  return threads;
}

}  // namespace

template <typename Dtype>
KeyedTransform<Dtype>::KeyedTransform(const TransformationParameter& param, Phase phase,
                                      uint64_t key)
    : param_(param), phase_(phase), key_(key),
      mean_channels_(0), mean_height_(0), mean_width_(0), one_thread_(false) {
  CHECK(!(param_.has_mean_file() && param_.mean_value_size() > 0))
      << "Cannot specify mean_file and mean_value at the same time";
  if (param_.has_mean_file()) {
    BlobProto proto;
    ReadProtoFromBinaryFileOrDie(param_.mean_file().c_str(), &proto);
    Blob<Dtype> mean;
    mean.FromProto(proto);
    mean_.assign(mean.cpu_data(), mean.cpu_data() + mean.count());
    mean_channels_ = mean.channels();
    mean_height_ = mean.height();
    mean_width_ = mean.width();
  }
  for (int c = 0; c < param_.mean_value_size(); ++c) {
    mean_values_.push_back(param_.mean_value(c));
  }
}

template <typename Dtype>
CropChoice KeyedTransform<Dtype>::Choose(uint64_t index, int height, int width) const {
  const uint64_t stream = mix(key_ ^ mix(index));
  CropChoice choice;
  choice.mirror = param_.mirror() && (mix(stream + 1) >> 63);
  const int crop = param_.crop_size();
  if (crop && phase_ == TRAIN) {
    choice.h_off = below(mix(stream + 2), height - crop + 1);
    choice.w_off = below(mix(stream + 3), width - crop + 1);
  } else if (crop) {
    choice.h_off = (height - crop) / 2;
    choice.w_off = (width - crop) / 2;
  } else {
    choice.h_off = choice.w_off = 0;
  }
  return choice;
}

template <typename Dtype>
void KeyedTransform<Dtype>::CheckShape(const Datum& datum) const {
  CHECK(!datum.encoded()) << "an encoded Datum needs OpenCV to decode; this build reads raw Datums";
  const int crop = param_.crop_size();
  CHECK_GT(datum.channels(), 0);
  CHECK_GE(datum.height(), crop);
  CHECK_GE(datum.width(), crop);
  const size_t pixels = static_cast<size_t>(datum.channels()) * datum.height() * datum.width();
  CHECK(datum.data().size() == pixels || static_cast<size_t>(datum.float_data_size()) == pixels)
      << "a Datum of " << datum.channels() << "x" << datum.height() << "x" << datum.width()
      << " holds " << datum.data().size() << " bytes and " << datum.float_data_size() << " floats";
  if (!mean_.empty()) {
    CHECK_EQ(datum.channels(), mean_channels_) << "the mean file's channels";
    CHECK_EQ(datum.height(), mean_height_) << "the mean file's height";
    CHECK_EQ(datum.width(), mean_width_) << "the mean file's width";
  }
  if (!mean_values_.empty()) {
    CHECK(mean_values_.size() == 1 || static_cast<int>(mean_values_.size()) == datum.channels())
        << "Specify either 1 mean_value or as many as channels: " << datum.channels();
  }
}

// The arithmetic of DataTransformer::Transform, element by element, so a given crop and mirror
// give the same floats; only the loop order differs (a row at a time).
template <typename Dtype>
void KeyedTransform<Dtype>::Apply(const Datum& datum, const CropChoice& choice, Dtype* out) const {
  const int channels = datum.channels(), height = datum.height(), width = datum.width();
  const int crop = param_.crop_size();
  const int out_h = crop ? crop : height, out_w = crop ? crop : width;
  const Dtype scale = param_.scale();
  const bool has_uint8 = datum.data().size() > 0;
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(datum.data().data());
  for (int c = 0; c < channels; ++c) {
    const Dtype mean_value = mean_values_.empty() ? Dtype(0)
        : mean_values_[mean_values_.size() == 1 ? 0 : c];
    for (int h = 0; h < out_h; ++h) {
      const int src = (c * height + choice.h_off + h) * width + choice.w_off;
      Dtype* row = out + (c * out_h + h) * out_w;
      if (has_uint8 && !mean_.empty()) {  // the pipeline's case, without per-pixel branches
        const uint8_t* s = bytes + src;
        const Dtype* m = &mean_[src];
        if (choice.mirror) {
          for (int w = 0; w < out_w; ++w) row[out_w - 1 - w] = (static_cast<Dtype>(s[w]) - m[w]) * scale;
        } else {
          for (int w = 0; w < out_w; ++w) row[w] = (static_cast<Dtype>(s[w]) - m[w]) * scale;
        }
        continue;
      }
      for (int w = 0; w < out_w; ++w) {
        const Dtype element = has_uint8 ? static_cast<Dtype>(bytes[src + w])
                                        : static_cast<Dtype>(datum.float_data(src + w));
        Dtype value;
        if (!mean_.empty()) {
          value = (element - mean_[src + w]) * scale;
        } else if (!mean_values_.empty()) {
          value = (element - mean_value) * scale;
        } else {
          value = element * scale;
        }
        row[choice.mirror ? out_w - 1 - w : w] = value;
      }
    }
  }
}

template <typename Dtype>
void KeyedTransform<Dtype>::Batch(const std::vector<const Datum*>& datums, uint64_t first_index,
                                  Dtype* out, int threads) const {
  const int n = datums.size();
  if (n == 0) return;
  const Datum& first = *datums[0];
  const int crop = param_.crop_size();
  const size_t step = static_cast<size_t>(first.channels()) * (crop ? crop : first.height()) *
                      (crop ? crop : first.width());
  for (int i = 0; i < n; ++i) {
    CheckShape(*datums[i]);
    CHECK(datums[i]->channels() == first.channels() && datums[i]->height() == first.height() &&
          datums[i]->width() == first.width())
        << "image " << i << " of a batch is " << datums[i]->channels() << "x"
        << datums[i]->height() << "x" << datums[i]->width() << ", the first "
        << first.channels() << "x" << first.height() << "x" << first.width();
  }
  // Contiguous runs of images per thread; each image's result depends only on its own index.
  const int workers = std::max(1, std::min(threads, n));
  auto run = [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const Datum& d = *datums[i];
      Apply(d, Choose(first_index + i, d.height(), d.width()), out + i * step);
    }
  };
  auto part = [&](int t) { return static_cast<int>(static_cast<int64_t>(n) * t / workers); };
  std::vector<std::thread> pool;
  int started = 1;                  // parts 1 .. started-1 run on threads of their own
  for (; started < workers && !one_thread_; ++started) {
    try {
      pool.emplace_back(run, part(started), part(started + 1));
    } catch (const std::exception& e) {   // std::system_error: no thread (EAGAIN: a limit)
      if (!one_thread_.exchange(true)) {
        LOG(WARNING) << "batch transform: cannot start a thread (" << e.what()
                     << "); transforming on one thread from now on";
      }
      break;
    }
  }
  run(0, part(1));
  for (int t = started; t < workers; ++t) run(part(t), part(t + 1));  // the parts no thread took
  for (size_t t = 0; t < pool.size(); ++t) pool[t].join();
}

template <typename Dtype>
int KeyedTransform<Dtype>::AutoThreads() {
  return usable_threads();
}

template class KeyedTransform<float>;
template class KeyedTransform<double>;

}  // namespace caffe
