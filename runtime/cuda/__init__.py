"""CUDA pre/post-processing for deblur.runtime: NVRTC compilation and a driver-API runner (lazy: needs cuda-python)."""
