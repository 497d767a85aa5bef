// Host launchers for the four kernels of prepost.cu compiled as C++ (see cuda_host.h): the same
// argument checks, block (32, 8, 1) and grid as deblur_preprocess / deblur_postprocess in prepost.cu,
// without a stream. Built with prepost.cu into one shared library that the tests load with ctypes.
#include "cuda_host.h"

#define HOST_API extern "C" __attribute__((visibility("default")))

// The kernels, defined in prepost.cu (the other translation unit).
extern "C" void deblur_pre_f32(const uint8_t* src, int h, int w, int pitch, int bgr, float* dst, int ph, int pw);
extern "C" void deblur_pre_f16(const uint8_t* src, int h, int w, int pitch, int bgr, __half* dst, int ph, int pw);
extern "C" void deblur_post_f32(const float* src, int ph, int pw, uint8_t* dst, int h, int w, int pitch, int bgr);
extern "C" void deblur_post_f16(const __half* src, int ph, int pw, uint8_t* dst, int h, int w, int pitch, int bgr);

static const int kInvalidValue = 1;  // cudaErrorInvalidValue

static dim3 grid_for(int w, int h, int n, dim3 block) {  // as grid_for in prepost.cu
  return dim3((unsigned)((w + block.x - 1) / block.x), (unsigned)((h + block.y - 1) / block.y), (unsigned)n);
}

static bool bad_args(const void* src, const void* dst, int n, int h, int w, int pitch, int ph, int pw) {
  return !src || !dst || n < 1 || h < 1 || w < 1 || ph < h || pw < w || pitch < 3 * w;
}

// As deblur_preprocess: n pitched uint8 HxWx3 frames -> n x 3 x ph x pw FP32 or FP16 tensor.
HOST_API int host_pre(const uint8_t* src, int n, int h, int w, int pitch, int bgr, void* dst, int ph, int pw, int fp16) {
  if (bad_args(src, dst, n, h, w, pitch, ph, pw)) return kInvalidValue;
  dim3 block(32, 8);
  dim3 grid = grid_for(pw, ph, n, block);
  if (fp16)
    host_launch(deblur_pre_f16, grid, block, src, h, w, pitch, bgr, (__half*)dst, ph, pw);
  else
    host_launch(deblur_pre_f32, grid, block, src, h, w, pitch, bgr, (float*)dst, ph, pw);
  return 0;
}

// As deblur_postprocess: n x 3 x ph x pw tensor -> n pitched uint8 HxWx3 frames (cropped to h x w).
HOST_API int host_post(const void* src, int n, int ph, int pw, int fp16, uint8_t* dst, int h, int w, int pitch, int bgr) {
  if (bad_args(src, dst, n, h, w, pitch, ph, pw)) return kInvalidValue;
  dim3 block(32, 8);
  dim3 grid = grid_for(w, h, n, block);
  if (fp16)
    host_launch(deblur_post_f16, grid, block, (const __half*)src, ph, pw, dst, h, w, pitch, bgr);
  else
    host_launch(deblur_post_f32, grid, block, (const float*)src, ph, pw, dst, h, w, pitch, bgr);
  return 0;
}

// The header's float -> half conversion on its own (the tests check it at every rounding tie).
HOST_API void host_float2half(const float* src, uint16_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    __half h = __float2half_rn(src[i]);
    memcpy(dst + i, &h, sizeof h);
  }
}
