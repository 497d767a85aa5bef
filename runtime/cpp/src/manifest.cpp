// Engine manifest: a tiny JSON reader (just enough for the manifest: objects, arrays, strings,
// numbers, true/false/null) and the checks of deblur.runtime.contract, with the same messages.
#include "deblur/manifest.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "sha256.hpp"

namespace deblur {

// ---------------------------------------------------------------------------------------------- errors
DeblurError::DeblurError(const std::string& message, const std::string& path, const std::string& hint)
    : std::runtime_error(line(message, path, hint)) {}

std::string DeblurError::line(const std::string& message, const std::string& path, const std::string& hint) {
  std::string out = message;
  if (!path.empty() && message.find(path) == std::string::npos) out = path + ": " + message;
  if (!hint.empty()) out += "; " + hint;
  return out;
}

// ---------------------------------------------------------------------------------------------- JSON
namespace {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0;
  bool integral = false;  // written without '.', 'e' or 'E' (Python's json gives int for those)
  std::string text;       // String value, or the literal of a Number
  std::vector<Json> items;
  std::map<std::string, Json> fields;
  std::vector<std::string> keys;  // fields in file order (a repeated key keeps its first place, as in Python)

  const Json* get(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  }
  std::string repr() const;  // for messages
};

std::string Json::repr() const {
  switch (kind) {
    case Null: return "null";
    case Bool: return boolean ? "true" : "false";
    case Number: return text;
    case String: return "\"" + text + "\"";
    case Array: {
      std::string s = "[";
      for (std::size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i].repr();
      return s + "]";
    }
    case Object: return "{...}";
  }
  return "?";
}

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  Json parse() {
    Json v = value(0);
    skip_ws();
    if (i_ != s_.size()) fail("extra data");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    int line = 1 + (int)std::count(s_.begin(), s_.begin() + (std::ptrdiff_t)std::min(i_, s_.size()), '\n');
    throw std::invalid_argument(what + ", line " + std::to_string(line));
  }
  void skip_ws() {
    while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_]) && s_[i_] != '\0') ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c, const char* what) {
    if (!eat(c)) fail(std::string("Expecting ") + what);
  }

  Json value(int depth) {
    if (depth > 64) fail("nesting too deep");
    skip_ws();
    if (i_ >= s_.size()) fail("Expecting value");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Json::Object;
      if (eat('}')) return v;
      do {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("Expecting property name enclosed in double quotes");
        std::string key = string();
        expect(':', "':' delimiter");
        if (!v.fields.count(key)) v.keys.push_back(key);
        v.fields[key] = value(depth + 1);  // a repeated key: the last wins, as in Python
      } while (eat(','));
      expect('}', "',' delimiter");
    } else if (c == '[') {
      ++i_;
      v.kind = Json::Array;
      if (eat(']')) return v;
      do v.items.push_back(value(depth + 1));
      while (eat(','));
      expect(']', "',' delimiter");
    } else if (c == '"') {
      v.kind = Json::String;
      v.text = string();
    } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::Bool;
      v.boolean = s_[i_] == 't';
      i_ += v.boolean ? 4 : 5;
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t start = i_;
      if (s_[i_] == '-') ++i_;
      while (i_ < s_.size() && (std::isdigit((unsigned char)s_[i_]) || std::strchr(".eE+-", s_[i_]))) ++i_;
      v.kind = Json::Number;
      v.text = s_.substr(start, i_ - start);
      v.integral = v.text.find_first_of(".eE") == std::string::npos;
      char* end = nullptr;
      errno = 0;
      v.number = std::strtod(v.text.c_str(), &end);
      if (end != v.text.c_str() + v.text.size() || v.text == "-") fail("Invalid number");
    } else {
      fail("Expecting value");
    }
    return v;
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("Unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if ((unsigned char)c < 0x20) fail("Invalid control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("Unterminated string");
      char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {  // surrogate pair
            i_ += 2;
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(cp, out);
          break;
        }
        default: fail("Invalid \\escape");
      }
    }
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("Invalid \\uXXXX escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
      else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
      else fail("Invalid \\uXXXX escape");
    }
    return v;
  }

  static void utf8(unsigned cp, std::string& out) {
    if (cp < 0x80) {
      out += (char)cp;
    } else if (cp < 0x800) {
      out += (char)(0xC0 | (cp >> 6));
      out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += (char)(0xE0 | (cp >> 12));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    } else {
      out += (char)(0xF0 | (cp >> 18));
      out += (char)(0x80 | ((cp >> 12) & 0x3F));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    }
  }

  const std::string& s_;
  std::size_t i_ = 0;
};

const char* kRewriteHint = "rebuild the engine to rewrite it";

bool is_int(const Json* v) { return v && v->kind == Json::Number && v->integral; }

