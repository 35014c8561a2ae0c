// Installed over Caffe's src/caffe/layers/cudnn_conv_layer.cpp by caffe/patches/0012; what it
// changes, how it chooses algorithms, the line it logs and the variables it reads:
// caffe/cudnn_conv_layer.hpp.
#ifdef USE_CUDNN
#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layers/cudnn_conv_layer.hpp"

#if CUDNN_MAJOR < 7
#error "this cuDNN convolution layer needs cuDNN 7 or newer (grouped convolutions, math types)"
#endif

namespace caffe {

namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != NULL && std::string(v) == "1";
}

// Each direction's workspace is bounded by a fixed cap, or by a share of the free GPU memory when
// that is smaller: every cuDNN layer of the train and the test net holds its own three.
const size_t kWorkspaceCap = size_t(512) << 20;
const size_t kFreeMemoryShare = 128;
const int kMaxAlgos = 16;   // room for any direction's cuDNN results
static_assert(CUDNN_CONVOLUTION_FWD_ALGO_COUNT <= kMaxAlgos &&
              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT <= kMaxAlgos &&
              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT <= kMaxAlgos, "more cuDNN algorithms than kMaxAlgos");

size_t free_memory() {   // 0 if unknown
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();             // clear the error
    return 0;
  }
  return free_bytes;
}

size_t workspace_limit() {
  const size_t free_bytes = free_memory();
  return free_bytes ? std::min(kWorkspaceCap, free_bytes / kFreeMemoryShare) : size_t(8) << 20;  // BVLC's
}

// The math type a run asks for: FMA kernels only (no TF32) unless TF32 is allowed.
cudnnMathType_t wanted_math(bool tf32) {
#if CUDNN_MAJOR >= 8
  return tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
#else
  (void)tf32;                       // cuDNN 7 has no TF32
  return CUDNN_DEFAULT_MATH;
#endif
}

const char* math_name(cudnnMathType_t math) {
  switch (static_cast<int>(math)) {
    case 0: return "default";
    case 1: return "tensor_op";
    case 2: return "tensor_op_conversion";
    case 3: return "fma";
    default: return "other";
  }
}

// What a usable algorithm must satisfy: the workspace bound, determinism if asked, the math.
struct Want {
  size_t limit;
  bool deterministic;
  bool tf32;
};

// Whether a ranked algorithm may be used: it ran, fits the bound, is deterministic when that is
// asked, and computes in the math the run allows (never with fp16 conversion).
template <typename Perf>
bool usable(const Perf& p, const Want& want) {
  if (p.status != CUDNN_STATUS_SUCCESS || p.memory > want.limit) return false;
  if (want.deterministic && p.determinism != CUDNN_DETERMINISTIC) return false;
#if CUDNN_MAJOR >= 8 || CUDNN_MINOR >= 2
  if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
#endif
  return want.tf32 || p.mathType != CUDNN_TENSOR_OP_MATH;
}

// cuDNN's results come sorted best first: the first usable one, with the math type it was ranked
// with (under TF32; the run's otherwise), or `fallback` (by "none") when none is usable. The
// workspace size is set later, once the descriptor has the chosen math type.
template <typename Perf, typename Algo>
CuDNNConvChoice<Algo> Take(const Perf* perf, int n, Algo fallback, const Want& want, const char* by) {
  CuDNNConvChoice<Algo> c = {fallback, wanted_math(want.tf32), 0, "none"};
  for (int k = 0; k < n; ++k) {
    if (usable(perf[k], want)) {
      c.algo = perf[k].algo;
      c.by = by;
      if (want.tf32) c.math = perf[k].mathType;
      break;
    }
  }
  return c;
}

std::string shape_text(const vector<int>& shape) {
  std::ostringstream s;
  for (size_t k = 0; k < shape.size(); ++k) s << (k ? "x" : "") << shape[k];
  return s.str();
}

