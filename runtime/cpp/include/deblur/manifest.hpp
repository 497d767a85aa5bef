// The JSON manifest beside every engine (g_fp16.engine.json), read without TensorRT or CUDA.
//
// Mirrors deblur.runtime.contract (Python): same required fields, same validation and the same
// one-line messages, so a robot sees the same "rebuild on this machine: ..." advice from C++ as
// from Python. An engine only runs on the TensorRT major.minor and the GPU architecture that built
// it; checking this first replaces TensorRT's "magicTag"/"Version tag does not match" failures.
#pragma once
#include <array>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace deblur {

constexpr int kManifestFormatVersion = 1;

// Every deblur-edge failure from C++: one line, "<path>: <what>; <what to do>" (as DeblurError.line()).
class DeblurError : public std::runtime_error {
 public:
  DeblurError(const std::string& message, const std::string& path = "", const std::string& hint = "");
  static std::string line(const std::string& message, const std::string& path, const std::string& hint);
};

class ManifestError : public DeblurError {
 public:
  using DeblurError::DeblurError;
};

// The engine's I/O tensors or profile are not what its manifest says.
class EngineMismatchError : public ManifestError {
 public:
  using ManifestError::ManifestError;
};

// Tensor name -> dtype name ("float32", "float16", ...), in order.
using TensorTypes = std::vector<std::pair<std::string, std::string>>;

struct Manifest {
  int format_version = 0;
  std::string engine_sha256, engine_file, tensorrt_version, cuda_version, driver_version, gpu_name;
  std::string compute_capability;  // "8.7"
  std::string precision;           // "fp16" | "fp32"
  std::array<int, 4> profile_min{}, profile_opt{}, profile_max{};  // N, C, H, W
  bool strongly_typed = true;
  std::string source_onnx;  // empty when the manifest has null
  int pad_multiple = 4;     // spec.pad_multiple, else 2 ** spec.n_downsampling, else 4
  // "io": engine I/O tensor name -> "float32" | "float16", in file order (input first); absent: this default.
  TensorTypes io{{"input", "float32"}, {"output", "float32"}};
};

// "out/g_fp16.engine" -> "out/g_fp16.engine.json"
std::string manifest_path(const std::string& engine_path);
// Parse and validate; every problem is one ManifestError naming `source`.
Manifest parse_manifest(const std::string& json_text, const std::string& source = "");
Manifest read_manifest(const std::string& engine_path);

// The exact command that (re)builds an engine on the machine that will run it.
std::string build_command(const std::string& onnx_path, bool fp16);
std::string rebuild_command(const Manifest& m, const std::string& engine_path);

// Refuse an engine that is not the one described, or that this machine cannot run. All mismatches
// are reported together. The second form takes a digest already computed from the bytes in memory.
void check_manifest(const Manifest& m, const std::string& engine_path, const std::string& tensorrt_version,
                    const std::string& compute_capability);
void check_manifest_digest(const Manifest& m, const std::string& engine_path, const std::string& actual_sha256,
                           const std::string& tensorrt_version, const std::string& compute_capability);

// After deserialising, as Python's tensorrt_engine.open_engine: the engine's inputs then outputs (names and
// dtypes, in the engine's order) must be exactly the manifest's `io` (one input, one output), and profile 0 of
// its input must be the manifest's min and max; otherwise EngineMismatchError saying how to rebuild.
void check_engine_io(const Manifest& m, const std::string& engine_path, const TensorTypes& inputs,
                     const TensorTypes& outputs);
void check_engine_profile(const Manifest& m, const std::string& engine_path, const std::vector<long long>& min,
                          const std::vector<long long>& max);
// TensorRT's DataType member name -> the manifest's dtype: FLOAT -> float32, HALF -> float16, else lower case.
std::string io_dtype(const std::string& trt_name);
std::string io_json(const TensorTypes& io);

}  // namespace deblur
