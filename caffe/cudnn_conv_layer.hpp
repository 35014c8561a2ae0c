// Installed over Caffe's include/caffe/layers/cudnn_conv_layer.hpp by caffe/patches/0012.
// BVLC's layer ran one cuDNN call per group on a stream of its own, took cuDNN's heuristic algorithm
// under an 8 MB workspace and left the math type to cuDNN (TF32 on Ampere and newer). This one runs
// all groups in one call (cudnnSetConvolutionGroupCount), chooses the algorithms once per input
// shape under a workspace bound that fits the GPU, and computes in the precision the run asked for:
//   CAFFE_TF32=1                 TF32 tensor cores allowed (CUDNN_DEFAULT_MATH); otherwise fp32
//                                FMA kernels only (CUDNN_FMA_MATH)
//   CAFFE_CUDNN_DETERMINISTIC=1  only algorithms cuDNN reports deterministic, ranked by cuDNN's
//                                heuristics rather than timed (a timed choice can differ between
//                                reruns), under the fixed workspace cap: bit-identical reruns
//
// How each direction's algorithm is chosen, per input shape:
//   - TRAIN net: measured (cudnnFind*), or in deterministic mode ranked by cuDNN's heuristics
//     (cudnnGet*_v7); the first that succeeded, fits the bound and suits the math is taken.
//   - TEST net: the forward pass as above; its backward passes are never searched (a TEST net runs
//     none in training): the algorithms that need no workspace, as a fallback would take.
//   - A failed cudnnFind* falls back to the heuristics' ranking, with a warning giving the reason.
//   - No GPU memory for the chosen workspaces: the heuristics' choice under a bound of a quarter of
//     the free memory, then under none, each with a warning. In deterministic mode this is fatal:
//     another algorithm sums in another order, and the run would no longer be bit-identical.
// Each choice is logged once per layer and input shape, one line of space-separated key=value
// fields (values without spaces), for programs to read:
//   cudnn_conv_algos layer=conv1 phase=TRAIN input=256x3x227x227 group=1 precision=fp32
//     deterministic=0 bound_mib=512 fallback=none
//     fwd_algo=1 fwd_math=fma fwd_ws=0 fwd_by=find
//     bwd_filter_algo=1 bwd_filter_math=fma bwd_filter_ws=1048576 bwd_filter_by=find
//     bwd_data_algo=0 bwd_data_math=fma bwd_data_ws=0 bwd_data_by=find
// (one line in the log). *_algo: cuDNN's enum value (cudnnConvolutionFwdAlgo_t,
// cudnnConvolutionBwdFilterAlgo_t, cudnnConvolutionBwdDataAlgo_t); *_math: default, tensor_op,
// tensor_op_conversion or fma; *_ws: workspace bytes; *_by: find (measured), heuristic (cuDNN's
// ranking) or none (not searched: a TEST net's backward, or the last fallback); fallback: none,
// find_failed or workspace (what made this line's choice differ from the normal one).
#ifndef CAFFE_CUDNN_CONV_LAYER_HPP_
#define CAFFE_CUDNN_CONV_LAYER_HPP_

#include <map>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/conv_layer.hpp"

namespace caffe {

#ifdef USE_CUDNN
// One direction's choice for one input shape: the algorithm, the math type it was chosen with, its
// workspace in bytes, and how it was chosen ("find", "heuristic" or "none").
template <typename Algo>
struct CuDNNConvChoice {
  Algo algo;
  cudnnMathType_t math;
  size_t workspace;
  const char* by;
};
struct CuDNNConvAlgos {
  CuDNNConvChoice<cudnnConvolutionFwdAlgo_t> fwd;
  CuDNNConvChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
  CuDNNConvChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
};

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
  typedef CuDNNConvAlgos Algos;

  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // How Choose ranks: measured, cuDNN's heuristics, or not at all (the no-workspace algorithm).
  enum Rank { kFind, kHeuristic, kNone };
  // The three directions' choices for bottom i (its descriptors set; their math types and the
  // workspace sizes set too), ranked by `rank` (a TEST net's backward: not at all) under `limit`
  // bytes a direction; a failed cudnnFind* sets *fallback to "find_failed".
  Algos ChooseAll(int i, Rank rank, size_t limit, std::string* fallback);
  template <typename Perf, typename Algo>
  CuDNNConvChoice<Algo> Choose(int i, const char* direction, Rank rank, size_t limit, Algo none,
                               std::string* fallback);
  // cuDNN's ranking of one direction's algorithms for bottom i (overloaded by direction).
  cudnnStatus_t Search(int i, bool measure, int* n, cudnnConvolutionFwdAlgoPerf_t* perf);
  cudnnStatus_t Search(int i, bool measure, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* perf);
  cudnnStatus_t Search(int i, bool measure, int* n, cudnnConvolutionBwdDataAlgoPerf_t* perf);
  size_t WorkspaceSize(int i, cudnnConvolutionFwdAlgo_t algo);
  size_t WorkspaceSize(int i, cudnnConvolutionBwdFilterAlgo_t algo);
  size_t WorkspaceSize(int i, cudnnConvolutionBwdDataAlgo_t algo);
  void SetMath(int i, const Algos& a);
  void Log(const vector<int>& shape, size_t limit, const Algos& a, const std::string& fallback);
  bool Allocate(size_t* total);  // the workspaces algos_ need; false if cudaMalloc of *total failed
  void Recover(size_t total);     // after a failed Allocate: fall back (fatal if deterministic)

  enum { kFwd = 0, kBwdFilter = 1, kBwdData = 2, kStreams = 3 };
  bool handles_setup_;
  bool tf32_, deterministic_;
  cudnnHandle_t handle_[kStreams];
  cudaStream_t stream_[kStreams];

  vector<Algos> algos_;                       // per bottom: the choice in use
  vector<vector<int> > shapes_;               // per bottom: its input shape
  std::map<vector<int>, Algos> algo_cache_;   // input shape -> choice, workspace sizes included

  // per bottom: whole-blob descriptors (all groups); one convolution descriptor per direction,
  // since each direction's algorithm may have been chosen with another math type
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
