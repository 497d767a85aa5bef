// deblur_infer: deblur one binary PPM (P6) with a TensorRT engine, no image library needed.
//   deblur_infer g_fp16.engine blurred.ppm sharp.ppm [--runs N]
// Convert with e.g. `convert in.png in.ppm` or OpenCV's imwrite("in.ppm", img).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "deblur/deblurrer.hpp"

namespace {

struct Image {
  int w = 0, h = 0;
  std::vector<uint8_t> bgr;  // packed, 3*w bytes per row
};

void swap_rb(Image& im) {  // PPM is RGB, the Deblurrer takes BGR
  for (std::size_t i = 0; i + 2 < im.bgr.size(); i += 3) std::swap(im.bgr[i], im.bgr[i + 2]);
}

// One header token, skipping whitespace and '#' comments.
std::string token(std::istream& in) {
  std::string t;
  int c;
  while ((c = in.get()) != EOF) {
    if (c == '#') {
      while ((c = in.get()) != EOF && c != '\n') {
      }
    } else if (!std::isspace(c)) {
      t += (char)c;
      break;
    }
  }
  while ((c = in.peek()) != EOF && !std::isspace(c) && c != '#') t += (char)in.get();
  return t;
}

Image read_ppm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw deblur::DeblurError(std::string("cannot open (") + std::strerror(errno) + ")", path);
  if (token(in) != "P6") throw deblur::DeblurError("not a binary PPM (P6)", path, "convert it, e.g. convert in.png in.ppm");
  Image im;
  int maxval = 0;
  try {
    im.w = std::stoi(token(in));
    im.h = std::stoi(token(in));
    maxval = std::stoi(token(in));
  } catch (const std::exception&) {
    throw deblur::DeblurError("bad PPM header", path);
  }
  if (im.w < 1 || im.h < 1 || maxval != 255) throw deblur::DeblurError("only 8-bit PPM (maxval 255) is supported", path);
  if (im.w > 32768 || im.h > 32768) throw deblur::DeblurError("image larger than 32768x32768", path);
  in.get();  // the single whitespace after maxval
  im.bgr.resize((std::size_t)im.w * im.h * 3);
  if (!in.read((char*)im.bgr.data(), (std::streamsize)im.bgr.size())) throw deblur::DeblurError("truncated PPM", path);
  swap_rb(im);
  return im;
}

// Written to PATH.tmp and renamed: a full disk or a crash never leaves a half-written image under PATH.
void write_ppm(const std::string& path, Image im) {
  swap_rb(im);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << "P6\n" << im.w << " " << im.h << "\n255\n";
    out.write((const char*)im.bgr.data(), (std::streamsize)im.bgr.size());
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw deblur::DeblurError(std::string("cannot write (") + std::strerror(errno) + ")", path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw deblur::DeblurError(std::string("cannot write (") + std::strerror(err) + ")", path);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 1;
  const bool runs_given = argc == 6 && std::strcmp(argv[4], "--runs") == 0;
  if (runs_given) {
    char* end = nullptr;
    long n = std::strtol(argv[5], &end, 10);
    runs = (*end == '\0' && n >= 1 && n <= 1000000) ? (int)n : 0;
  }
  if ((argc != 4 && !runs_given) || runs < 1) {
    std::cerr << "usage: deblur_infer ENGINE IN.ppm OUT.ppm [--runs N]  (N >= 1)\n";
    return 2;
  }
  try {
    Image in = read_ppm(argv[2]);  // a bad input file is reported before the GPU is touched
    deblur::Deblurrer d(argv[1]);
    Image out = in;
    const int pitch = 3 * in.w;
    d.run(in.bgr.data(), in.h, in.w, pitch, out.bgr.data(), pitch);  // warm-up (TensorRT's first run is slow)
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < runs; ++i) d.run(in.bgr.data(), in.h, in.w, pitch, out.bgr.data(), pitch);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / runs;
    write_ppm(argv[3], out);
    auto hw = d.padded_size(in.h, in.w);
    std::printf("%s: %dx%d (engine %dx%d, %s) %.2f ms/frame end to end over %d run(s) -> %s\n", argv[2], in.w, in.h,
                hw[1], hw[0], d.manifest().precision.c_str(), ms, runs, argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "deblur_infer: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
