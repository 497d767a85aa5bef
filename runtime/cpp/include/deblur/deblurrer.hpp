// deblur::Deblurrer: a DeblurGAN TensorRT engine behind one call, for C++ robotics code.
//
//   deblur::Deblurrer d("g_fp16.engine");            // checks g_fp16.engine.json first
//   d.run(bgr, h, w, pitch, out, out_pitch);         // uint8 BGR HWC in, uint8 BGR HWC out
//
// Before TensorRT sees the engine, its manifest must match: SHA-256 of the file, TensorRT
// major.minor and the GPU's compute capability; a mismatch throws deblur::ManifestError whose
// message says how to rebuild. Per frame: CUDA pre-processing (reflect pad to the engine's
// multiple, [-1, 1] NCHW RGB) -> enqueueV3 -> CUDA post-processing (crop, clamp, round), all on one
// stream. No OpenCV in the API: pass cv::Mat::data / step (CV_8UC3) or any packed BGR buffer.
// Not yet run on a GPU (none on the machines that wrote it); built only where TensorRT is found.
#pragma once
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "deblur/manifest.hpp"

namespace deblur {

struct DeblurrerOptions {
  int device = 0;                 // CUDA device ordinal
  cudaStream_t stream = nullptr;  // share an existing stream; nullptr: the Deblurrer creates its own
};

class Deblurrer {
 public:
  explicit Deblurrer(const std::string& engine_path, const DeblurrerOptions& options = {});
  ~Deblurrer();
  Deblurrer(Deblurrer&&) noexcept;
  Deblurrer& operator=(Deblurrer&&) noexcept;
  Deblurrer(const Deblurrer&) = delete;
  Deblurrer& operator=(const Deblurrer&) = delete;

  // Deblur one h x w BGR frame (`pitch` bytes per row) into `out` (`out_pitch` bytes per row, may
  // equal `bgr`). Both may be host or device memory. Returns when `out` is written; throws
  // deblur::DeblurError (frame outside the engine profile, CUDA or TensorRT failure).
  void run(const uint8_t* bgr, int h, int w, int pitch, uint8_t* out, int out_pitch);

  // The H x W the engine runs for an h x w frame (padded to the multiple, within the profile).
  std::array<int, 2> padded_size(int h, int w) const;
  cudaStream_t stream() const;
  const Manifest& manifest() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "10.3.0" from the TensorRT library actually loaded; "8.7" for a CUDA device.
std::string tensorrt_version();
std::string compute_capability(int device);

}  // namespace deblur
