// deblur-edge pre/post-processing kernels.
//
// One source for two compilers: NVRTC (Python runtime, through cuda-python) compiles the kernels;
// nvcc (CMake, C++ embedding) compiles the kernels and the C ABI launchers below the
// __CUDACC_RTC__ guard. Layouts: frames are uint8 HWC, 3 channels, BGR (OpenCV) or RGB, with a
// row pitch in bytes; model tensors are NCHW RGB, FP32 or FP16, values in [-1, 1].
#ifndef __CUDACC_RTC__
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#else
#include <cuda_fp16.h>
typedef unsigned char uint8_t;
#endif

// Reflect index into [0, n) without repeating the edge (PyTorch/NumPy "reflect"); n == 1 gives 0.
// Falls back to clamping (replicate) when the padding is larger than the image.
__device__ __forceinline__ int reflect_index(int i, int n) {
  if (n == 1) return 0;
  if (i < 0) i = -i;
  if (i >= n) i = 2 * n - 2 - i;
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }

// One thread per output pixel of the padded tensor (ph x pw): read the source pixel (reflected),
// swap to RGB if needed, normalise x / 127.5 - 1, write three planes.
template <typename T>
__device__ void preprocess(const uint8_t* src, int h, int w, int pitch, int bgr, T* dst, int ph, int pw) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  int n = blockIdx.z;
  if (x >= pw || y >= ph) return;
  // Same rule as the CPU reference: reflect both axes, or clamp both when either pad is >= its side.
  const bool edge = (ph - h >= h) || (pw - w >= w);
  int sx = edge ? min(x, w - 1) : reflect_index(x, w);
  int sy = edge ? min(y, h - 1) : reflect_index(y, h);
  const uint8_t* px = src + (size_t)n * h * pitch + (size_t)sy * pitch + 3 * sx;
  float c0 = px[0], c1 = px[1], c2 = px[2];
  float r = bgr ? c2 : c0, b = bgr ? c0 : c2;
  size_t plane = (size_t)ph * pw;
  T* out = dst + (size_t)n * 3 * plane + (size_t)y * pw + x;
  const float s = 1.0f / 127.5f;
  store(out, r * s - 1.0f);
  store(out + plane, c1 * s - 1.0f);
  store(out + 2 * plane, b * s - 1.0f);
}

// One thread per pixel of the cropped frame (h x w): [-1, 1] -> [0, 255], clamp, round half to even.
template <typename T>
__device__ void postprocess(const T* src, int ph, int pw, uint8_t* dst, int h, int w, int pitch, int bgr) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  int n = blockIdx.z;
  if (x >= w || y >= h) return;
  size_t plane = (size_t)ph * pw;
  const T* in = src + (size_t)n * 3 * plane + (size_t)y * pw + x;
  float rgb[3];
  for (int c = 0; c < 3; ++c) {
    float v = fmaf(load(in + c * plane), 127.5f, 127.5f);  // one rounding, as prepost.unit_to_u8
    v = fminf(fmaxf(v, 0.0f), 255.0f);
    rgb[c] = rintf(v);  // round half to even, as OpenCV's convertScaleAbs and numpy's rint
  }
  uint8_t* px = dst + (size_t)n * h * pitch + (size_t)y * pitch + 3 * x;
  px[0] = (uint8_t)(bgr ? rgb[2] : rgb[0]);
  px[1] = (uint8_t)rgb[1];
  px[2] = (uint8_t)(bgr ? rgb[0] : rgb[2]);
}

extern "C" __global__ void deblur_pre_f32(const uint8_t* src, int h, int w, int pitch, int bgr, float* dst, int ph, int pw) {
  preprocess<float>(src, h, w, pitch, bgr, dst, ph, pw);
}
extern "C" __global__ void deblur_pre_f16(const uint8_t* src, int h, int w, int pitch, int bgr, __half* dst, int ph, int pw) {
  preprocess<__half>(src, h, w, pitch, bgr, dst, ph, pw);
}
extern "C" __global__ void deblur_post_f32(const float* src, int ph, int pw, uint8_t* dst, int h, int w, int pitch, int bgr) {
  postprocess<float>(src, ph, pw, dst, h, w, pitch, bgr);
}
extern "C" __global__ void deblur_post_f16(const __half* src, int ph, int pw, uint8_t* dst, int h, int w, int pitch, int bgr) {
  postprocess<__half>(src, ph, pw, dst, h, w, pitch, bgr);
}

#ifndef __CUDACC_RTC__
// ------------------------------------------------------------------ C ABI for the CMake build
#include "deblur/prepost.h"

static dim3 grid_for(int w, int h, int n, dim3 block) {
  return dim3((unsigned)((w + block.x - 1) / block.x), (unsigned)((h + block.y - 1) / block.y), (unsigned)n);
}

extern "C" int deblur_preprocess(const uint8_t* src, int n, int h, int w, int pitch, int bgr, void* dst, int ph,
                                 int pw, int fp16, cudaStream_t stream) {
  if (!src || !dst || n < 1 || h < 1 || w < 1 || ph < h || pw < w || pitch < 3 * w) return (int)cudaErrorInvalidValue;
  dim3 block(32, 8);
  dim3 grid = grid_for(pw, ph, n, block);
  if (fp16)
    deblur_pre_f16<<<grid, block, 0, stream>>>(src, h, w, pitch, bgr, (__half*)dst, ph, pw);
  else
    deblur_pre_f32<<<grid, block, 0, stream>>>(src, h, w, pitch, bgr, (float*)dst, ph, pw);
  return (int)cudaGetLastError();
}

extern "C" int deblur_postprocess(const void* src, int n, int ph, int pw, int fp16, uint8_t* dst, int h, int w,
                                  int pitch, int bgr, cudaStream_t stream) {
  if (!src || !dst || n < 1 || h < 1 || w < 1 || ph < h || pw < w || pitch < 3 * w) return (int)cudaErrorInvalidValue;
  dim3 block(32, 8);
  dim3 grid = grid_for(w, h, n, block);
  if (fp16)
    deblur_post_f16<<<grid, block, 0, stream>>>((const __half*)src, ph, pw, dst, h, w, pitch, bgr);
  else
    deblur_post_f32<<<grid, block, 0, stream>>>((const float*)src, ph, pw, dst, h, w, pitch, bgr);
  return (int)cudaGetLastError();
}
#endif
