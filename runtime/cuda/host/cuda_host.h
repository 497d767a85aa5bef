// Host stand-in for the few CUDA names prepost.cu uses, so that the unmodified kernels compile as
// plain C++ and run on the CPU (tests/runtime/test_kernels_on_cpu.py compares them bit for bit with
// deblur.runtime.prepost, also under ASan/UBSan, on machines without a GPU).
//
// Build: g++ -std=c++17 -O2 -ffp-contract=off -D__CUDACC_RTC__ -I runtime/cuda/host -x c++ prepost.cu
//   - this folder first on the include path: its cuda_fp16.h / cuda_runtime.h forward here;
//   - -D__CUDACC_RTC__: only the kernels (the <<<>>> launchers below the guard are not C++);
//   - -ffp-contract=off: GCC would fuse a*b+c into an FMA where the target has one; the kernels are
//     compiled for the GPU without contraction (fmaf is written out where one rounding is meant);
//   - never -ffast-math.
// What this checks: the source's arithmetic, indexing and memory accesses. What it cannot check:
// NVRTC's/nvcc's code generation, which only a GPU run does (tests/runtime/test_nvrtc.py).
// Limits: no shared memory, __syncthreads, warp intrinsics or atomics (prepost.cu uses none);
// threads run one after another, in the launcher below.
#pragma once

#include <math.h>  // fmaf, rintf, fminf, fmaxf in the global namespace, as on the device
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

// The built-in index variables. One set per host thread (thread_local) so two launches on two host
// threads cannot see each other's indices; `inline` makes them one object across translation units.
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;

// kernel<<<grid, block>>>(args...): every block, then every thread of it, one after another.
template <typename... P, typename... A>
void host_launch(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
  gridDim = {grid.x, grid.y, grid.z};
  blockDim = {block.x, block.y, block.z};
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              threadIdx = {tx, ty, tz};
              kernel(args...);
            }
      }
}

// CUDA's integer min/max device functions.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// __half: IEEE binary16 storage (GCC's _Float16, 2 bytes, same layout as CUDA's __half). A struct,
// not the arithmetic type itself, so that arithmetic on __half in the kernels (which would mean
// something else on the device) does not compile here.
struct __half {
  _Float16 x;
};
static_assert(sizeof(__half) == 2, "__half must be 2 bytes");

// float -> binary16, round to nearest even (the conversion follows the rounding mode, nearest-even by
// default; the tests check it at every tie).
inline __half __float2half_rn(float f) { return __half{static_cast<_Float16>(f)}; }
// binary16 -> float is exact.
inline float __half2float(__half h) { return static_cast<float>(h.x); }