std::string as_text(const Json* v) {  // strings as they are; anything else as its JSON text
  if (!v || v->kind == Json::Null) return "";
  return v->kind == Json::String ? v->text : v->repr();
}

// Path(p).name and Path(p).with_suffix(".onnx").name
std::string base_name(const std::string& p) {
  std::size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string default_onnx(const std::string& engine_path) {
  std::string name = base_name(engine_path);
  std::size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  return name + ".onnx";
}

// shlex.quote
std::string shell_quote(const std::string& s) {
  if (s.empty()) return "''";
  bool safe = std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum((unsigned char)c) || std::strchr("_@%+=:,./-", c) != nullptr;
  });
  if (safe) return s;
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\"'\"'") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> major_minor(const std::string& v) {
  std::vector<std::string> parts;
  std::stringstream ss(v);
  std::string p;
  while (parts.size() < 2 && std::getline(ss, p, '.')) parts.push_back(p);
  return parts;
}

// Python's repr() of the value json.loads gives, for messages that print a manifest value as Python does.
std::string py_repr(const Json& v) {
  switch (v.kind) {
    case Json::Null: return "None";
    case Json::Bool: return v.boolean ? "True" : "False";
    case Json::Number: {
      if (v.integral) return v.text;
      char buf[40];
      for (int p = 1; p <= 17; ++p) {  // shortest round trip, as Python's float repr
        std::snprintf(buf, sizeof buf, "%.*g", p, v.number);
        if (std::strtod(buf, nullptr) == v.number) break;
      }
      std::string t = buf;
      if (t.find_first_of(".en") == std::string::npos) t += ".0";
      return t;
    }
    case Json::String: {
      const char q = (v.text.find('\'') != std::string::npos && v.text.find('"') == std::string::npos) ? '"' : '\'';
      std::string out(1, q);
      for (char c : v.text) {
        if (c == '\\' || c == q) out += std::string("\\") + c;
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if ((unsigned char)c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", (unsigned)(unsigned char)c);
          out += buf;
        } else {
          out += c;
        }
      }
      return out + q;
    }
    case Json::Array: {
      std::string s = "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) s += (i ? ", " : "") + py_repr(v.items[i]);
      return s + "]";
    }
    case Json::Object: {
      std::string s = "{";
      for (std::size_t i = 0; i < v.keys.size(); ++i) {
        Json key;
        key.kind = Json::String;
        key.text = v.keys[i];
        s += (i ? ", " : "") + py_repr(key) + ": " + py_repr(*v.get(v.keys[i]));
      }
      return s + "}";
    }
  }
  return "?";
}

bool is_io_dtype(const Json& v) { return v.kind == Json::String && (v.text == "float32" || v.text == "float16"); }

