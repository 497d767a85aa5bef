// deblur::Deblurrer: manifest check -> TensorRT deserialise -> per frame pre -> enqueueV3 -> post.
// Written against NVIDIA's documented TensorRT 10.x/11.x C++ runtime API (named I/O tensors,
// enqueueV3); it has not yet run on a GPU.
#include "deblur/deblurrer.hpp"

#include <NvInferRuntime.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "deblur/flat.hpp"
#include "deblur/prepost.h"
#include "sha256.hpp"

namespace deblur {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw DeblurError(std::string(what) + " failed (" + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")");
}

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
  }
};

// Grow-only buffers, reused across frames.
struct DeviceBuffer {
  void* p = nullptr;
  std::size_t n = 0;
  void reserve(std::size_t bytes) {
    if (bytes <= n) return;
    if (p) cudaFree(p);
    p = nullptr;
    n = 0;
    cuda_check(cudaMalloc(&p, bytes), "cudaMalloc");
    n = bytes;
  }
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
};

struct PinnedBuffer {  // page-locked: host<->device copies are real async DMA
  void* p = nullptr;
  std::size_t n = 0;
  void reserve(std::size_t bytes) {
    if (bytes <= n) return;
    if (p) cudaFreeHost(p);
    p = nullptr;
    n = 0;
    cuda_check(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc");
    n = bytes;
  }
  ~PinnedBuffer() {
    if (p) cudaFreeHost(p);
  }
};

bool is_device_memory(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error of an unknown pointer
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

std::string cuda_version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

// cudaSetDevice, with the failures a user can fix spelled out (this is where a machine without a GPU stops).
void set_device(int device, const std::string& path) {
  const cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  const std::string what = "cudaSetDevice(" + std::to_string(device) + "): " + cudaGetErrorName(e);
  const std::string gpu_only = "TensorRT engines run only on an NVIDIA GPU; check that nvidia-smi lists one";
  if (e == cudaErrorInsufficientDriver) {
    int driver = 0;
    (void)cudaDriverGetVersion(&driver);
    if (driver == 0) throw DeblurError("no NVIDIA driver on this machine (" + what + ")", path, gpu_only);
    throw DeblurError("the NVIDIA driver supports CUDA " + cuda_version_text(driver) + " but deblur_trt was built with CUDA " +
                          cuda_version_text(CUDART_VERSION) + " (" + what + ")",
                      path, "update the driver, or rebuild deblur-edge with a CUDA toolkit the driver supports");
  }
  if (e == cudaErrorNoDevice) throw DeblurError("no CUDA GPU visible (" + what + ")", path, gpu_only + " (and CUDA_VISIBLE_DEVICES)");
  if (e == cudaErrorInvalidDevice) {
    int count = 0;
    (void)cudaGetDeviceCount(&count);
    (void)cudaGetLastError();
    throw DeblurError("no CUDA GPU with index " + std::to_string(device) + " (" + std::to_string(count) + " visible)", path,
                      count > 0 ? "use a device index below " + std::to_string(count) : gpu_only);
  }
  throw DeblurError(what + " (" + cudaGetErrorString(e) + ")", path);
}

// The DataType member's name, as the Python bindings spell it (the manifest's dtype comes from it: io_dtype).
std::string trt_type_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "FLOAT";
    case nvinfer1::DataType::kHALF: return "HALF";
    case nvinfer1::DataType::kINT8: return "INT8";
    case nvinfer1::DataType::kINT32: return "INT32";
    case nvinfer1::DataType::kBOOL: return "BOOL";
    case nvinfer1::DataType::kUINT8: return "UINT8";
    case nvinfer1::DataType::kFP8: return "FP8";
    case nvinfer1::DataType::kBF16: return "BF16";
    case nvinfer1::DataType::kINT64: return "INT64";
    case nvinfer1::DataType::kINT4: return "INT4";
#if NV_TENSORRT_MAJOR >= 11
    case nvinfer1::DataType::kFP4: return "FP4";
    case nvinfer1::DataType::kE8M0: return "E8M0";
#endif
    default: return "DATATYPE" + std::to_string((int)t);
  }
}

std::vector<long long> dims_vector(const nvinfer1::Dims& d) {
  std::vector<long long> v;
  for (int i = 0; i < d.nbDims; ++i) v.push_back((long long)d.d[i]);
  return v;
}

