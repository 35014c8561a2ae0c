// Installed over Caffe's include/caffe/layers/cudnn_conv_layer.hpp by caffe/patches/0012.
// BVLC's layer ran one cuDNN call per group on a stream of its own, took cuDNN's heuristic algorithm
// under an 8 MB workspace and left the math type to cuDNN (TF32 on Ampere and newer). This one runs
// all groups in one call (cudnnSetConvolutionGroupCount), measures the algorithms once per input
// shape under a workspace bound that fits the GPU, and computes in the precision the run asked for:
//   CAFFE_TF32=1                 TF32 tensor cores allowed (CUDNN_DEFAULT_MATH); otherwise fp32
//                                FMA kernels only (CUDNN_FMA_MATH)
//   CAFFE_CUDNN_DETERMINISTIC=1  only algorithms cuDNN reports deterministic, ranked by cuDNN's
//                                heuristics rather than timed (a timed choice can differ between
//                                reruns), under the fixed workspace cap: bit-identical reruns
#ifndef CAFFE_CUDNN_CONV_LAYER_HPP_
#define CAFFE_CUDNN_CONV_LAYER_HPP_

#include <map>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/conv_layer.hpp"

namespace caffe {

#ifdef USE_CUDNN
/*
 * @brief cuDNN implementation of ConvolutionLayer.
 *        Fallback to ConvolutionLayer for CPU mode.
 *
 * The forward pass and the three gradients (bias, filters, input) each go to a cuDNN handle on a
 * stream of their own, so the backward gradients run in parallel.
*/
template <typename Dtype>
class CuDNNConvolutionLayer : public ConvolutionLayer<Dtype> {
 public:
  explicit CuDNNConvolutionLayer(const LayerParameter& param)
      : ConvolutionLayer<Dtype>(param), handles_setup_(false) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual ~CuDNNConvolutionLayer();

 protected:
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // The algorithms (and the math type each was measured with) for one input shape.
  struct Algos {
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnMathType_t fwd_math, bwd_filter_math, bwd_data_math;
  };
  Algos FindAlgos(int i, const vector<int>& shape);
  void SetMath(int i, const Algos& a);
  Algos FallBack(int i);

  enum { kFwd = 0, kBwdFilter = 1, kBwdData = 2, kStreams = 3 };
  bool handles_setup_;
  bool tf32_, deterministic_;
  cudnnHandle_t handle_[kStreams];
  cudaStream_t stream_[kStreams];

  // per bottom: algorithms and their workspace sizes
  vector<cudnnConvolutionFwdAlgo_t> fwd_algo_;
  vector<cudnnConvolutionBwdFilterAlgo_t> bwd_filter_algo_;
  vector<cudnnConvolutionBwdDataAlgo_t> bwd_data_algo_;
  vector<size_t> workspace_fwd_sizes_, workspace_bwd_filter_sizes_, workspace_bwd_data_sizes_;
  std::map<vector<int>, Algos> algo_cache_;  // input shape -> measured choice

  // per bottom: whole-blob descriptors (all groups); one convolution descriptor per direction,
  // since each direction's algorithm may have been measured with another math type
  vector<cudnnTensorDescriptor_t> bottom_descs_, top_descs_;
  vector<cudnnConvolutionDescriptor_t> conv_descs_, bwd_filter_conv_descs_, bwd_data_conv_descs_;
  cudnnTensorDescriptor_t bias_desc_;
  cudnnFilterDescriptor_t filter_desc_;

  size_t workspace_sizes_[kStreams];  // bytes each direction's workspace holds
  void* workspace_data_;              // one allocation for the three
  void* workspace_[kStreams];         // aliases into it
};
#endif

}  // namespace caffe

#endif  // CAFFE_CUDNN_CONV_LAYER_HPP_