// EngineManifest._problem(), in the same order
std::string problem(const Manifest& m, const Json& profile, const Json* spec, const Json* io) {
  const std::string& sha = m.engine_sha256;
  if (sha.size() != 64 || sha.find_first_not_of("0123456789abcdef") != std::string::npos)
    return "engine_sha256 is not a SHA-256 hex digest";
  if (profile.kind != Json::Object || profile.fields.size() != 3 || !profile.get("min") || !profile.get("opt") ||
      !profile.get("max"))
    return "profile must have exactly min, opt and max";
  for (const std::string& k : profile.keys) {  // file order, as Python reports
    const Json& v = *profile.get(k);
    bool ok = v.kind == Json::Array && v.items.size() == 4;
    for (std::size_t i = 0; ok && i < 4; ++i) ok = is_int(&v.items[i]) && v.items[i].number > 0;
    if (!ok) return "profile " + k + " must be 4 positive integers [N, C, H, W], got " + v.repr();
  }
  const Json &lo = *profile.get("min"), &opt = *profile.get("opt"), &hi = *profile.get("max");
  for (std::size_t i = 0; i < 4; ++i)
    if (!(lo.items[i].number <= opt.items[i].number && opt.items[i].number <= hi.items[i].number))
      return "profile must have min <= opt <= max in every dimension, got " + lo.repr() + ", " + opt.repr() + ", " +
             hi.repr();
  if (!spec || spec->kind != Json::Object || !spec->get("name"))
    return "spec must be the model spec object written by deblur-export";  // (ModelSpec's own checks: Python only)
  if (m.precision != "fp16" && m.precision != "fp32") return "precision must be 'fp16' or 'fp32', got '" + m.precision + "'";
  if (io) {
    bool ok = io->kind == Json::Object && io->keys.size() == 2;
    for (std::size_t i = 0; ok && i < io->keys.size(); ++i) ok = !io->keys[i].empty() && is_io_dtype(*io->get(io->keys[i]));
    if (!ok) return "io must name one input and one output tensor, each float32 or float16, got " + py_repr(*io);
  }
  if (m.tensorrt_version.empty()) return "tensorrt_version must be a non-empty string";
  if (m.compute_capability.empty()) return "compute_capability must be a non-empty string";
  if (m.engine_file.empty()) return "engine_file must be a non-empty string";
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------- manifest
std::string manifest_path(const std::string& engine_path) { return engine_path + ".json"; }

Manifest parse_manifest(const std::string& json_text, const std::string& source) {
  Json d;
  try {
    d = JsonParser(json_text).parse();
  } catch (const std::invalid_argument& e) {
    throw ManifestError(std::string("manifest is not valid JSON (") + e.what() + ")", source, kRewriteHint);
  }
  if (d.kind != Json::Object) throw ManifestError("manifest is not a JSON object", source, kRewriteHint);
  const Json* fmt = d.get("format_version");
  if (!is_int(fmt)) throw ManifestError("manifest has no integer format_version", source, kRewriteHint);
  if (fmt->number > kManifestFormatVersion)
    throw ManifestError("manifest format_version " + fmt->text + " is newer than this deblur-edge reads (" +
                            std::to_string(kManifestFormatVersion) + ")",
                        source, "upgrade deblur-edge on this machine");
  static const char* required[] = {"compute_capability", "cuda_version", "driver_version", "engine_file",
                                   "engine_sha256",      "gpu_name",     "precision",      "profile",
                                   "tensorrt_version"};  // sorted, as Python reports them
  std::string missing;
  for (const char* k : required)
    if (!d.get(k)) missing += (missing.empty() ? "" : ", ") + std::string(k);
  if (!missing.empty()) throw ManifestError("manifest lacks " + missing, source, kRewriteHint);

  Manifest m;
  m.format_version = (int)fmt->number;
  auto str = [&](const char* k) {
    const Json* v = d.get(k);
    return v && v->kind == Json::String ? v->text : std::string();
  };
  m.engine_sha256 = str("engine_sha256");
  m.engine_file = str("engine_file");
  m.tensorrt_version = str("tensorrt_version");
  m.compute_capability = str("compute_capability");
  m.precision = str("precision");
  m.cuda_version = as_text(d.get("cuda_version"));
  m.driver_version = as_text(d.get("driver_version"));
  m.gpu_name = as_text(d.get("gpu_name"));
  m.source_onnx = str("source_onnx");
  if (const Json* st = d.get("strongly_typed"); st && st->kind == Json::Bool) m.strongly_typed = st->boolean;
  const Json& profile = *d.get("profile");
  const Json* io = d.get("io");
  std::string p = problem(m, profile, d.get("spec"), io);
  if (!p.empty()) throw ManifestError("invalid manifest: " + p, source, kRewriteHint);
  if (io) {
    m.io.clear();
    for (const std::string& k : io->keys) m.io.emplace_back(k, io->get(k)->text);
  }
  auto dims = [&](const char* k) {
    std::array<int, 4> a{};
    for (int i = 0; i < 4; ++i) a[i] = (int)profile.get(k)->items[i].number;
    return a;
  };
  m.profile_min = dims("min");
  m.profile_opt = dims("opt");
  m.profile_max = dims("max");
  if (const Json* spec = d.get("spec"); spec && spec->kind == Json::Object) {
    if (const Json* pm = spec->get("pad_multiple"); is_int(pm) && pm->number > 0)
      m.pad_multiple = (int)pm->number;
    else if (const Json* nd = spec->get("n_downsampling"); is_int(nd) && nd->number >= 0 && nd->number < 16)
      m.pad_multiple = 1 << (int)nd->number;
  }
  return m;
}

std::string build_command(const std::string& onnx_path, bool fp16) {
  return "deblur-export --onnx " + shell_quote(onnx_path) + (fp16 ? " --fp16" : "") + " --require-engine";
}

static std::string nchw(const std::array<int, 4>& s) {
  return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]) + "x" + std::to_string(s[3]);
}

// As contract.build_command in Python: the profile travels with the command, static as --static HxW.
std::string rebuild_command(const Manifest& m, const std::string& engine_path) {
  std::string cmd = build_command(m.source_onnx.empty() ? default_onnx(engine_path) : m.source_onnx, m.precision == "fp16");
  std::string shapes;
  if (m.profile_min == m.profile_max) {
    shapes = " --static " + std::to_string(m.profile_min[2]) + "x" + std::to_string(m.profile_min[3]);
  } else {
    shapes = " --min-shape " + nchw(m.profile_min) + " --opt-shape " + nchw(m.profile_opt) + " --max-shape " + nchw(m.profile_max);
  }
  return cmd.insert(cmd.size() - std::string(" --require-engine").size(), shapes);
}

