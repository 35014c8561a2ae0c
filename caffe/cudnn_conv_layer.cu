// Installed over Caffe's src/caffe/layers/cudnn_conv_layer.cu by caffe/patches/0012: one
// cuDNN call a direction for all groups (see caffe/cudnn_conv_layer.hpp).
#ifdef USE_CUDNN
#include <vector>

#include "caffe/layers/cudnn_conv_layer.hpp"

namespace caffe {

__global__ void sync_conv_groups() { }

template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const Dtype* weight = this->blobs_[0]->gpu_data();
  for (int i = 0; i < static_cast<int>(bottom.size()); ++i) {
    const Dtype* bottom_data = bottom[i]->gpu_data();
    Dtype* top_data = top[i]->mutable_gpu_data();

    // Filters, every group at once.
    CUDNN_CHECK(cudnnConvolutionForward(handle_[kFwd],
          cudnn::dataType<Dtype>::one,
          bottom_descs_[i], bottom_data,
          filter_desc_, weight,
          conv_descs_[i],
          algos_[i].fwd.algo, workspace_[kFwd], algos_[i].fwd.workspace,
          cudnn::dataType<Dtype>::zero,
          top_descs_[i], top_data));

    // Bias.
    if (this->bias_term_) {
      const Dtype* bias_data = this->blobs_[1]->gpu_data();
      CUDNN_CHECK(cudnnAddTensor(handle_[kFwd],
            cudnn::dataType<Dtype>::one,
            bias_desc_, bias_data,
            cudnn::dataType<Dtype>::one,
            top_descs_[i], top_data));
    }

    // Synchronize the layer's streams with the rest of the net by launching an empty kernel into
    // the default (null) stream.
    // NOLINT_NEXT_LINE(whitespace/operators)
    sync_conv_groups<<<1, 1>>>();
  }
}

template <typename Dtype>
void CuDNNConvolutionLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* weight = NULL;
  Dtype* weight_diff = NULL;
  if (this->param_propagate_down_[0]) {
    weight = this->blobs_[0]->gpu_data();
    weight_diff = this->blobs_[0]->mutable_gpu_diff();
  }
  Dtype* bias_diff = NULL;
  if (this->bias_term_ && this->param_propagate_down_[1]) {
    bias_diff = this->blobs_[1]->mutable_gpu_diff();
  }
  for (int i = 0; i < static_cast<int>(top.size()); ++i) {
    const Dtype* top_diff = top[i]->gpu_diff();
    // The three gradients in parallel, each on its own stream; every group at once.
    // Gradient w.r.t. bias (no workspace: on the forward stream).
    if (this->bias_term_ && this->param_propagate_down_[1]) {
      CUDNN_CHECK(cudnnConvolutionBackwardBias(handle_[kFwd],
            cudnn::dataType<Dtype>::one,
            top_descs_[i], top_diff,
            cudnn::dataType<Dtype>::one,
            bias_desc_, bias_diff));
    }

    // Gradient w.r.t. weights.
    if (this->param_propagate_down_[0]) {
      const Dtype* bottom_data = bottom[i]->gpu_data();
      CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle_[kBwdFilter],
            cudnn::dataType<Dtype>::one,
            bottom_descs_[i], bottom_data,
            top_descs_[i], top_diff,
            bwd_filter_conv_descs_[i],
            algos_[i].bwd_filter.algo, workspace_[kBwdFilter],
            algos_[i].bwd_filter.workspace,
            cudnn::dataType<Dtype>::one,
            filter_desc_, weight_diff));
    }

    // Gradient w.r.t. bottom data.
    if (propagate_down[i]) {
      if (weight == NULL) {
        weight = this->blobs_[0]->gpu_data();
      }
      Dtype* bottom_diff = bottom[i]->mutable_gpu_diff();
      CUDNN_CHECK(cudnnConvolutionBackwardData(handle_[kBwdData],
            cudnn::dataType<Dtype>::one,
            filter_desc_, weight,
            top_descs_[i], top_diff,
            bwd_data_conv_descs_[i],
            algos_[i].bwd_data.algo, workspace_[kBwdData],
            algos_[i].bwd_data.workspace,
            cudnn::dataType<Dtype>::zero,
            bottom_descs_[i], bottom_diff));
    }

    // Synchronize the layer's streams with the rest of the net by launching an empty kernel into
    // the default (null) stream.
    // NOLINT_NEXT_LINE(whitespace/operators)
    sync_conv_groups<<<1, 1>>>();
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(CuDNNConvolutionLayer);

}  // namespace caffe
#endif