template <typename Algo>
void log_fields(std::ostream& s, const char* direction, const CuDNNConvChoice<Algo>& c) {
  s << " " << direction << "_algo=" << static_cast<int>(c.algo) << " " << direction << "_math="
    << math_name(c.math) << " " << direction << "_ws=" << c.workspace << " " << direction << "_by=" << c.by;
}

}  // namespace

template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  ConvolutionLayer<Dtype>::LayerSetUp(bottom, top);
  tf32_ = env_flag("CAFFE_TF32");
  deterministic_ = env_flag("CAFFE_CUDNN_DETERMINISTIC");

  for (int s = 0; s < kStreams; ++s) {
    CUDA_CHECK(cudaStreamCreate(&stream_[s]));
    CUDNN_CHECK(cudnnCreate(&handle_[s]));
    CUDNN_CHECK(cudnnSetStream(handle_[s], stream_[s]));
    workspace_sizes_[s] = 0;
    workspace_[s] = NULL;
  }
  workspace_data_ = NULL;

  // One filter descriptor for all groups: num_output filters of channels / group channels each.
  const int* kernel_shape_data = this->kernel_shape_.cpu_data();
  cudnn::createFilterDesc<Dtype>(&filter_desc_,
      this->num_output_, this->channels_ / this->group_,
      kernel_shape_data[0], kernel_shape_data[1]);

  for (int i = 0; i < static_cast<int>(bottom.size()); i++) {
    cudnnTensorDescriptor_t desc;
    cudnn::createTensor4dDesc<Dtype>(&desc);
    bottom_descs_.push_back(desc);
    cudnn::createTensor4dDesc<Dtype>(&desc);
    top_descs_.push_back(desc);
    cudnnConvolutionDescriptor_t conv;
    cudnn::createConvolutionDesc<Dtype>(&conv);
    conv_descs_.push_back(conv);
    cudnn::createConvolutionDesc<Dtype>(&conv);
    bwd_filter_conv_descs_.push_back(conv);
    cudnn::createConvolutionDesc<Dtype>(&conv);
    bwd_data_conv_descs_.push_back(conv);
  }
  algos_.resize(bottom.size());   // chosen by the first Reshape
  if (this->bias_term_) {
    cudnn::createTensor4dDesc<Dtype>(&bias_desc_);
  }
  handles_setup_ = true;
}

// cuDNN's ranking, measured (cudnnFind*) or by its heuristics (cudnnGet*_v7), one per direction.
template <typename Dtype>
cudnnStatus_t CuDNNConvolutionLayer<Dtype>::Search(int i, bool measure, int* n,
                                                   cudnnConvolutionFwdAlgoPerf_t* perf) {
  return (measure ? cudnnFindConvolutionForwardAlgorithm : cudnnGetConvolutionForwardAlgorithm_v7)(
      handle_[kFwd], bottom_descs_[i], filter_desc_, conv_descs_[i], top_descs_[i],
      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n, perf);
}

template <typename Dtype>
cudnnStatus_t CuDNNConvolutionLayer<Dtype>::Search(int i, bool measure, int* n,
                                                   cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  return (measure ? cudnnFindConvolutionBackwardFilterAlgorithm
                  : cudnnGetConvolutionBackwardFilterAlgorithm_v7)(
      handle_[kBwdFilter], bottom_descs_[i], top_descs_[i], bwd_filter_conv_descs_[i], filter_desc_,
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, perf);
}

template <typename Dtype>
cudnnStatus_t CuDNNConvolutionLayer<Dtype>::Search(int i, bool measure, int* n,
                                                   cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  return (measure ? cudnnFindConvolutionBackwardDataAlgorithm
                  : cudnnGetConvolutionBackwardDataAlgorithm_v7)(
      handle_[kBwdData], filter_desc_, top_descs_[i], bwd_data_conv_descs_[i], bottom_descs_[i],
      CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, n, perf);
}

template <typename Dtype>
size_t CuDNNConvolutionLayer<Dtype>::WorkspaceSize(int i, cudnnConvolutionFwdAlgo_t algo) {
  size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle_[kFwd],
      bottom_descs_[i], filter_desc_, conv_descs_[i], top_descs_[i], algo, &bytes));
  return bytes;
}