Manifest read_manifest(const std::string& engine_path) {
  std::string path = manifest_path(engine_path);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (errno == ENOENT)
      throw ManifestError("no manifest beside the engine (expected " + path + ")", "",
                          "rebuild it: " + build_command(default_onnx(engine_path), true));
    throw ManifestError(std::string("cannot read manifest (") + std::strerror(errno) + ")", path);
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_manifest(ss.str(), path);
}

void check_manifest(const Manifest& m, const std::string& engine_path, const std::string& tensorrt_version,
                    const std::string& compute_capability) {
  std::ifstream probe(engine_path, std::ios::binary);
  if (!probe)
    throw ManifestError("engine file not found", engine_path, "rebuild it: " + rebuild_command(m, engine_path));
  std::string actual;
  try {
    actual = sha256_file(engine_path);
  } catch (const std::runtime_error& e) {
    throw ManifestError(e.what(), engine_path);
  }
  check_manifest_digest(m, engine_path, actual, tensorrt_version, compute_capability);
}

std::string io_json(const TensorTypes& io) {
  auto str = [](const std::string& s) {  // a JSON string (UTF-8 as is; compare parsed, not as text)
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if ((unsigned char)c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", (unsigned)(unsigned char)c);
        out += buf;
      } else {
        out += c;
      }
    }
    return out + "\"";
  };
  std::string out = "{";
  for (std::size_t i = 0; i < io.size(); ++i) out += (i ? ", " : "") + str(io[i].first) + ": " + str(io[i].second);
  return out + "}";
}

std::string io_dtype(const std::string& trt_name) {
  if (trt_name == "FLOAT") return "float32";
  if (trt_name == "HALF") return "float16";
  std::string lower = trt_name;
  for (char& c : lower) c = (char)std::tolower((unsigned char)c);
  return lower;
}

namespace {
std::string describe(const TensorTypes& io, std::size_t n_inputs) {  // tensorrt_engine._describe
  std::string ins, outs;
  for (std::size_t i = 0; i < io.size(); ++i) {
    std::string& part = i < n_inputs ? ins : outs;
    part += (part.empty() ? "" : ", ") + io[i].first + " (" + io[i].second + ")";
  }
  return "inputs " + (ins.empty() ? "none" : ins) + "; outputs " + (outs.empty() ? "none" : outs);
}

std::string shape_text(const std::vector<long long>& d) {
  std::string s;
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s;
}
}  // namespace

void check_engine_io(const Manifest& m, const std::string& engine_path, const TensorTypes& inputs,
                     const TensorTypes& outputs) {
  TensorTypes got = inputs;
  got.insert(got.end(), outputs.begin(), outputs.end());
  if (inputs.size() == 1 && outputs.size() == 1 && got == m.io) return;
  throw EngineMismatchError("the engine's I/O tensors are " + describe(got, inputs.size()) + ", its manifest says " +
                                describe(m.io, 1),
                            engine_path,
                            "the engine and its manifest do not belong together: rebuild on this machine: " +
                                rebuild_command(m, engine_path));
}

void check_engine_profile(const Manifest& m, const std::string& engine_path, const std::vector<long long>& min,
                          const std::vector<long long>& max) {
  auto as_vec = [](const std::array<int, 4>& a) { return std::vector<long long>(a.begin(), a.end()); };
  if (min == as_vec(m.profile_min) && max == as_vec(m.profile_max)) return;
  throw EngineMismatchError("the engine's profile is " + shape_text(min) + " .. " + shape_text(max) +
                                ", its manifest says " + shape_text(as_vec(m.profile_min)) + " .. " +
                                shape_text(as_vec(m.profile_max)),
                            engine_path, "rebuild on this machine: " + rebuild_command(m, engine_path));
}

void check_manifest_digest(const Manifest& m, const std::string& engine_path, const std::string& actual_sha256,
                           const std::string& tensorrt_version, const std::string& compute_capability) {
  std::vector<std::string> problems;
  if (actual_sha256 != m.engine_sha256)
    problems.push_back("engine file changed since its manifest was written (SHA-256 manifest " +
                       m.engine_sha256.substr(0, 12) + "\u2026 vs file " + actual_sha256.substr(0, 12) + "\u2026)");
  if (major_minor(m.tensorrt_version) != major_minor(tensorrt_version))
    problems.push_back("built with TensorRT " + m.tensorrt_version + " (manifest) but this machine has TensorRT " +
                       tensorrt_version + "; engines only run on the TensorRT version that built them");
  if (m.compute_capability != compute_capability)
    problems.push_back("built for compute capability " + m.compute_capability + " (" + m.gpu_name +
                       ", manifest) but this GPU is " + compute_capability +
                       "; engines only run on the GPU architecture that built them");
  if (problems.empty()) return;
  std::string msg;
  for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
  throw ManifestError(msg, engine_path, "rebuild on this machine: " + rebuild_command(m, engine_path));
}

}  // namespace deblur
