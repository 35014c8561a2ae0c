# CUDA part of caffe/CMakeLists.txt (CAFFE_GPU=ON). Caffe's own arch lists stop at sm_61 and
# CUDA 12/13 reject old archs, so the wanted list is filtered by what this nvcc accepts.
find_program(CAFFE_NVCC nvcc HINTS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" /usr/local/cuda/bin)
if(NOT CMAKE_CUDA_COMPILER AND CAFFE_NVCC)
  set(CMAKE_CUDA_COMPILER "${CAFFE_NVCC}")
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "CAFFE_GPU=1 but nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
endif()

execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-arch
                OUTPUT_VARIABLE _arch_out RESULT_VARIABLE _arch_rc ERROR_QUIET)
set(_archs)
foreach(a ${CAFFE_CUDA_ARCHS})
  # Older nvcc has no --list-gpu-arch: keep the wanted list and let nvcc complain.
  if(NOT _arch_rc EQUAL 0 OR _arch_out MATCHES "compute_${a}\n" OR _arch_out MATCHES "compute_${a}$")
    list(APPEND _archs ${a})
  endif()
endforeach()
if(NOT _archs)
  message(FATAL_ERROR "none of CAFFE_CUDA_ARCHS=${CAFFE_CUDA_ARCHS} is accepted by ${CMAKE_CUDA_COMPILER}")
endif()
# Real code for every arch, plus PTX of the newest so newer GPUs can JIT it.
list(GET _archs -1 _newest)
list(TRANSFORM _archs APPEND "-real")
list(APPEND _archs ${_newest}-virtual)
set(CMAKE_CUDA_ARCHITECTURES ${_archs})
message(STATUS "transfer caffe: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}")
# CUDA 13's thrust/cub need C++17, also in the .cpp files that include thrust (g++ compiles those).
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CXX_STANDARD 17)
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
foreach(lib cudart cublas curand)
  if(NOT TARGET CUDA::${lib})
    message(FATAL_ERROR "CAFFE_GPU=1: ${lib} not found next to ${CMAKE_CUDA_COMPILER} "
                        "(install the CUDA toolkit's lib${lib} development files)")
  endif()
endforeach()

# CUDA 13 moved thrust/cub/libcu++ to include/cccl: nvcc finds them, g++ needs the path.
set(CAFFE_CCCL_INCLUDE)
foreach(d ${CUDAToolkit_INCLUDE_DIRS})
  if(EXISTS "${d}/cccl/thrust")
    list(APPEND CAFFE_CCCL_INCLUDE "${d}/cccl")
  endif()
endforeach()

# cuDNN: CAFFE_CUDNN=AUTO uses it when found, ON requires it, OFF leaves it out. Its version moved
# from cudnn.h to cudnn_version.h in cuDNN 8.
set(CAFFE_CUDNN AUTO CACHE STRING "use cuDNN: AUTO, ON or OFF")
set(CUDNN_VERSION "")
if(NOT CAFFE_CUDNN STREQUAL "OFF")
  find_path(CUDNN_INCLUDE cudnn.h HINTS "$ENV{CUDNN_ROOT}/include" ${CUDAToolkit_INCLUDE_DIRS})
  find_library(CUDNN_LIBRARY cudnn HINTS "$ENV{CUDNN_ROOT}/lib" "$ENV{CUDNN_ROOT}/lib64" ${CUDAToolkit_LIBRARY_DIR})
  if(CUDNN_INCLUDE AND CUDNN_LIBRARY)
    foreach(h cudnn_version.h cudnn.h)
      if(EXISTS "${CUDNN_INCLUDE}/${h}" AND NOT CUDNN_VERSION)
        file(STRINGS "${CUDNN_INCLUDE}/${h}" _ver REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
        string(REGEX REPLACE "[^0-9]*([0-9]+)[^0-9]+([0-9]+)[^0-9]+([0-9]+).*" "\\1.\\2.\\3" CUDNN_VERSION "${_ver}")
      endif()
    endforeach()
  endif()
  if(CAFFE_CUDNN STREQUAL "ON" AND NOT CUDNN_VERSION)
    message(FATAL_ERROR "CAFFE_CUDNN=ON but cudnn.h / libcudnn were not found (set CUDNN_ROOT)")
  endif()
endif()

# What the build used, for BUILD_INFO (scripts/build-caffe.sh merges this file into it).
file(WRITE "${CMAKE_BINARY_DIR}/cuda_info.json"
  "{\"cuda\": \"${CMAKE_CUDA_COMPILER_VERSION}\", \"nvcc\": \"${CMAKE_CUDA_COMPILER}\", "
  "\"cudnn\": \"${CUDNN_VERSION}\", \"archs\": \"${CMAKE_CUDA_ARCHITECTURES}\"}\n")

# USAGE: PUBLIC for the library built here, INTERFACE for a finished one (CAFFE_GTEST). The CUDA
# libraries' directories (a PyPI toolkit in the cache, /usr/local/cuda) go into the rpaths
# (caffe_rpath), so the tools and pycaffe load them without LD_LIBRARY_PATH.
function(caffe_cuda_setup target usage)
  target_link_libraries(${target} ${usage} CUDA::cudart CUDA::cublas CUDA::curand)
  target_include_directories(${target} ${usage} ${CAFFE_CCCL_INCLUDE})
  caffe_link_dirs(CUDA::cudart CUDA::cublas CUDA::curand)
  if(usage STREQUAL "PUBLIC")
    # Caffe's .cu files include Caffe headers that pull in glog/boost; keep host warnings quiet.
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-w>)
  endif()
  if(CUDNN_VERSION)
    target_compile_definitions(${target} ${usage} USE_CUDNN)
    target_include_directories(${target} ${usage} ${CUDNN_INCLUDE})
    target_link_libraries(${target} ${usage} ${CUDNN_LIBRARY})
    caffe_link_dirs(${CUDNN_LIBRARY})
  endif()
  set(CAFFE_LINK_DIRS "${CAFFE_LINK_DIRS}" PARENT_SCOPE)
  message(STATUS "transfer caffe: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, "
                 "cuDNN ${CUDNN_VERSION}")
endfunction()
