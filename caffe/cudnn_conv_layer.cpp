// Installed over Caffe's src/caffe/layers/cudnn_conv_layer.cpp by caffe/patches/0012; what
// it changes and the environment variables it reads: caffe/cudnn_conv_layer.hpp.
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

size_t workspace_limit() {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();             // clear the error: the bound falls back to BVLC's
    return size_t(8) << 20;
  }
  return std::min(kWorkspaceCap, free_bytes / kFreeMemoryShare);
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

// Whether a measured algorithm may be used: it ran, fits the bound, is deterministic when that is
// asked, and computed in the math the run allows (never with fp16 conversion).
template <typename Perf>
bool usable(const Perf& p, size_t limit, bool deterministic, bool tf32) {
  if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) return false;
  if (deterministic && p.determinism != CUDNN_DETERMINISTIC) return false;
#if CUDNN_MAJOR >= 8 || CUDNN_MINOR >= 2
  if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
#endif
  return tf32 || p.mathType != CUDNN_TENSOR_OP_MATH;
}

// Results come sorted fastest first: the first usable one, or -1.
template <typename Perf>
int pick(const Perf* perf, int n, size_t limit, bool deterministic, bool tf32) {
  for (int k = 0; k < n; ++k) {
    if (usable(perf[k], limit, deterministic, tf32)) return k;
  }
  return -1;
}

std::string shape_text(const vector<int>& shape) {
  std::ostringstream s;
  for (size_t k = 0; k < shape.size(); ++k) s << (k ? "x" : "") << shape[k];
  return s.str();
}

