"""Small source fixes applied to a copy of a Caffe tree before it is built (never to upstream).

Each fix is a regex edit that is skipped when its pattern is absent, so the same script serves
the brocolli-caffe sdist and BVLC/caffe master. Usage: python3 patch_tree.py TREE
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))   # the sibling patch modules, also when this file is imported
import patch_gpu_speed  # noqa: E402  (GPU precision and speed edits, applied after the fixes here)
from patch_data import data_wait_log, keyed_data_layer  # noqa: E402

# (files glob, pattern, replacement, why)
FIXES: list[tuple[str, str, str, str]] = [
    ("src/caffe/util/io.cpp",
     r"SetTotalBytesLimit\(([^,()]+),\s*[^()]+\)", r"SetTotalBytesLimit(\1)",
     "protobuf >= 3.21 has only the one-argument SetTotalBytesLimit"),
    ("python/caffe/io.py", r"\.tostring\(\)", ".tobytes()",
     "numpy 2.3 removed ndarray.tostring()"),
    ("python/caffe/io.py", r"\bas_grey=", "as_gray=",
     "scikit-image renamed as_grey to as_gray"),
    # pycaffe is Python 3 only here; drop its one use of `six` rather than add a dependency.
    ("python/caffe/*.py", r"\bsix\.iteritems\(([\w.]+)\)", r"\1.items()",
     "Python 3 dict.items() instead of six.iteritems"),
    ("python/caffe/*.py", r"\bsix\.itervalues\(([\w.]+)\)", r"iter(\1.values())",
     "Python 3 iter(dict.values()) instead of six.itervalues"),
    ("python/caffe/*.py", r"\bsix\.next\(", "next(", "builtin next instead of six.next"),
    ("python/caffe/*.py", r"^import six\n(?![\s\S]*\bsix\.)", "",
     "six no longer used"),
    # brocolli's `caffe train` dropped BVLC's `-weights` branch: fine-tuning weights were silently
    # ignored. Restore it (BVLC's CopyLayers, inlined); BVLC trees already have it and are skipped.
    ("tools/caffe.cpp",
     r"(    solver->Restore\(FLAGS_snapshot\.c_str\(\)\);\n  \})\n(?![ \t]*else)",
     "\\1 else if (FLAGS_weights.size()) {\n"
     "    std::stringstream names(FLAGS_weights);\n"
     "    for (std::string name; std::getline(names, name, ',');) {\n"
     "      LOG(INFO) << \"Finetuning from \" << name;\n"
     "      solver->net()->CopyTrainedLayersFrom(name);\n"
     "      for (int j = 0; j < solver->test_nets().size(); ++j) {\n"
     "        solver->test_nets()[j]->CopyTrainedLayersFrom(name);\n"
     "      }\n"
     "    }\n"
     "  }\n",
     "restore `caffe train -weights` (BVLC's CopyLayers)"),
    # `caffe train -gpu 0,1` calls caffe::NCCL, which brocolli's library does not have: its multi-GPU
    # code is Caffe rc3's P2PSync (parallel.hpp; each GPU runs the net's batch on its own solver, the
    # gradients are summed over a tree of GPUs each iteration). Use it where NCCL is absent.
    ("tools/caffe.cpp",
     r"(#ifdef USE_NCCL\n    caffe::NCCL<float> nccl\(solver\);\n.*\n)#else\n"
     r"(    LOG\(FATAL\) << \"Multi-GPU execution not available)",
     "\\1#elif !defined(CPU_ONLY)\n"
     "    caffe::P2PSync<float> sync(solver, NULL, solver->param());  // rc3's multi-GPU (patch_tree.py)\n"
     "    sync.Run(gpus);\n#else\n\\2",
     "`caffe train -gpu 0,1` through this tree's P2PSync when there is no NCCL"),
    # CUDA 13 removed these cudaDeviceProp fields; only Caffe::DeviceQuery reads them.
    ("src/caffe/common.cpp",
     r"(?<!13000)\n([ \t]*LOG\(INFO\) << \"(?:Clock rate|Concurrent copy and execution|Kernel execution timeout):"
     r"[^;]*;)",
     "\n#if CUDART_VERSION < 13000\n\\1\n#endif",
     "CUDA 13 removed clockRate, deviceOverlap, kernelExecTimeoutEnabled"),
    ("src/caffe/layers/cudnn_*conv_layer.cpp",
     r"(?<!caffe_compat_)\bcudnnGetConvolution(Forward|BackwardFilter|BackwardData)Algorithm\(",
     r"caffe_compat_cudnnGetConvolution\1Algorithm(",
     "cuDNN 8 removed cudnnGetConvolution*Algorithm (see caffe/cudnn8_compat.hpp)"),
    ("src/caffe/layers/cudnn_*conv_layer.cpp",
     r"\A(?!#include \"caffe/util/cudnn8_compat.hpp\")",
     "#include \"caffe/util/cudnn8_compat.hpp\"\n",
     "declare the caffe_compat_* functions"),
    # brocolli's proposal_layer.cu instantiates Backward_gpu (INSTANTIATE_LAYER_GPU_FUNCS) but defines
    # only Forward_gpu: the CUDA build fails to compile. Proposals take no gradient (Backward_cpu is
    # empty too), so the GPU backward is empty as well.
    ("src/caffe/layers/proposal_layer.cu",
     r"\A(?![\s\S]*ProposalLayer<Dtype>::Backward_gpu)([\s\S]*?)^(INSTANTIATE_LAYER_GPU_FUNCS\(ProposalLayer\);)",
     "\\1template <typename Dtype>\n"
     "void ProposalLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,\n"
     "    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}\n\n\\2",
     "define ProposalLayer::Backward_gpu (instantiated but never defined; proposals take no gradient)"),
    # A derived data set read through the whole set's database (a view, no copy): the Data layer keeps
    # only the records whose label is in `label_map_file` ("old new" lines, '#' comments) and, when
    # given, whose key is in `key_file` (one a line), each with its new label. Order is the source's.
    ("src/caffe/proto/caffe.proto",
     r"(  optional uint32 prefetch = 10 \[default = 4\];\n)(?!  // view:)",
     "\\1  // view: read a relabelled / selected subset of `source` without a copy (records whose label\n"
     "  // is in label_map_file, \"old new\" lines; and whose key is in key_file, one a line, if given).\n"
     "  optional string label_map_file = 11;\n"
     "  optional string key_file = 12;\n",
     "Data layer view of a database: label_map_file, key_file"),
    ("include/caffe/data_reader.hpp",
     r"(    const LayerParameter param_;\n)(?!    // view)",
     "\\1    // view (data_param label_map_file / key_file): loaded on first read\n"
     "    bool view_keep(const string& key, T* t);\n"
     "    std::map<int, int> view_labels_;\n"
     "    std::set<string> view_keys_;\n"
     "    bool view_loaded_ = false;\n",
     "Data layer view: the reader's label map and key set"),
    ("include/caffe/data_reader.hpp",
     r"return param\.name\(\) \+ \":\" \+ param\.data_param\(\)\.source\(\);",
     "return param.name() + \":\" + param.data_param().source() + \"|\" +\n"
     "        param.data_param().label_map_file() + \"|\" + param.data_param().key_file();",
     "Data layer view: one reader per view, not per source"),
    ("include/caffe/data_reader.hpp", r"(#include <map>\n)(?!#include <set>)", "\\1#include <set>\n",
     "Data layer view: std::set"),
    ("src/caffe/data_reader.cpp",
     r"(using boost::weak_ptr;\n)(?!\n// view)",
     "\\1\n// view: the label of either record type a reader serves\n"
     "static inline int view_label(const Datum& d) { return d.label(); }\n"
     "static inline void view_set_label(Datum* d, int l) { d->set_label(l); }\n"
     "static inline int view_label(const AnnotatedDatum& d) { return d.datum().label(); }\n"
     "static inline void view_set_label(AnnotatedDatum* d, int l) { d->mutable_datum()->set_label(l); }\n"
     "\n"
     "template <typename T>\n"
     "bool DataReader<T>::Body::view_keep(const string& key, T* t) {\n"
     "  const DataParameter& dp = param_.data_param();\n"
     "  if (!dp.has_label_map_file() && !dp.has_key_file()) return true;\n"
     "  if (!view_loaded_) {\n"
     "    if (dp.has_label_map_file()) {\n"
     "      std::ifstream in(dp.label_map_file().c_str());\n"
     "      CHECK(in) << \"cannot read label_map_file \" << dp.label_map_file();\n"
     "      string line;\n"
     "      for (int n = 1; std::getline(in, line); ++n) {\n"
     "        std::istringstream fields(line.substr(0, line.find('#')));\n"
     "        int from, to;\n"
     "        string extra;\n"
     "        if (!(fields >> from)) continue;\n"
     "        CHECK(fields >> to && !(fields >> extra) && to >= 0 && !view_labels_.count(from))\n"
     "            << dp.label_map_file() << \":\" << n << \": expected 'old new' (each old once), got '\"\n"
     "            << line << \"'\";\n"
     "        view_labels_[from] = to;\n"
     "      }\n"
     "      CHECK(!view_labels_.empty()) << dp.label_map_file() << \": the label map is empty\";\n"
     "    }\n"
     "    if (dp.has_key_file()) {\n"
     "      std::ifstream in(dp.key_file().c_str());\n"
     "      CHECK(in) << \"cannot read key_file \" << dp.key_file();\n"
     "      for (string line; std::getline(in, line);) {\n"
     "        if (!line.empty() && line[line.size() - 1] == '\\\\r') line.erase(line.size() - 1);\n"
     "        if (!line.empty()) view_keys_.insert(line);\n"
     "      }\n"
     "      CHECK(!view_keys_.empty()) << dp.key_file() << \": no key\";\n"
     "    }\n"
     "    LOG(INFO) << \"view of \" << dp.source() << \": \" << view_labels_.size() << \" mapped labels, \"\n"
     "              << view_keys_.size() << \" keys\";\n"
     "    view_loaded_ = true;\n"
     "  }\n"
     "  if (dp.has_key_file() && !view_keys_.count(key)) return false;\n"
     "  if (dp.has_label_map_file()) {\n"
     "    std::map<int, int>::const_iterator it = view_labels_.find(view_label(*t));\n"
     "    if (it == view_labels_.end()) return false;\n"
     "    view_set_label(t, it->second);\n"
     "  }\n"
     "  return true;\n"
     "}\n",
     "Data layer view: the filter"),
    ("src/caffe/data_reader.cpp", r"(#include <map>\n)(?!#include <sstream>)", "#include <fstream>\n\\1#include <sstream>\n",
     "Data layer view: file streams"),
    ("src/caffe/data_reader.cpp",
     r"  T\* t = qp->free_\.pop\(\);\n  // TODO deserialize in-place instead of copy\?\n"
     r"  t->ParseFromString\(cursor->value\(\)\);\n  qp->full_\.push\(t\);\n\n  // go to the next iter\n"
     r"  cursor->Next\(\);\n  if \(!cursor->valid\(\)\) \{\n"
     r"    DLOG\(INFO\) << \"Restarting data prefetching from start\.\";\n    cursor->SeekToFirst\(\);\n  \}\n",
     "  T* t = qp->free_.pop();\n"
     "  for (int wraps = 0;;) {\n"
     "    t->ParseFromString(cursor->value());\n"
     "    const bool keep = view_keep(cursor->key(), t);  // always true without a view\n"
     "    // go to the next iter\n"
     "    cursor->Next();\n"
     "    if (!cursor->valid()) {\n"
     "      DLOG(INFO) << \"Restarting data prefetching from start.\";\n"
     "      cursor->SeekToFirst();\n"
     "      CHECK_LT(++wraps, 2) << \"the view of \" << param_.data_param().source() << \" keeps no record\";\n"
     "    }\n"
     "    if (keep) break;\n"
     "  }\n"
     "  qp->full_.push(t);\n",
     "Data layer view: read_one skips the records the view leaves out"),
]

# A layer that declares Forward_gpu/Backward_gpu and stubs them only under CPU_ONLY, with no .cu file
# defining them (brocolli's ReLU6, HardSwish, HardSigmoid, PixelShuffle, MaxUnPool, Upsample): the
# CUDA build leaves them undefined and the tools fail to link. Give the CUDA build GPU functions that
# run the CPU code; cpu_data()/mutable_cpu_data() copy the blobs between device and host as needed.
CPU_ONLY_STUB = re.compile(r"^([ \t]*)#ifdef CPU_ONLY\n[ \t]*STUB_GPU\((\w+)\);[ \t]*\n[ \t]*#endif[ \t]*$",
                           re.MULTILINE)
GPU_VIA_CPU = """\\1#ifdef CPU_ONLY
\\1STUB_GPU(\\2);
\\1#else  // no CUDA kernels for this layer: the GPU functions run the CPU ones (patch_tree.py)
template <typename Dtype>
void \\2<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) { Forward_cpu(bottom, top); }
template <typename Dtype>
void \\2<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  Backward_cpu(top, propagate_down, bottom);
}
\\1#endif"""


