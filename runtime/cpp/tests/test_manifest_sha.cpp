// CPU-only tests of the C++ manifest reader and SHA-256 (no CUDA, no TensorRT): registered with CTest.
//
//   test_manifest_sha                      run the tests; exit 1 on any failure
//   test_manifest_sha --check ENGINE TRT CC
//                                          read ENGINE's manifest, check it, print "ok" or the error line
//                                          (tests/runtime/test_cuda_compile.py compares it with Python's)
//   test_manifest_sha --io ENGINE          read ENGINE's manifest, print its `io` as a JSON object or the error line
//   test_manifest_sha --engine ENGINE input:INPUT:FLOAT,output:OUTPUT:HALF 1x3x64x64,1x3x1088x1920
//                                          check an engine's I/O tensors and profile (min,max) against ENGINE's
//                                          manifest as deblur::Deblurrer does; print "ok" or the error line
//                                          (tests/runtime/test_cpp_tensorrt_headers.py compares both with Python's)
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "deblur/manifest.hpp"
#include "sha256.hpp"

// The sample manifest's profile, as the rebuild command spells it (contract.build_command in Python).
#define PROFILE_FLAGS "--min-shape 1x3x64x64 --opt-shape 1x3x720x1280 --max-shape 1x3x1088x1920"

namespace fs = std::filesystem;

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    auto va_ = (a);                                                            \
    auto vb_ = (b);                                                            \
    if (!(va_ == vb_)) {                                                       \
      std::cerr << __FILE__ << ":" << __LINE__ << ": " #a " == " #b "\n  left:  " << va_ << "\n  right: " << vb_ << "\n"; \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

// The error line `fn` throws as a ManifestError, or "" if it does not throw.
template <typename F>
static std::string error_of(F fn) {
  try {
    fn();
  } catch (const deblur::ManifestError& e) {
    return e.what();
  }
  return "";
}

static bool contains(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos) return true;
  std::cerr << "  expected to find: " << part << "\n  in: " << s << "\n";
  return false;
}

static void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
}

