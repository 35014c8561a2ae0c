// Installed into the Caffe tree by caffe/patch_tree.py. cuDNN 8 removed
// cudnnGetConvolution*Algorithm and their *Preference_t enums, which Caffe's cuDNN conv and
// deconv layers call; patch_tree.py renames those calls to the caffe_compat_* functions below.
// With cuDNN < 8 they forward to the originals; with cuDNN >= 8 they use the _v7 variants and
// pick the fastest algorithm that fits the workspace limit (what the old
// *_SPECIFY_WORKSPACE_LIMIT preference did).
#ifndef CAFFE_UTIL_CUDNN8_COMPAT_HPP_
#define CAFFE_UTIL_CUDNN8_COMPAT_HPP_
#ifdef USE_CUDNN
#include <cudnn.h>

#if CUDNN_MAJOR < 8
#define caffe_compat_cudnnGetConvolutionForwardAlgorithm cudnnGetConvolutionForwardAlgorithm
#define caffe_compat_cudnnGetConvolutionBackwardFilterAlgorithm \
  cudnnGetConvolutionBackwardFilterAlgorithm
#define caffe_compat_cudnnGetConvolutionBackwardDataAlgorithm \
  cudnnGetConvolutionBackwardDataAlgorithm
#else
#define CUDNN_CONVOLUTION_FWD_SPECIFY_WORKSPACE_LIMIT 2
#define CUDNN_CONVOLUTION_BWD_FILTER_SPECIFY_WORKSPACE_LIMIT 2
#define CUDNN_CONVOLUTION_BWD_DATA_SPECIFY_WORKSPACE_LIMIT 2
#define CUDNN_CONVOLUTION_FWD_PREFER_FASTEST 1
#define CUDNN_CONVOLUTION_BWD_FILTER_PREFER_FASTEST 1
#define CUDNN_CONVOLUTION_BWD_DATA_PREFER_FASTEST 1
#define CUDNN_CONVOLUTION_FWD_NO_WORKSPACE 0
#define CUDNN_CONVOLUTION_BWD_FILTER_NO_WORKSPACE 0
#define CUDNN_CONVOLUTION_BWD_DATA_NO_WORKSPACE 0

// Results of the _v7 queries come sorted fastest first; take the first that succeeds and fits.
#define CAFFE_CUDNN_PICK(perf, n, limit, algo, fallback)                      \
  do {                                                                        \
    *(algo) = (fallback);                                                     \
    for (int i_ = 0; i_ < (n); ++i_) {                                        \
      if ((perf)[i_].status == CUDNN_STATUS_SUCCESS && (perf)[i_].memory <= (limit)) { \
        *(algo) = (perf)[i_].algo;                                            \
        break;                                                                \
      }                                                                       \
    }                                                                         \
  } while (0)

inline cudnnStatus_t caffe_compat_cudnnGetConvolutionForwardAlgorithm(
    cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int /*preference*/,
    size_t limit, cudnnConvolutionFwdAlgo_t* algo) {
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int n = 0;
  cudnnStatus_t st = cudnnGetConvolutionForwardAlgorithm_v7(
      handle, x, w, conv, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  CAFFE_CUDNN_PICK(perf, n, limit, algo, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
  return CUDNN_STATUS_SUCCESS;
}

inline cudnnStatus_t caffe_compat_cudnnGetConvolutionBackwardFilterAlgorithm(
    cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dw, int /*preference*/,
    size_t limit, cudnnConvolutionBwdFilterAlgo_t* algo) {
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int n = 0;
  cudnnStatus_t st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      handle, x, dy, conv, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  CAFFE_CUDNN_PICK(perf, n, limit, algo, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
  return CUDNN_STATUS_SUCCESS;
}

inline cudnnStatus_t caffe_compat_cudnnGetConvolutionBackwardDataAlgorithm(
    cudnnHandle_t handle, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dx, int /*preference*/,
    size_t limit, cudnnConvolutionBwdDataAlgo_t* algo) {
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int n = 0;
  cudnnStatus_t st = cudnnGetConvolutionBackwardDataAlgorithm_v7(
      handle, w, dy, conv, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  CAFFE_CUDNN_PICK(perf, n, limit, algo, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  return CUDNN_STATUS_SUCCESS;
}
#endif  // CUDNN_MAJOR
#endif  // USE_CUDNN
#endif  // CAFFE_UTIL_CUDNN8_COMPAT_HPP_
