// The flat-frame rule of deblur.runtime.frames.is_flat, for the C++ runtime: a frame whose every colour
// channel has a standard deviation below one 8-bit level comes back unchanged. There is nothing to
// deblur, and InstanceNorm (variance ~0 against eps 1e-5) would amplify float rounding into up to 20
// levels of backend-dependent noise. Population standard deviation in double, like cv2.meanStdDev.
#pragma once

#include <cstddef>
#include <cstdint>

namespace deblur {

constexpr double kFlatLevels = 1.0;

// uint8 interleaved 3-channel frame (BGR or RGB), rows `pitch` bytes apart.
inline bool is_flat_u8c3(const uint8_t* frame, int h, int w, int pitch) {
  double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = frame + (std::size_t)y * (std::size_t)pitch;
    std::uint64_t s[3] = {0, 0, 0}, q[3] = {0, 0, 0};  // exact per row, then double
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const std::uint64_t v = row[3 * x + c];
        s[c] += v;
        q[c] += v * v;
      }
    for (int c = 0; c < 3; ++c) {
      sum[c] += (double)s[c];
      sq[c] += (double)q[c];
    }
  }
  const double n = (double)h * (double)w;
  for (int c = 0; c < 3; ++c) {
    const double mean = sum[c] / n, var = sq[c] / n - mean * mean;
    if (!(var < kFlatLevels * kFlatLevels)) return false;
  }
  return true;
}

}  // namespace deblur