std::string dims_text(const nvinfer1::Dims& d) {
  std::string s;
  for (int i = 0; i < d.nbDims; ++i) s += (i ? "x" : "") + std::to_string((long long)d.d[i]);
  return s.empty() ? "a scalar" : s;
}

int is_fp16(nvinfer1::DataType t, const std::string& name, const std::string& path) {
  if (t == nvinfer1::DataType::kFLOAT) return 0;
  if (t == nvinfer1::DataType::kHALF) return 1;
  throw DeblurError("engine tensor '" + name + "' is neither float32 nor float16", path,
                    "export it with deblur-export (FP32 or FP16 I/O)");
}

std::string dims_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

}  // namespace

std::string tensorrt_version() {
  int v = getInferLibVersion();  // TRT >= 10: M*10000 + m*100 + p; TRT 8: M*1000 + m*100 + p
  int major = v >= 100000 ? v / 10000 : v / 1000;
  int minor = v >= 100000 ? (v / 100) % 100 : (v / 100) % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

std::string compute_capability(int device) {
  int major = 0, minor = 0;
  cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  cuda_check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute");
  return std::to_string(major) + "." + std::to_string(minor);
}

struct Deblurrer::Impl {
  std::string path;
  Manifest manifest;
  int device = 0;
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  std::string input, output;
  int in_fp16 = 0, out_fp16 = 0;
  bool static_shape = false;
  nvinfer1::Dims shape{}, min{}, max{};  // static shape, or profile 0 limits
  cudaStream_t stream = nullptr;
  bool owns_stream = false;
  DeviceBuffer frame_in, tensor_in, tensor_out, frame_out;
  PinnedBuffer host_in, host_out;

  ~Impl() {
    if (stream) cudaStreamSynchronize(stream);
    context.reset();  // TensorRT objects before the runtime that made them
    engine.reset();
    runtime.reset();
    if (owns_stream && stream) cudaStreamDestroy(stream);
  }
};

Deblurrer::Deblurrer(const std::string& engine_path, const DeblurrerOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.path = engine_path;
  s.device = options.device;
  s.manifest = read_manifest(engine_path);  // before any CUDA call: a missing manifest is the clearer error
  set_device(s.device, engine_path);

  // Read once; the digest and TensorRT both see exactly these bytes.
  std::ifstream f(engine_path, std::ios::binary);
  if (!f)
    throw ManifestError("engine file not found", engine_path, "rebuild it: " + rebuild_command(s.manifest, engine_path));
  std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  check_manifest_digest(s.manifest, engine_path, sha256_hex(blob.data(), blob.size()), tensorrt_version(),
                        compute_capability(s.device));

  const std::string rebuild = "rebuild on this machine: " + rebuild_command(s.manifest, engine_path);
  s.runtime.reset(nvinfer1::createInferRuntime(s.logger));
  if (!s.runtime) throw DeblurError("TensorRT runtime could not be created", engine_path);
  s.engine.reset(s.runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!s.engine) throw DeblurError("TensorRT could not deserialise the engine (see the [TensorRT] lines above)", engine_path, rebuild);

  // The same checks as Python's open_engine: the manifest's `io` (inputs then outputs, names and dtypes) and
  // profile, before anything is allocated for the engine.
  TensorTypes inputs, outputs;
  for (int i = 0; i < s.engine->getNbIOTensors(); ++i) {
    const char* name = s.engine->getIOTensorName(i);
    const auto mode = s.engine->getTensorIOMode(name);
    if (mode == nvinfer1::TensorIOMode::kINPUT || mode == nvinfer1::TensorIOMode::kOUTPUT)
      (mode == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs)
          .emplace_back(name, io_dtype(trt_type_name(s.engine->getTensorDataType(name))));
  }
  check_engine_io(s.manifest, engine_path, inputs, outputs);
  const char* in_name = inputs[0].first.c_str();
  check_engine_profile(s.manifest, engine_path,
                       dims_vector(s.engine->getProfileShape(in_name, 0, nvinfer1::OptProfileSelector::kMIN)),
                       dims_vector(s.engine->getProfileShape(in_name, 0, nvinfer1::OptProfileSelector::kMAX)));

  int n_in = 0, n_out = 0;
  for (int i = 0; i < s.engine->getNbIOTensors(); ++i) {
    const char* name = s.engine->getIOTensorName(i);
    if (s.engine->getTensorFormat(name) != nvinfer1::TensorFormat::kLINEAR)  // the kernels read and write plain NCHW
      throw DeblurError(std::string("engine tensor '") + name + "' is not in linear NCHW layout", engine_path, rebuild);
    if (s.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
      s.input = name;
      ++n_in;
    } else if (s.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) {
      s.output = name;
      ++n_out;
    }
  }
  if (n_in != 1 || n_out != 1)
    throw DeblurError("engine has " + std::to_string(n_in) + " inputs and " + std::to_string(n_out) +
                          " outputs; a deblur generator has one of each", engine_path, rebuild);
  s.in_fp16 = is_fp16(s.engine->getTensorDataType(s.input.c_str()), s.input, engine_path);
  s.out_fp16 = is_fp16(s.engine->getTensorDataType(s.output.c_str()), s.output, engine_path);
  s.shape = s.engine->getTensorShape(s.input.c_str());
  if (s.shape.nbDims != 4 || s.shape.d[1] != 3)
    throw DeblurError("engine input '" + s.input + "' is " + dims_text(s.shape) + ", not Nx3xHxW", engine_path, rebuild);
  // Static only when every dimension is: a dynamic batch with a fixed H x W still needs setInputShape.
  s.static_shape = s.shape.d[0] > 0 && s.shape.d[2] > 0 && s.shape.d[3] > 0;
  const std::string one_frame = "rebuild it with deblur-export for batch 1 (--min-shape 1x3xHxW)";
  if (s.static_shape && s.shape.d[0] != 1)  // buffers hold one frame: a larger batch would overrun them
    throw DeblurError("engine has a static batch of " + std::to_string((long long)s.shape.d[0]) +
                          "; deblur::Deblurrer runs one frame at a time", engine_path, one_frame);
  if (!s.static_shape) {
    s.min = s.engine->getProfileShape(s.input.c_str(), 0, nvinfer1::OptProfileSelector::kMIN);
    s.max = s.engine->getProfileShape(s.input.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    if (s.min.nbDims != 4 || s.max.nbDims != 4)
      throw DeblurError("engine input '" + s.input + "' has no optimisation profile", engine_path, rebuild);
    if (s.min.d[0] > 1 || s.max.d[0] < 1)
      throw DeblurError("engine profile takes batch " + std::to_string((long long)s.min.d[0]) + ".." +
                            std::to_string((long long)s.max.d[0]) + "; deblur::Deblurrer runs one frame at a time",
                        engine_path, one_frame);
  }
  s.context.reset(s.engine->createExecutionContext());
  if (!s.context) throw DeblurError("TensorRT could not create an execution context", engine_path);

  if (options.stream) {
    s.stream = options.stream;
  } else {
    cuda_check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    s.owns_stream = true;
  }
}

Deblurrer::~Deblurrer() = default;
Deblurrer::Deblurrer(Deblurrer&&) noexcept = default;
Deblurrer& Deblurrer::operator=(Deblurrer&&) noexcept = default;

cudaStream_t Deblurrer::stream() const { return impl_->stream; }
const Manifest& Deblurrer::manifest() const { return impl_->manifest; }

std::array<int, 2> Deblurrer::padded_size(int h, int w) const {
  const Impl& s = *impl_;
  if (s.static_shape) {
    int H = (int)s.shape.d[2], W = (int)s.shape.d[3];
    if (h > H || w > W)
      throw DeblurError("frame " + dims_text(w, h) + " is larger than the engine's static size " + dims_text(W, H),
                        s.path, "tile the frame (deblur.runtime does in Python) or export a larger engine");
    return {H, W};
  }
  int m = s.manifest.pad_multiple;
  auto up = [m](int x) { return (x + m - 1) / m * m; };
  int ph = std::max({up(h), 2 * m, (int)s.min.d[2]});
  int pw = std::max({up(w), 2 * m, (int)s.min.d[3]});
  if (ph > s.max.d[2] || pw > s.max.d[3])
    throw DeblurError("frame " + dims_text(w, h) + " needs " + dims_text(pw, ph) + ", outside the engine profile (max " +
                          dims_text((int)s.max.d[3], (int)s.max.d[2]) + ")",
                      s.path, "tile the frame (deblur.runtime does in Python) or rebuild the engine with a larger profile");
  return {ph, pw};
}

void Deblurrer::run(const uint8_t* bgr, int h, int w, int pitch, uint8_t* out, int out_pitch) {
  Impl& s = *impl_;
  if (!bgr || !out || h < 1 || w < 1 || pitch < 3 * w || out_pitch < 3 * w)
    throw DeblurError("run(): bad frame arguments (h=" + std::to_string(h) + " w=" + std::to_string(w) +
                      " pitch=" + std::to_string(pitch) + " out_pitch=" + std::to_string(out_pitch) + ")");
  if (!is_device_memory(bgr) && !is_device_memory(out) && is_flat_u8c3(bgr, h, w, pitch)) {
    for (int y = 0; y < h; ++y)  // flat: unchanged, as deblur.runtime does (deblur/flat.hpp)
      std::memmove(out + (std::size_t)y * out_pitch, bgr + (std::size_t)y * pitch, 3 * (std::size_t)w);
    return;
  }
  cuda_check(cudaSetDevice(s.device), "cudaSetDevice");
  const auto hw = padded_size(h, w);
  const int ph = hw[0], pw = hw[1];
  const std::size_t row = 3 * (std::size_t)w, frame_bytes = row * (std::size_t)h;

  // Input: device memory is read in place (with its pitch); host memory goes through pinned staging.
  const uint8_t* src = bgr;
  int src_pitch = pitch;
  if (!is_device_memory(bgr)) {
    s.host_in.reserve(frame_bytes);
    s.frame_in.reserve(frame_bytes);
    for (int y = 0; y < h; ++y)
      std::memcpy((uint8_t*)s.host_in.p + y * row, bgr + (std::size_t)y * pitch, row);
    cuda_check(cudaMemcpyAsync(s.frame_in.p, s.host_in.p, frame_bytes, cudaMemcpyHostToDevice, s.stream),
               "cudaMemcpyAsync (frame in)");
    src = (const uint8_t*)s.frame_in.p;
    src_pitch = (int)row;
  }

  const std::size_t plane = (std::size_t)ph * pw;
  s.tensor_in.reserve(3 * plane * (s.in_fp16 ? 2 : 4));
  s.tensor_out.reserve(3 * plane * (s.out_fp16 ? 2 : 4));
  nvinfer1::Dims dims{};
  dims.nbDims = 4;
  dims.d[0] = 1;
  dims.d[1] = 3;
  dims.d[2] = ph;
  dims.d[3] = pw;
  if (!s.static_shape && !s.context->setInputShape(s.input.c_str(), dims))
    throw DeblurError("TensorRT refused input shape 1x3x" + std::to_string(ph) + "x" + std::to_string(pw), s.path);
  nvinfer1::Dims os = s.context->getTensorShape(s.output.c_str());
  if (os.nbDims != 4 || os.d[0] != 1 || os.d[1] != 3 || os.d[2] != ph || os.d[3] != pw)
    throw DeblurError("engine output is " + dims_text(os) + " for input 1x3x" + std::to_string(ph) + "x" +
                      std::to_string(pw) + " (must be the same)", s.path);
  if (!s.context->setTensorAddress(s.input.c_str(), s.tensor_in.p) ||
      !s.context->setTensorAddress(s.output.c_str(), s.tensor_out.p))
    throw DeblurError("TensorRT refused a tensor address", s.path);

  cuda_check((cudaError_t)deblur_preprocess(src, 1, h, w, src_pitch, 1, s.tensor_in.p, ph, pw, s.in_fp16, s.stream),
             "deblur_preprocess");
  if (!s.context->enqueueV3(s.stream)) throw DeblurError("TensorRT enqueueV3 failed (see the [TensorRT] lines above)", s.path);

  const bool out_device = is_device_memory(out);
  uint8_t* dst = out;
  int dst_pitch = out_pitch;
  if (!out_device) {
    s.frame_out.reserve(frame_bytes);
    s.host_out.reserve(frame_bytes);
    dst = (uint8_t*)s.frame_out.p;
    dst_pitch = (int)row;
  }
  cuda_check((cudaError_t)deblur_postprocess(s.tensor_out.p, 1, ph, pw, s.out_fp16, dst, h, w, dst_pitch, 1, s.stream),
             "deblur_postprocess");
  if (!out_device)
    cuda_check(cudaMemcpyAsync(s.host_out.p, s.frame_out.p, frame_bytes, cudaMemcpyDeviceToHost, s.stream),
               "cudaMemcpyAsync (frame out)");
  cuda_check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
  if (!out_device)
    for (int y = 0; y < h; ++y)
      std::memcpy(out + (std::size_t)y * out_pitch, (const uint8_t*)s.host_out.p + y * row, row);
}

}  // namespace deblur
