// C ABI of the deblur-edge CUDA pre/post-processing kernels (runtime/cuda/prepost.cu).
// Returns a cudaError_t value (0 = success). All pointers are device pointers; launches are
// asynchronous on `stream`.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// uint8 HWC (BGR if bgr != 0, else RGB), `pitch` bytes per row, n frames back to back
//   -> NCHW RGB in [-1, 1], FP16 if fp16 != 0 else FP32, reflect-padded to ph x pw (ph >= h, pw >= w).
int deblur_preprocess(const uint8_t* src, int n, int h, int w, int pitch, int bgr, void* dst, int ph, int pw,
                      int fp16, cudaStream_t stream);

// NCHW RGB [-1, 1] of size ph x pw -> uint8 HWC h x w (crop, clamp, round half to even).
int deblur_postprocess(const void* src, int n, int ph, int pw, int fp16, uint8_t* dst, int h, int w, int pitch,
                       int bgr, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