template <typename Dtype>
size_t CuDNNConvolutionLayer<Dtype>::WorkspaceSize(int i, cudnnConvolutionBwdFilterAlgo_t algo) {
  size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_[kBwdFilter],
      bottom_descs_[i], top_descs_[i], bwd_filter_conv_descs_[i], filter_desc_, algo, &bytes));
  return bytes;
}

template <typename Dtype>
size_t CuDNNConvolutionLayer<Dtype>::WorkspaceSize(int i, cudnnConvolutionBwdDataAlgo_t algo) {
  size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle_[kBwdData],
      filter_desc_, top_descs_[i], bwd_data_conv_descs_[i], bottom_descs_[i], algo, &bytes));
  return bytes;
}

// One direction: ranked as asked; a failed cudnnFind* (no memory for its trials on a shared GPU,
// say) falls back to cuDNN's heuristics with the reason logged.
template <typename Dtype>
template <typename Perf, typename Algo>
CuDNNConvChoice<Algo> CuDNNConvolutionLayer<Dtype>::Choose(int i, const char* direction, Rank rank,
    size_t limit, Algo none, std::string* fallback) {
  const Want want = {limit, deterministic_, tf32_};
  if (rank == kNone) return Take(static_cast<const Perf*>(NULL), 0, none, want, "none");
  Perf perf[kMaxAlgos];
  int n = 0;
  cudnnStatus_t status = Search(i, rank == kFind, &n, perf);
  if (status != CUDNN_STATUS_SUCCESS && rank == kFind) {
    LOG(WARNING) << "cuDNN convolution " << this->layer_param_.name() << ": measuring the "
                 << direction << " algorithms failed (" << cudnnGetErrorString(status)
                 << "); taking cuDNN's heuristic choice";
    *fallback = "find_failed";
    rank = kHeuristic;
    status = Search(i, false, &n, perf);
  }
  CUDNN_CHECK(status);
  return Take(perf, n, none, want, rank == kFind ? "find" : "heuristic");
}

template <typename Dtype>
typename CuDNNConvolutionLayer<Dtype>::Algos CuDNNConvolutionLayer<Dtype>::ChooseAll(
    int i, Rank rank, size_t limit, std::string* fallback) {
  // A TEST net runs no backward pass in training: its backward algorithms are not searched (no
  // trials, no workspace); they are the ones that need no workspace.
  const Rank backward = this->phase_ == TEST ? kNone : rank;
  Algos a;
  a.fwd = Choose<cudnnConvolutionFwdAlgoPerf_t>(i, "forward", rank, limit,
      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, fallback);
  a.bwd_filter = Choose<cudnnConvolutionBwdFilterAlgoPerf_t>(i, "backward filter", backward, limit,
      deterministic_ ? CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
      fallback);
  a.bwd_data = Choose<cudnnConvolutionBwdDataAlgoPerf_t>(i, "backward data", backward, limit,
      deterministic_ ? CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 : CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
      fallback);
  SetMath(i, a);                    // the workspace sizes depend on the math type
  a.fwd.workspace = WorkspaceSize(i, a.fwd.algo);
  a.bwd_filter.workspace = WorkspaceSize(i, a.bwd_filter.algo);
  a.bwd_data.workspace = WorkspaceSize(i, a.bwd_data.algo);
  return a;
}

// Each direction's descriptor gets the math type its algorithm was chosen with.
template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::SetMath(int i, const Algos& a) {
  CUDNN_CHECK(cudnnSetConvolutionMathType(conv_descs_[i], a.fwd.math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_filter_conv_descs_[i], a.bwd_filter.math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_data_conv_descs_[i], a.bwd_data.math));
}