def gpu_via_cpu(tree: Path) -> list[str]:
    """Apply GPU_VIA_CPU to each layer whose GPU functions no .cu file defines."""
    cuda = "\n".join(p.read_text(errors="replace") for p in sorted(tree.glob("src/caffe/**/*.cu")))
    done = []
    for path in sorted(tree.glob("src/caffe/layers/*.cpp")):
        text = path.read_text()
        names = [m.group(2) for m in CPU_ONLY_STUB.finditer(text)]
        missing = {n for n in names if f"{n}<Dtype>::Forward_gpu" not in cuda
                   and f"GPU_FUNCS({n})" not in cuda}
        if not missing:
            continue
        new = CPU_ONLY_STUB.sub(lambda m: m.expand(GPU_VIA_CPU) if m.group(2) in missing else m.group(0), text)
        path.write_text(new)
        done.append(f"{path.relative_to(tree)}: GPU functions of {', '.join(sorted(missing))} run the CPU "
                    "ones (no .cu defines them)")
    return done

# Shipped generated protobuf files from an older protoc; the build regenerates them.
STALE = ["include/caffe/proto/caffe.pb.h", "src/caffe/proto/caffe.pb.cc"]


def apply_fixes(tree: Path, fixes: list[tuple[str, str, str, str]]) -> list[str]:
    """Apply (files glob, pattern, replacement, why) edits to `tree`; one line per file changed."""
    done = []
    for pattern_files, pattern, repl, why in fixes:
        for path in sorted(tree.glob(pattern_files)):
            text = path.read_text()
            new, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
            if n and new != text:
                path.write_text(new)
                done.append(f"{path.relative_to(tree)}: {n} x {why}")
    return done


def patch_tree(tree: Path) -> list[str]:
    """Apply every edit to `tree` in place; returns one line per file changed."""
    shutil.copy(HERE / "cudnn8_compat.hpp", tree / "include/caffe/util/cudnn8_compat.hpp")
    done = apply_fixes(tree, FIXES)
    done += gpu_via_cpu(tree)
    done += keyed_data_layer(tree)   # after FIXES: it extends the view's DataParameter fields
    done += data_wait_log(tree)
    done += apply_fixes(tree, patch_gpu_speed.FIXES) + patch_gpu_speed.replace_files(tree)
    for rel in STALE:
        if (tree / rel).exists():
            (tree / rel).unlink()
            done.append(f"{rel}: removed (regenerated by the system protoc)")
    return done


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "src/caffe/proto/caffe.proto").is_file():
        sys.exit(f"usage: patch_tree.py TREE (a Caffe source tree); got {sys.argv[1:]}")
    for line in patch_tree(Path(sys.argv[1])):
        print(f"  patched {line}")
