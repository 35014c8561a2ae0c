# Caffe's own gtest suite (src/caffe/test of the tree), built against a finished build: included by
# caffe/CMakeLists.txt when CAFFE_GTEST names this file, with S the build's tree and `caffe` its
# libcaffe.so (scripts/caffe-gtest.sh drives it). The tree is only read; the binary goes to
# CAFFE_GTEST_OUT. The test files are compiled as CAFFE_GTEST_UNITS combined units (CMake's unity
# build): they parse the same gtest and Caffe headers, which is most of their compile time.
set(CAFFE_GTEST_OUT "${CMAKE_BINARY_DIR}" CACHE PATH "where the test binary goes")
set(CAFFE_GTEST_UNITS 4 CACHE STRING "test files compiled as this many units")

set(T "${S}/src/caffe/test")
file(GLOB test_srcs "${T}/test_*.cpp")
# Test files left out, with the reason: the `file` lines of exclusions.txt beside this file.
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/exclusions.txt" excluded REGEX "^file ")
foreach(line ${excluded})
  string(REGEX REPLACE "^file +([^ ]+).*" "\\1" name "${line}")
  list(FILTER test_srcs EXCLUDE REGEX "/${name}$")
endforeach()
if(NOT test_srcs)
  message(FATAL_ERROR "${T} has no test_*.cpp: this tree carries no Caffe tests")
endif()
if(CAFFE_GPU)
  file(GLOB test_cu "${T}/test_*.cu")
endif()

# The tree's own gtest (1.7, which its tests are written for), not the system's.
add_library(caffe_gtest_gtest STATIC "${S}/src/gtest/gtest-all.cpp")
target_include_directories(caffe_gtest_gtest PUBLIC "${S}/src")
target_link_libraries(caffe_gtest_gtest PUBLIC Threads::Threads)

add_executable(caffe_gtest ${test_srcs} ${test_cu})
list(LENGTH test_srcs n)
math(EXPR batch "(${n} + ${CAFFE_GTEST_UNITS} - 1) / ${CAFFE_GTEST_UNITS}")
set_target_properties(caffe_gtest PROPERTIES OUTPUT_NAME test_all RUNTIME_OUTPUT_DIRECTORY "${CAFFE_GTEST_OUT}"
  UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${batch})
# Files that define the same namespace-scope constant (`static const float eps`) as another compile
# alone; so do the .cu files.
set(alone)
foreach(f ${test_srcs})
  file(STRINGS "${f}" clash REGEX "^(static )?const [a-z]+ eps = ")
  if(clash)
    list(APPEND alone "${f}")
  endif()
endforeach()
set_source_files_properties(${alone} PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
if(test_cu)
  set_source_files_properties(${test_cu} PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
  target_compile_options(caffe_gtest PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-w>)
endif()
target_precompile_headers(caffe_gtest PRIVATE
  "$<$<COMPILE_LANGUAGE:CXX>:${CMAKE_CURRENT_LIST_DIR}/tests_pch.hpp>")
target_link_libraries(caffe_gtest PRIVATE caffe caffe_gtest_gtest)
caffe_rpath(caffe_gtest "${CAFFE_GTEST_OUT}")
list(LENGTH alone n_alone)
message(STATUS "transfer caffe: gtest suite of ${S}: ${n} test files, ${CAFFE_GTEST_UNITS} units "
               "(${n_alone} alone), ${excluded}")