// The cudnn_conv_algos line (its format: caffe/cudnn_conv_layer.hpp).
template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::Log(const vector<int>& shape, size_t limit, const Algos& a,
                                       const std::string& fallback) {
  std::string name = this->layer_param_.name();
  std::replace(name.begin(), name.end(), ' ', '_');
  std::ostringstream s;
  s << "cudnn_conv_algos layer=" << name << " phase=" << (this->phase_ == TRAIN ? "TRAIN" : "TEST")
    << " input=" << shape_text(shape) << " group=" << this->group_ << " precision="
    << (tf32_ ? "tf32" : "fp32") << " deterministic=" << (deterministic_ ? 1 : 0) << " bound_mib="
    << (limit >> 20) << " fallback=" << fallback;
  log_fields(s, "fwd", a.fwd);
  log_fields(s, "bwd_filter", a.bwd_filter);
  log_fields(s, "bwd_data", a.bwd_data);
  LOG(INFO) << s.str();
}

// One allocation for the three directions' workspaces; it only grows.
template <typename Dtype>
bool CuDNNConvolutionLayer<Dtype>::Allocate(size_t* total) {
  size_t need[kStreams] = {0, 0, 0};
  for (size_t i = 0; i < algos_.size(); ++i) {
    need[kFwd] = std::max(need[kFwd], algos_[i].fwd.workspace);
    need[kBwdFilter] = std::max(need[kBwdFilter], algos_[i].bwd_filter.workspace);
    need[kBwdData] = std::max(need[kBwdData], algos_[i].bwd_data.workspace);
  }
  bool grow = false;
  *total = 0;
  for (int s = 0; s < kStreams; ++s) {
    grow = grow || need[s] > workspace_sizes_[s];
    need[s] = std::max(need[s], workspace_sizes_[s]);
    *total += need[s];
  }
  if (!grow) return true;
  cudaFree(workspace_data_);
  workspace_data_ = NULL;
  for (int s = 0; s < kStreams; ++s) {
    workspace_sizes_[s] = 0;
    workspace_[s] = NULL;
  }
  if (cudaMalloc(&workspace_data_, *total) != cudaSuccess) {
    cudaGetLastError();             // clear the allocation error
    workspace_data_ = NULL;
    return false;
  }
  char* p = reinterpret_cast<char*>(workspace_data_);
  for (int s = 0; s < kStreams; ++s) {
    workspace_sizes_[s] = need[s];
    workspace_[s] = need[s] ? p : NULL;
    p += need[s];
  }
  return true;
}

// No GPU memory for the chosen workspaces: cuDNN's heuristic choice under a quarter of the free
// memory, then under none. Fatal in deterministic mode, where another algorithm would sum in
// another order and the run would no longer be what it says.
template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::Recover(size_t total) {
  const std::string name = this->layer_param_.name();
  CHECK(!deterministic_) << "cuDNN convolution " << name << ": a deterministic run, but no GPU "
      << "memory for the " << (total >> 20) << " MiB workspace of the algorithms cuDNN ranks "
      << "first; another algorithm would not give bit-identical reruns. Free GPU memory (fewer "
      << "nets on this GPU) or run without --deterministic";
  for (int attempt = 0;; ++attempt) {
    const size_t limit = attempt == 0 ? free_memory() / 4 / kStreams : 0;
    LOG(WARNING) << "cuDNN convolution " << name << ": no GPU memory for a " << (total >> 20)
                 << " MiB workspace; taking cuDNN's heuristic choice under " << (limit >> 20)
                 << " MiB a direction";
    for (int i = 0; i < static_cast<int>(algos_.size()); ++i) {
      std::string fallback = "workspace";
      algos_[i] = ChooseAll(i, kHeuristic, limit, &fallback);
      Log(shapes_[i], limit, algos_[i], "workspace");
      algo_cache_[shapes_[i]] = algos_[i];   // kept: no searching again every pass
    }
    if (Allocate(&total)) return;
    CHECK_EQ(attempt, 0) << "cuDNN convolution " << name << ": no GPU memory for the "
        << (total >> 20) << " MiB workspace even of algorithms chosen under no bound";
  }
}