template <typename Perf>
std::string describe(const Perf* perf, int k) {
  std::ostringstream s;
  if (k < 0) {
    s << "none fits: fallback";
  } else {
    s << "algo " << static_cast<int>(perf[k].algo) << " (";
    if (perf[k].time >= 0) s << perf[k].time << " ms, ";
    s << (perf[k].memory >> 20) << " MiB, math " << static_cast<int>(perf[k].mathType)
      << (perf[k].determinism == CUDNN_DETERMINISTIC ? ", deterministic" : "") << ")";
  }
  return s.str();
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

  // Algorithms that need no workspace until the first Reshape measures better ones.
  fwd_algo_.assign(bottom.size(), CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
  bwd_filter_algo_.assign(bottom.size(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
  bwd_data_algo_.assign(bottom.size(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  workspace_fwd_sizes_.assign(bottom.size(), 0);
  workspace_bwd_filter_sizes_.assign(bottom.size(), 0);
  workspace_bwd_data_sizes_.assign(bottom.size(), 0);

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
  if (this->bias_term_) {
    cudnn::createTensor4dDesc<Dtype>(&bias_desc_);
  }
  handles_setup_ = true;
}

// Rank the algorithms of the three directions for bottom i (descriptors set) and choose. Normally
// by measuring them (cudnnFind*); in deterministic mode by cuDNN's heuristics under the fixed cap,
// since a measured choice (timing noise, free memory) could differ between two runs, and so would
// their sums' rounding.
#define CAFFE_CUDNN_RANK(find, heuristic, ...) \
  (deterministic_ ? heuristic(__VA_ARGS__) : find(__VA_ARGS__))
template <typename Dtype>
typename CuDNNConvolutionLayer<Dtype>::Algos
CuDNNConvolutionLayer<Dtype>::FindAlgos(int i, const vector<int>& shape) {
  const size_t limit = deterministic_ ? kWorkspaceCap : workspace_limit();
  const cudnnMathType_t math = wanted_math(tf32_);
  Algos a;
  a.fwd_math = a.bwd_filter_math = a.bwd_data_math = math;

  cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int n = 0;
  CUDNN_CHECK(CAFFE_CUDNN_RANK(cudnnFindConvolutionForwardAlgorithm,
      cudnnGetConvolutionForwardAlgorithm_v7, handle_[kFwd],
      bottom_descs_[i], filter_desc_, conv_descs_[i], top_descs_[i],
      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, fwd));
  const int kf = pick(fwd, n, limit, deterministic_, tf32_);
  a.fwd = kf >= 0 ? fwd[kf].algo : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  if (kf >= 0 && tf32_) a.fwd_math = fwd[kf].mathType;
  const std::string fwd_text = describe(fwd, kf);

  cudnnConvolutionBwdFilterAlgoPerf_t bf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  CUDNN_CHECK(CAFFE_CUDNN_RANK(cudnnFindConvolutionBackwardFilterAlgorithm,
      cudnnGetConvolutionBackwardFilterAlgorithm_v7, handle_[kBwdFilter],
      bottom_descs_[i], top_descs_[i], bwd_filter_conv_descs_[i], filter_desc_,
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, bf));
  const int kbf = pick(bf, n, limit, deterministic_, tf32_);
  a.bwd_filter = kbf >= 0 ? bf[kbf].algo : (deterministic_ ?
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
  if (kbf >= 0 && tf32_) a.bwd_filter_math = bf[kbf].mathType;
  const std::string bf_text = describe(bf, kbf);

  cudnnConvolutionBwdDataAlgoPerf_t bd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  CUDNN_CHECK(CAFFE_CUDNN_RANK(cudnnFindConvolutionBackwardDataAlgorithm,
      cudnnGetConvolutionBackwardDataAlgorithm_v7, handle_[kBwdData],
      filter_desc_, top_descs_[i], bwd_data_conv_descs_[i], bottom_descs_[i],
      CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, bd));
  const int kbd = pick(bd, n, limit, deterministic_, tf32_);
  a.bwd_data = kbd >= 0 ? bd[kbd].algo : (deterministic_ ?
      CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 : CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  if (kbd >= 0 && tf32_) a.bwd_data_math = bd[kbd].mathType;
  const std::string bd_text = describe(bd, kbd);

  LOG(INFO) << "cuDNN convolution " << this->layer_param_.name() << " input "
            << shape_text(shape) << " group " << this->group_ << " ("
            << (tf32_ ? "tf32" : "fp32")
            << (deterministic_ ? ", deterministic: cuDNN's heuristic order" : ", measured")
            << ", workspace bound " << (limit >> 20) << " MiB): forward " << fwd_text
            << "; backward filter " << bf_text << "; backward data " << bd_text;
  return a;
}
#undef CAFFE_CUDNN_RANK

// Each direction's descriptor gets the math type its algorithm was measured with.
template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::SetMath(int i, const Algos& a) {
  CUDNN_CHECK(cudnnSetConvolutionMathType(conv_descs_[i], a.fwd_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_filter_conv_descs_[i], a.bwd_filter_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_data_conv_descs_[i], a.bwd_data_math));
}

// No memory for the chosen workspaces: algorithms that need none (deterministic ones if asked).
template <typename Dtype>
typename CuDNNConvolutionLayer<Dtype>::Algos CuDNNConvolutionLayer<Dtype>::FallBack(int i) {
  fwd_algo_[i] = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  bwd_filter_algo_[i] = deterministic_ ?
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  bwd_data_algo_[i] = deterministic_ ?
      CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 : CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  Algos a;
  a.fwd = fwd_algo_[i];
  a.bwd_filter = bwd_filter_algo_[i];
  a.bwd_data = bwd_data_algo_[i];
  a.fwd_math = a.bwd_filter_math = a.bwd_data_math = wanted_math(tf32_);
  SetMath(i, a);
  return a;
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

    // Measured once per input shape (Reshape runs before every forward pass).
    const vector<int>& shape = bottom[i]->shape();
    typename std::map<vector<int>, Algos>::iterator found = algo_cache_.find(shape);
    if (found == algo_cache_.end()) {
      found = algo_cache_.insert(std::make_pair(shape, FindAlgos(i, shape))).first;
    }
    const Algos& a = found->second;
    fwd_algo_[i] = a.fwd;
    bwd_filter_algo_[i] = a.bwd_filter;
    bwd_data_algo_[i] = a.bwd_data;
    SetMath(i, a);
  }

  // Workspace sizes of the chosen algorithms; the allocation only grows.
  size_t need[kStreams] = {0, 0, 0};
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (int i = 0; i < static_cast<int>(bottom.size()); i++) {
      CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle_[kFwd],
          bottom_descs_[i], filter_desc_, conv_descs_[i], top_descs_[i],
          fwd_algo_[i], &workspace_fwd_sizes_[i]));
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_[kBwdFilter],
          bottom_descs_[i], top_descs_[i], bwd_filter_conv_descs_[i], filter_desc_,
          bwd_filter_algo_[i], &workspace_bwd_filter_sizes_[i]));
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle_[kBwdData],
          filter_desc_, top_descs_[i], bwd_data_conv_descs_[i], bottom_descs_[i],
          bwd_data_algo_[i], &workspace_bwd_data_sizes_[i]));
      need[kFwd] = std::max(need[kFwd], workspace_fwd_sizes_[i]);
      need[kBwdFilter] = std::max(need[kBwdFilter], workspace_bwd_filter_sizes_[i]);
      need[kBwdData] = std::max(need[kBwdData], workspace_bwd_data_sizes_[i]);
    }
    bool grow = false;
    size_t total = 0;
    for (int s = 0; s < kStreams; ++s) {
      grow = grow || need[s] > workspace_sizes_[s];
      need[s] = std::max(need[s], workspace_sizes_[s]);
      total += need[s];
    }
    if (!grow) break;
    cudaFree(workspace_data_);
    workspace_data_ = NULL;
    if (cudaMalloc(&workspace_data_, total) == cudaSuccess) {
      char* p = reinterpret_cast<char*>(workspace_data_);
      for (int s = 0; s < kStreams; ++s) {
        workspace_sizes_[s] = need[s];
        workspace_[s] = need[s] ? p : NULL;
        p += need[s];
      }
      break;
    }
    cudaGetLastError();             // clear the allocation error
    CHECK_EQ(attempt, 0) << "cuDNN convolution " << this->layer_param_.name()
        << ": no GPU memory for the workspace even of the fallback algorithms";
    LOG(WARNING) << "cuDNN convolution " << this->layer_param_.name() << ": no GPU memory for a "
                 << (total >> 20) << " MiB workspace; falling back to algorithms that need little";
    for (int s = 0; s < kStreams; ++s) {
      workspace_sizes_[s] = 0;
      workspace_[s] = NULL;
      need[s] = 0;
    }
    for (int i = 0; i < static_cast<int>(bottom.size()); i++) {
      algo_cache_[bottom[i]->shape()] = FallBack(i);  // kept: no measuring again every pass
    }
  }

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
