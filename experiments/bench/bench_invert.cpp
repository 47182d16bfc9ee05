// Inversion throughput: rewind's batched latent recovery (ganinv::invert) on targets from a file.
// One JSON line per run on stdout: {"impl": "rewind", "device", "targets", "restarts", "steps",
// "seconds", "image_steps_per_s", "median_mse", "build", ...}. The plain-PyTorch reference of the
// same algorithm is experiments/bench/invert_reference.py; bench_invert.sh runs both side by side.
//
// usage: bench_invert --generator G.pt --targets T.npy [--restarts 4] [--steps 200] [--lr 0.05]
//                     [--device cpu|cuda] [--threads 0] [--batch 0 (auto)] [--graph] [--precision fp32|bf16]
//                     [--errors FILE (each target's final MSE, one a line)]
//        bench_invert --generator G.pt --targets MANIFEST.csv --write-targets T.npy
//                     (the manifest's images at the generator's size as one .npy, for a machine without OpenCV)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "rewind/core/build_info.h"
#include "rewind/core/runtime.h"
#include "rewind/data/image_stream.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/manifest.h"
#include "rewind/io/npy.h"
#include "rewind/models/models.h"

int main(int argc, char** argv) {
  std::string generator, targets, device = "cpu", precision = "fp32", errors, write_targets;
  int64_t restarts = 4, steps = 200, threads = 0, batch = 0;
  double lr = 0.05;
  bool graph = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "missing value for %s\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--generator") generator = next();
    else if (a == "--targets") targets = next();
    else if (a == "--restarts") restarts = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--lr") lr = std::stod(next());
    else if (a == "--device") device = next();
    else if (a == "--threads") threads = std::stoll(next());
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--graph") graph = true;
    else if (a == "--precision") precision = next();
    else if (a == "--errors") errors = next();
    else if (a == "--write-targets") write_targets = next();
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  if (generator.empty() || targets.empty()) {
    std::fprintf(stderr, "usage: bench_invert --generator G.pt --targets T.npy [options]\n");
    return 2;
  }
  try {
    rw::init_threads(int(threads));
    c10::Device dev(device);
    auto g = rw::models::load_generator(generator, dev);
    at::Tensor t;
    if (targets.size() > 4 && targets.substr(targets.size() - 4) == ".csv") {
      const auto m = rw::io::read_manifest(targets);
      const auto shape = g->output_shape();
      rw::data::ImageStream s(m, rw::io::ImageSpec{shape.channels, shape.height});
      t = rw::data::load_all(s, targets).images;
      if (!s.skipped().empty()) std::fprintf(stderr, "bench_invert: %zu images skipped\n", s.skipped().size());
    } else {
      t = rw::io::read_npy(targets).to(torch::kFloat32);
    }
    if (!write_targets.empty()) {
      rw::io::write_npy(write_targets, t);
      std::printf("wrote %lld targets to %s\n", (long long)t.size(0), write_targets.c_str());
      return 0;
    }
    t = t.to(dev);
    rw::ganinv::InvertOptions o;
    o.restarts = restarts;
    o.loop.steps = steps;
    o.loop.lr = lr;
    o.batch = batch;
    o.cuda_graph = graph;
    o.precision = precision;
    // warm-up (allocator, kernels, graph capture) on 2 steps
    {
      auto w = o;
      w.loop.steps = 2;
      rw::ganinv::invert(*g, t.slice(0, 0, std::min<int64_t>(t.size(0), 2)), w);
    }
    if (dev.is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    auto r = rw::ganinv::invert(*g, t, o);
    if (dev.is_cuda()) torch::cuda::synchronize();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto mse = r.terms.select(1, 0).to(torch::kCPU);
    double median = mse.median().item<double>();
    if (!errors.empty()) {
      std::ofstream f(errors);
      for (int64_t i = 0; i < mse.size(0); ++i) f << mse[i].item<double>() << "\n";
    }
    const auto& b = rw::build_info();
    std::printf(
        "{\"impl\": \"rewind\", \"device\": \"%s\", \"precision\": \"%s\", \"graph\": %s, \"targets\": %lld, \"restarts\": %lld, \"steps\": %lld, "
        "\"threads\": %d, \"seconds\": %.4f, \"image_steps_per_s\": %.1f, \"ms_per_step\": %.4f, \"median_mse\": %.6g, "
        "\"build\": \"%s %s %s\"}\n",
        device.c_str(), precision.c_str(), graph ? "true" : "false", (long long)t.size(0), (long long)restarts, (long long)steps,
        rw::num_threads(), s, double(t.size(0) * restarts * steps) / s, 1000.0 * s / double(steps), median,
        b.git_commit.c_str(), b.build_type.c_str(), b.torch.c_str());
    if (b.debug) std::fprintf(stderr, "warning: debug build, timings are not representative\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_invert: %s\n", e.what());
    return 1;
  }
  return 0;
}