template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  ConvolutionLayer<Dtype>::Reshape(bottom, top);
  CHECK_EQ(2, this->num_spatial_axes_)
      << "CuDNNConvolution input must have 2 spatial axes "
      << "(e.g., height and width). "
      << "Use 'engine: CAFFE' for general ND convolution.";
  const int height = bottom[0]->shape(this->channel_axis_ + 1);
  const int width = bottom[0]->shape(this->channel_axis_ + 2);
  const int height_out = top[0]->shape(this->channel_axis_ + 1);
  const int width_out = top[0]->shape(this->channel_axis_ + 2);
  const int* pad_data = this->pad_.cpu_data();
  const int* stride_data = this->stride_.cpu_data();

  shapes_.resize(bottom.size());
  for (int i = 0; i < static_cast<int>(bottom.size()); i++) {
    cudnn::setTensor4dDesc<Dtype>(&bottom_descs_[i],
        this->num_, this->channels_, height, width,
        this->channels_ * height * width, height * width, width, 1);
    cudnn::setTensor4dDesc<Dtype>(&top_descs_[i],
        this->num_, this->num_output_, height_out, width_out,
        this->num_output_ * this->out_spatial_dim_, this->out_spatial_dim_, width_out, 1);
    cudnnConvolutionDescriptor_t* convs[] = {
        &conv_descs_[i], &bwd_filter_conv_descs_[i], &bwd_data_conv_descs_[i]};
    for (int d = 0; d < kStreams; ++d) {
      cudnn::setConvolutionDesc<Dtype>(convs[d], bottom_descs_[i], filter_desc_,
          pad_data[0], pad_data[1], stride_data[0], stride_data[1]);
      CUDNN_CHECK(cudnnSetConvolutionGroupCount(*convs[d], this->group_));
      CUDNN_CHECK(cudnnSetConvolutionMathType(*convs[d], wanted_math(tf32_)));
    }

    // Chosen once per input shape (Reshape runs before every forward pass).
    shapes_[i] = bottom[i]->shape();
    typename std::map<vector<int>, Algos>::iterator found = algo_cache_.find(shapes_[i]);
    if (found == algo_cache_.end()) {
      const size_t limit = deterministic_ ? kWorkspaceCap : workspace_limit();
      std::string fallback = "none";
      const Algos a = ChooseAll(i, deterministic_ ? kHeuristic : kFind, limit, &fallback);
      Log(shapes_[i], limit, a, fallback);
      found = algo_cache_.insert(std::make_pair(shapes_[i], a)).first;
    }
    algos_[i] = found->second;
    SetMath(i, algos_[i]);
  }
  size_t total = 0;
  if (!Allocate(&total)) Recover(total);

  if (this->bias_term_) {
    cudnn::setTensor4dDesc<Dtype>(&bias_desc_, 1, this->num_output_, 1, 1);
  }
}

template <typename Dtype>
CuDNNConvolutionLayer<Dtype>::~CuDNNConvolutionLayer() {
  // Check that handles have been setup before destroying.
  if (!handles_setup_) { return; }

  for (int i = 0; i < static_cast<int>(bottom_descs_.size()); i++) {
    cudnnDestroyTensorDescriptor(bottom_descs_[i]);
    cudnnDestroyTensorDescriptor(top_descs_[i]);
    cudnnDestroyConvolutionDescriptor(conv_descs_[i]);
    cudnnDestroyConvolutionDescriptor(bwd_filter_conv_descs_[i]);
    cudnnDestroyConvolutionDescriptor(bwd_data_conv_descs_[i]);
  }
  if (this->bias_term_) {
    cudnnDestroyTensorDescriptor(bias_desc_);
  }
  cudnnDestroyFilterDescriptor(filter_desc_);

  for (int s = 0; s < kStreams; ++s) {
    cudaStreamDestroy(stream_[s]);
    cudnnDestroy(handle_[s]);
  }
  cudaFree(workspace_data_);
}

INSTANTIATE_CLASS(CuDNNConvolutionLayer);

}   // namespace caffe
#endif
