// deblur::is_flat_u8c3 against the cases tests/runtime/test_flat_frames.py checks in Python.
#include <cstdio>
#include <random>
#include <vector>

#include "deblur/flat.hpp"

static int failures = 0;
static void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

int main() {
  const int h = 360, w = 640, pitch = 3 * w + 16;  // a pitch wider than the row, with junk in the gap
  std::vector<uint8_t> f((std::size_t)h * pitch, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 3 * w; x < pitch; ++x) f[(std::size_t)y * pitch + x] = 255;
  expect(deblur::is_flat_u8c3(f.data(), h, w, pitch), "black 640x360 is flat (padding bytes ignored)");
  f[100 * pitch + 3 * 100] = 1;
  expect(deblur::is_flat_u8c3(f.data(), h, w, pitch), "one pixel one level up is flat");
  const uint8_t one[3] = {77, 77, 77};
  expect(deblur::is_flat_u8c3(one, 1, 1, 3), "1x1 is flat");
  std::mt19937 rng(0);
  std::normal_distribution<double> noise(60.0, 1.5);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < 3 * w; ++x) {
      double v = noise(rng);
      f[(std::size_t)y * pitch + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  expect(!deblur::is_flat_u8c3(f.data(), h, w, pitch), "noise with std 1.5 levels is not flat");
  std::vector<uint8_t> half((std::size_t)h * 3 * w, 0);
  for (int y = 0; y < h; ++y)
    for (int x = w / 2; x < w; ++x) half[(std::size_t)y * 3 * w + 3 * x + 2] = 3;  // one channel: std 1.5
  expect(!deblur::is_flat_u8c3(half.data(), h, w, 3 * w), "a 3-level step in one channel is not flat");
  if (failures == 0) std::printf("flat: all passed\n");
  return failures ? 1 : 0;
}
