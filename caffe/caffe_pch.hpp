// Precompiled for every .cpp file of libcaffe (caffe/CMakeLists.txt): the headers nearly all of them
// include, whose parsing (caffe.pb.h, Boost, glog) is most of a layer file's compile time.
#include "caffe/common.hpp"
#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/net.hpp"
#include "caffe/util/math_functions.hpp"
