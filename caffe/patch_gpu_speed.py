"""GPU precision and speed edits to a copy of a Caffe tree (applied by patch_tree.py, after its fixes).

What the patched Caffe reads from its environment (transfer/caffe/precision.py sets them):
  CAFFE_TF32=1                 cuBLAS and cuDNN may use TF32 tensor cores; otherwise (the default) they
                               compute in full fp32 (cuBLAS CUBLAS_DEFAULT_MATH, cuDNN CUDNN_FMA_MATH)
  CAFFE_CUDNN_DETERMINISTIC=1  the cuDNN convolution uses only algorithms cuDNN reports deterministic
                               (ranked by its heuristics, not timed), and max pooling its deterministic mode
The cuDNN convolution layer is replaced as a whole (cudnn_conv_layer.{hpp,cpp,cu} beside this file;
what changes: the header's comment). Like patch_tree.py's fixes, every edit is skipped where its
pattern is absent, and a second run changes nothing.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# (files glob, pattern, replacement, why)
FIXES: list[tuple[str, str, str, str]] = [
    ("src/caffe/common.cpp",
     r"(#else  // Normal GPU \+ CPU Caffe\.\n)(?!\n// cuBLAS math)",
     "\\1\n"
     "// cuBLAS math (caffe/patch_gpu_speed.py): TF32 tensor cores only when CAFFE_TF32=1; otherwise\n"
     "// CUBLAS_DEFAULT_MATH, full fp32 (NVIDIA_TF32_OVERRIDE=0, if set, vetoes TF32 in any case).\n"
     "static void caffe_set_cublas_math(cublasHandle_t handle) {\n"
     "#if CUDART_VERSION >= 11000\n"
     "  const char* tf32 = std::getenv(\"CAFFE_TF32\");\n"
     "  const bool on = tf32 != NULL && std::string(tf32) == \"1\";\n"
     "  if (cublasSetMathMode(handle, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)\n"
     "      != CUBLAS_STATUS_SUCCESS) {\n"
     "    LOG(ERROR) << \"cublasSetMathMode failed: cuBLAS keeps its default math\";\n"
     "  }\n"
     "  static bool logged = false;\n"
     "  if (!logged) {\n"
     "    LOG(INFO) << \"cuBLAS math: \" << (on ? \"TF32 tensor cores (CAFFE_TF32=1)\" : \"fp32\");\n"
     "    logged = true;\n"
     "  }\n"
     "#else\n"
     "  (void)handle;  // no TF32 before CUDA 11\n"
     "#endif\n"
     "}\n",
     "cuBLAS math mode from CAFFE_TF32: the helper"),
    ("src/caffe/common.cpp",
     r"(  if \(cublasCreate\(&cublas_handle_\) != CUBLAS_STATUS_SUCCESS\) \{\n"
     r"    LOG\(ERROR\) << \"Cannot create Cublas handle\. Cublas won't be available\.\";\n  \})\n",
     "\\1 else {\n    caffe_set_cublas_math(cublas_handle_);\n  }\n",
     "cuBLAS math mode from CAFFE_TF32: the handle of Caffe()"),
    ("src/caffe/common.cpp",
     r"(  CUBLAS_CHECK\(cublasCreate\(&Get\(\)\.cublas_handle_\)\);\n)(?!  caffe_set_cublas_math)",
     "\\1  caffe_set_cublas_math(Get().cublas_handle_);\n",
     "cuBLAS math mode from CAFFE_TF32: the handle of SetDevice()"),
    ("src/caffe/common.cpp", r"(#include <cstdio>\n)(?!#include <cstdlib>)", "\\1#include <cstdlib>\n",
     "cuBLAS math mode from CAFFE_TF32: std::getenv"),
    # Overlapping max-pooling windows (CaffeNet's 3x3, stride 2) share inputs: CUDNN_POOLING_MAX may sum
    # their gradients in no fixed order; the deterministic mode gives the same sums every run.
    ("include/caffe/util/cudnn.hpp",
     r"(  case PoolingParameter_PoolMethod_MAX:\n)    \*mode = CUDNN_POOLING_MAX;\n",
     "\\1    // CAFFE_CUDNN_DETERMINISTIC=1: cuDNN's deterministic max pooling (caffe/patch_gpu_speed.py)\n"
     "    *mode = std::getenv(\"CAFFE_CUDNN_DETERMINISTIC\") != NULL &&\n"
     "        std::string(std::getenv(\"CAFFE_CUDNN_DETERMINISTIC\")) == \"1\" ?\n"
     "        CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_MAX;\n",
     "deterministic cuDNN max pooling on CAFFE_CUDNN_DETERMINISTIC=1"),
    ("include/caffe/util/cudnn.hpp", r"(#include <cudnn\.h>\n)(?!\n?#include <cstdlib>)",
     "\\1#include <cstdlib>\n#include <string>\n",
     "deterministic cuDNN max pooling: std::getenv"),
]

# Whole files: (file beside this script, path in the tree, a text the tree's file must hold: the
# layer this replacement was written for).
FILES: list[tuple[str, str, str]] = [
    ("cudnn_conv_layer.hpp", "include/caffe/layers/cudnn_conv_layer.hpp", "class CuDNNConvolutionLayer"),
    ("cudnn_conv_layer.cpp", "src/caffe/layers/cudnn_conv_layer.cpp", "CuDNNConvolutionLayer<Dtype>::Reshape"),
    ("cudnn_conv_layer.cu", "src/caffe/layers/cudnn_conv_layer.cu", "CuDNNConvolutionLayer<Dtype>::Forward_gpu"),
]


def replace_files(tree: Path) -> list[str]:
    """Install FILES over the tree's (FIXES are applied by patch_tree.py); one line per file."""
    done = []
    for name, rel, marker in FILES:
        path, ours = tree / rel, (HERE / name).read_text()
        if not path.is_file() or marker not in path.read_text() or path.read_text() == ours:
            continue
        path.write_text(ours)
        done.append(f"{rel}: replaced by caffe/{name} (one cuDNN call for all groups, measured algorithms, "
                    "fp32/TF32 math type, deterministic algorithms on request)")
    return done
