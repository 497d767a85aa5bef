// SHA-256 (FIPS 180-4), small and dependency-free: the runtime checks an engine file against the
// digest in its manifest before handing the bytes to TensorRT.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace deblur {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  std::string hex();  // finishes the digest; call once

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, std::size_t size);
// Throws std::runtime_error when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace deblur