static void test_sha256_vectors() {
  // FIPS 180-4 / NIST examples, and the padding boundaries around 55, 56 and 64 bytes.
  CHECK_EQ(deblur::sha256_hex("", 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK_EQ(deblur::sha256_hex("abc", 3), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK_EQ(deblur::sha256_hex(two_blocks.data(), two_blocks.size()),
           std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
  const char* by_len[][2] = {{"55", "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
                             {"56", "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
                             {"63", "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
                             {"64", "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
                             {"65", "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"}};
  for (auto& v : by_len) {
    std::string a(std::stoul(v[0]), 'a');
    CHECK_EQ(deblur::sha256_hex(a.data(), a.size()), std::string(v[1]));
  }
  std::string million(1000000, 'a');
  CHECK_EQ(deblur::sha256_hex(million.data(), million.size()),
           std::string("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
  // Fed in odd-sized pieces: the same digest as in one piece.
  std::string bytes;
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 256; ++i) bytes += (char)i;
  deblur::Sha256 s;
  for (std::size_t i = 0, step = 1; i < bytes.size(); i += step, step = step % 70 + 7)
    s.update(bytes.data() + i, std::min(step, bytes.size() - i));
  const std::string want = "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363";
  CHECK_EQ(s.hex(), want);
  CHECK_EQ(deblur::sha256_hex(bytes.data(), bytes.size()), want);
}

static const char* kEngineBytes = "\x00" "engine bytes\xff";

static std::string sample_json(const std::string& sha, const std::string& source_onnx = "\"g_fp16.onnx\"") {
  return R"({
  "engine_sha256": ")" + sha + R"(",
  "engine_file": "g_fp16.engine",
  "tensorrt_version": "10.3.0",
  "cuda_version": "12.6",
  "driver_version": "CUDA 12.6",
  "gpu_name": "Orin",
  "compute_capability": "8.7",
  "profile": {"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]},
  "precision": "fp16",
  "strongly_typed": true,
  "spec": {"name": "deblurgan", "ngf": 64, "n_downsampling": 2, "pad_multiple": 4, "input_range": [-1.0, 1.0]},
  "source_onnx": )" + source_onnx + R"(,
  "source_onnx_sha256": null,
  "parity": {"psnr_db": 55.1, "note": "caf\u00e9 \ud83d\ude00 \"q\""},
  "created": "2026-01-01T00:00:00+00:00",
  "exporter_version": "0.1.0",
  "added_in_a_later_minor": [1, {"x": false}],
  "format_version": 1
}
)";
}

static void test_parse() {
  std::string sha(64, 'a');
  deblur::Manifest m = deblur::parse_manifest(sample_json(sha), "g.engine.json");
  CHECK_EQ(m.format_version, 1);
  CHECK_EQ(m.engine_sha256, sha);
  CHECK_EQ(m.tensorrt_version, std::string("10.3.0"));
  CHECK_EQ(m.compute_capability, std::string("8.7"));
  CHECK_EQ(m.gpu_name, std::string("Orin"));
  CHECK_EQ(m.precision, std::string("fp16"));
  CHECK_EQ(m.source_onnx, std::string("g_fp16.onnx"));
  CHECK_EQ(m.pad_multiple, 4);
  CHECK(m.strongly_typed);
  CHECK(m.profile_min == (std::array<int, 4>{1, 3, 64, 64}));
  CHECK(m.profile_opt == (std::array<int, 4>{1, 3, 720, 1280}));
  CHECK(m.profile_max == (std::array<int, 4>{1, 3, 1088, 1920}));
  CHECK_EQ(deblur::manifest_path("out/g_fp16.engine"), std::string("out/g_fp16.engine.json"));
  CHECK_EQ(deblur::rebuild_command(m, "out/g_fp16.engine"),
           std::string("deblur-export --onnx g_fp16.onnx --fp16 " PROFILE_FLAGS " --require-engine"));
  deblur::Manifest no_src = deblur::parse_manifest(sample_json(sha, "null"));
  CHECK_EQ(deblur::rebuild_command(no_src, "out/my model.engine"),
           std::string("deblur-export --onnx 'my model.onnx' --fp16 " PROFILE_FLAGS " --require-engine"));
}

static void test_parse_errors() {
  std::string sha(64, 'a');
  auto parse = [](const std::string& text) { return error_of([&] { deblur::parse_manifest(text, "m.json"); }); };
  std::string e = parse("{\"format_version\": 1,");
  CHECK(contains(e, "m.json: manifest is not valid JSON ("));
  CHECK(contains(e, "; rebuild the engine to rewrite it"));
  CHECK(contains(parse("[1, 2]"), "manifest is not a JSON object"));
  CHECK(contains(parse("{\"format_version\": \"1\"}"), "manifest has no integer format_version"));
  CHECK(contains(parse("{\"format_version\": 1.0}"), "manifest has no integer format_version"));
  CHECK(contains(parse("{\"format_version\": 2}"),
                 "m.json: manifest format_version 2 is newer than this deblur-edge reads (1); upgrade deblur-edge on this machine"));
  CHECK(contains(parse("{\"format_version\": 1, \"engine_file\": \"x\"}"),
                 "manifest lacks compute_capability, cuda_version, driver_version, engine_sha256, gpu_name, precision, "
                 "profile, tensorrt_version"));
  std::string good = sample_json(sha);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    t.replace(t.find(from), from.size(), to);
    return parse(t);
  };
  CHECK(contains(with(sha, "ABC"), "invalid manifest: engine_sha256 is not a SHA-256 hex digest"));
  CHECK(contains(with("\"max\": [1, 3, 1088, 1920]", "\"max\": [1, 3, 1088]"),
                 "invalid manifest: profile max must be 4 positive integers [N, C, H, W], got [1, 3, 1088]"));
  CHECK(contains(with("\"max\": [1, 3, 1088, 1920]", "\"max\": [1, 3, 0, 1920]"), "profile max must be 4 positive"));
  CHECK(contains(with(", \"max\": [1, 3, 1088, 1920]", ""), "profile must have exactly min, opt and max"));
  CHECK(contains(with("\"precision\": \"fp16\"", "\"precision\": \"int8\""),
                 "precision must be 'fp16' or 'fp32', got 'int8'"));
  CHECK(contains(with("\"tensorrt_version\": \"10.3.0\"", "\"tensorrt_version\": \"\""),
                 "tensorrt_version must be a non-empty string"));
  // Two bad profile entries: the first in the file is reported, as Python iterates the dict in file order.
  std::string two_bad = good;
  two_bad.replace(two_bad.find("[1, 3, 64, 64]"), 14, "[1, 3, 0, 64]");
  two_bad.replace(two_bad.find("[1, 3, 1088, 1920]"), 18, "[1, 3, 0, 1920]");
  CHECK(contains(parse(two_bad), "invalid manifest: profile min must be 4 positive integers [N, C, H, W], got [1, 3, 0, 64]"));
  CHECK(contains(with("\"opt\": [1, 3, 720, 1280]", "\"opt\": [1, 3, 2000, 1280]"),
                 "invalid manifest: profile must have min <= opt <= max in every dimension, got [1, 3, 64, 64], "
                 "[1, 3, 2000, 1280], [1, 3, 1088, 1920]"));
  const std::string spec_line = good.substr(good.find("  \"spec\""), good.find("\n", good.find("  \"spec\"")) - good.find("  \"spec\"") + 1);
  CHECK(contains(with(spec_line, ""), "invalid manifest: spec must be the model spec object written by deblur-export"));
  CHECK(contains(with("\"spec\": {\"name\": \"deblurgan\", ", "\"spec\": {"), "spec must be the model spec object"));
}

static std::string io_of(const std::string& json) { return deblur::io_json(deblur::parse_manifest(json).io); }

static void test_io() {
  const std::string good = sample_json(std::string(64, 'a'));
  auto with_io = [&](const std::string& io) {
    std::string t = good;
    return t.replace(t.find("\"format_version\""), 0, "\"io\": " + io + ",\n  ");
  };
  // Absent: the default, as Python's EngineManifest.io.
  CHECK_EQ(io_of(good), std::string("{\"input\": \"float32\", \"output\": \"float32\"}"));
  CHECK_EQ(io_of(with_io("{\"input\": \"float16\", \"output\": \"float16\"}")),
           std::string("{\"input\": \"float16\", \"output\": \"float16\"}"));
  // File order, not sorted; a repeated key keeps its first place and its last value (Python's dict).
  CHECK_EQ(io_of(with_io("{\"x\": \"float16\", \"b\": \"float32\", \"x\": \"float32\"}")),
           std::string("{\"x\": \"float32\", \"b\": \"float32\"}"));
  auto parse = [](const std::string& text) { return error_of([&] { deblur::parse_manifest(text, "m.json"); }); };
  const std::string bad = "m.json: invalid manifest: io must name one input and one output tensor, each float32 or float16, got ";
  CHECK_EQ(parse(with_io("{\"input\": \"float32\", \"output\": \"int8\"}")),
           bad + "{'input': 'float32', 'output': 'int8'}; rebuild the engine to rewrite it");
  CHECK(contains(parse(with_io("{\"input\": 32, \"output\": null}")), bad + "{'input': 32, 'output': None}"));
  CHECK(contains(parse(with_io("{\"input\": \"float32\"}")), bad + "{'input': 'float32'}"));
  CHECK(contains(parse(with_io("{\"a\": \"float32\", \"b\": \"float32\", \"c\": \"float32\"}")), bad));
  CHECK(contains(parse(with_io("{\"\": \"float32\", \"output\": \"float32\"}")), bad + "{'': 'float32', 'output': 'float32'}"));
  CHECK(contains(parse(with_io("[\"input\", 1.50, true]")), bad + "['input', 1.5, True]"));
  CHECK(contains(parse(with_io("\"it's\"")), bad + "\"it's\""));

  // The engine's own I/O against the manifest's: inputs then outputs, names, dtypes and order (Python's list ==).
  deblur::Manifest m = deblur::parse_manifest(with_io("{\"input\": \"float16\", \"output\": \"float16\"}"));
  auto io_error = [&](const deblur::TensorTypes& in, const deblur::TensorTypes& out) {
    try {
      deblur::check_engine_io(m, "g.engine", in, out);
    } catch (const deblur::EngineMismatchError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_EQ(io_error({{"input", "float16"}}, {{"output", "float16"}}), std::string(""));
  CHECK_EQ(io_error({{"input", "float32"}}, {{"output", "float16"}}),
           std::string("g.engine: the engine's I/O tensors are inputs input (float32); outputs output (float16), its "
                       "manifest says inputs input (float16); outputs output (float16); the engine and its manifest do "
                       "not belong together: rebuild on this machine: deblur-export --onnx g_fp16.onnx --fp16 " PROFILE_FLAGS
                       " --require-engine"));
  CHECK(contains(io_error({{"images", "float16"}}, {{"output", "float16"}}), "are inputs images (float16); outputs output"));
  CHECK(contains(io_error({{"input", "float16"}, {"mask", "float16"}}, {{"output", "float16"}}),
                 "are inputs input (float16), mask (float16); outputs output (float16), its manifest"));
  CHECK(contains(io_error({}, {}), "are inputs none; outputs none, its manifest says inputs input (float16)"));
  CHECK_EQ(deblur::io_dtype("FLOAT"), std::string("float32"));
  CHECK_EQ(deblur::io_dtype("HALF"), std::string("float16"));
  CHECK_EQ(deblur::io_dtype("BF16"), std::string("bf16"));

  CHECK_EQ(error_of([&] { deblur::check_engine_profile(m, "g.engine", {1, 3, 64, 64}, {1, 3, 1088, 1920}); }),
           std::string(""));
  CHECK_EQ(error_of([&] { deblur::check_engine_profile(m, "g.engine", {1, 3, 64, 64}, {1, 3, 720, 1280}); }),
           std::string("g.engine: the engine's profile is 1x3x64x64 .. 1x3x720x1280, its manifest says 1x3x64x64 .. "
                       "1x3x1088x1920; rebuild on this machine: deblur-export --onnx g_fp16.onnx --fp16 " PROFILE_FLAGS
                       " --require-engine"));
}

static void test_check(const fs::path& dir) {
  const std::string bytes(kEngineBytes, 14);
  std::string engine_bytes;
  for (int i = 0; i < 10; ++i) engine_bytes += bytes;
  const fs::path engine = dir / "g_fp16.engine";
  write_file(engine, engine_bytes);
  const std::string sha = deblur::sha256_hex(engine_bytes.data(), engine_bytes.size());
  CHECK_EQ(deblur::sha256_file(engine.string()), sha);
  write_file(dir / "g_fp16.engine.json", sample_json(sha));
  const std::string ep = engine.string();
  deblur::Manifest m = deblur::read_manifest(ep);

  CHECK_EQ(error_of([&] { deblur::check_manifest(m, ep, "10.3.0.26", "8.7"); }), std::string(""));  // patch may differ

  std::string e = error_of([&] { deblur::check_manifest(m, ep, "10.7.0", "8.7"); });
  CHECK_EQ(e, ep + ": built with TensorRT 10.3.0 (manifest) but this machine has TensorRT 10.7.0; engines only run "
                   "on the TensorRT version that built them; rebuild on this machine: deblur-export --onnx g_fp16.onnx "
                   "--fp16 " PROFILE_FLAGS " --require-engine");
  e = error_of([&] { deblur::check_manifest(m, ep, "10.3.0", "8.6"); });
  CHECK(contains(e, "built for compute capability 8.7 (Orin, manifest) but this GPU is 8.6; engines only run on the "
                    "GPU architecture that built them"));
  CHECK(e.find("TensorRT 10.3.0") == std::string::npos && e.find("SHA-256") == std::string::npos);

  write_file(engine, engine_bytes + "x");
  const std::string changed = deblur::sha256_hex((engine_bytes + "x").data(), engine_bytes.size() + 1);
  e = error_of([&] { deblur::check_manifest(m, ep, "11.0.0", "9.0"); });
  CHECK(contains(e, ep + ": engine file changed since its manifest was written (SHA-256 manifest " + sha.substr(0, 12) +
                        "\u2026 vs file " + changed.substr(0, 12) + "\u2026); built with TensorRT 10.3.0"));
  CHECK(contains(e, "; built for compute capability 8.7"));
  CHECK(contains(e, "; rebuild on this machine: deblur-export --onnx g_fp16.onnx --fp16 " PROFILE_FLAGS " --require-engine"));

  fs::remove(engine);
  CHECK_EQ(error_of([&] { deblur::check_manifest(m, ep, "10.3.0", "8.7"); }),
           ep + ": engine file not found; rebuild it: deblur-export --onnx g_fp16.onnx --fp16 " PROFILE_FLAGS " --require-engine");
  const std::string other = (dir / "other.engine").string();
  CHECK_EQ(error_of([&] { deblur::read_manifest(other); }),
           "no manifest beside the engine (expected " + other +
               ".json); rebuild it: deblur-export --onnx other.onnx --fp16 --require-engine");
}

// "input:INPUT:FLOAT,output:OUTPUT:HALF" (tests/fakes/tensorrt_standin.EngineIO.tensors) -> inputs, outputs
static void engine_tensors(const std::string& spec, deblur::TensorTypes& inputs, deblur::TensorTypes& outputs) {
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t a = item.find(':'), b = item.rfind(':');
    const std::string name = item.substr(0, a), mode = item.substr(a + 1, b - a - 1), type = item.substr(b + 1);
    (mode == "INPUT" ? inputs : outputs).emplace_back(name, deblur::io_dtype(type));
  }
}

static std::vector<long long> shape(const std::string& text) {  // "1x3x64x64"
  std::vector<long long> d;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, 'x')) d.push_back(std::stoll(part));
  return d;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--io") {
    try {
      std::cout << deblur::io_json(deblur::read_manifest(argv[2]).io) << "\n";
    } catch (const deblur::DeblurError& e) {
      std::cout << e.what() << "\n";
    }
    return 0;
  }
  if (argc == 5 && std::string(argv[1]) == "--engine") {  // --engine ENGINE TENSORS MIN: Deblurrer's engine checks
    try {
      deblur::Manifest m = deblur::read_manifest(argv[2]);
      deblur::TensorTypes inputs, outputs;
      engine_tensors(argv[3], inputs, outputs);
      deblur::check_engine_io(m, argv[2], inputs, outputs);
      std::string lo = argv[4];
      deblur::check_engine_profile(m, argv[2], shape(lo.substr(0, lo.find(','))), shape(lo.substr(lo.find(',') + 1)));
      std::cout << "ok\n";
    } catch (const deblur::DeblurError& e) {
      std::cout << e.what() << "\n";
    }
    return 0;
  }
  if (argc == 5 && std::string(argv[1]) == "--check") {
    try {
      deblur::check_manifest(deblur::read_manifest(argv[2]), argv[2], argv[3], argv[4]);
      std::cout << "ok\n";
    } catch (const deblur::DeblurError& e) {
      std::cout << e.what() << "\n";
    }
    return 0;
  }
  fs::path dir = fs::temp_directory_path() / ("deblur_manifest_test_" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  test_sha256_vectors();
  test_parse();
  test_parse_errors();
  test_io();
  test_check(dir);
  fs::remove_all(dir);
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_manifest_sha: all checks passed\n");
  return 0;
}
