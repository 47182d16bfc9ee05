// White-box feature inversion throughput: rewind's featinv::white_box on a split classifier.
// One JSON line on stdout: {"impl": "rewind", "split", "targets", "steps", "seconds",
// "image_steps_per_s", "median_psnr", "build", ...}. The plain-PyTorch reference of the same loop is
// experiments/bench/split_reference.py; bench_split.sh runs both side by side.
//
// usage: bench_split --classifier C.pt --targets T.npy --split relu2 [--steps 100] [--threads 0]
//                    [--batch 0 (auto)] [--w-bn 0.05] [--device cpu|cuda] [--no-graph] [--precision fp32|bf16|fp16]
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "rewind/core/build_info.h"
#include "rewind/core/runtime.h"
#include "rewind/featinv/featinv.h"
#include "rewind/io/npy.h"
#include "rewind/models/models.h"

int main(int argc, char** argv) {
  std::string classifier, targets, split = "relu2", device = "cpu", precision = "fp32";
  bool graph = true;
  int64_t steps = 100, threads = 0, batch = 0;
  double w_bn = rw::featinv::WhiteBoxOptions{}.w_bn;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "missing value for %s\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--classifier") classifier = next();
    else if (a == "--targets") targets = next();
    else if (a == "--split") split = next();
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--threads") threads = std::stoll(next());
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--w-bn") w_bn = std::stod(next());
    else if (a == "--device") device = next();
    else if (a == "--no-graph") graph = false;
    else if (a == "--precision") precision = next();
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  if (classifier.empty() || targets.empty()) {
    std::fprintf(stderr, "usage: bench_split --classifier C.pt --targets T.npy --split S [options]\n");
    return 2;
  }
  try {
    rw::init_threads(int(threads));
    device = rw::select_device(device);
    auto c = rw::models::load_classifier(classifier);
    auto x = rw::io::read_npy(targets).to(torch::kFloat32);
    auto acts = rw::featinv::activations(*c, split, x);
    rw::featinv::WhiteBoxOptions o;
    o.loop.steps = steps;
    o.batch = batch;
    o.w_bn = w_bn;
    o.cuda_graph = graph;
    o.precision = precision;
    {  // warm-up
      auto w = o;
      w.loop.steps = 2;
      rw::featinv::white_box(*c, split, acts.slice(0, 0, std::min<int64_t>(2, acts.size(0))), w);
    }
    // REWIND_PROFILE=trace.json: a chrome trace of the timed run (for finding where the time goes)
    std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
    if (const char* f = std::getenv("REWIND_PROFILE")) prof = std::make_unique<torch::autograd::profiler::RecordProfile>(f);
    if (c->device().is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    auto r = rw::featinv::white_box(*c, split, acts, o);
    if (c->device().is_cuda()) torch::cuda::synchronize();
    prof.reset();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto q = rw::featinv::quality(x, r.recon);
    std::printf(
        "{\"impl\": \"rewind\", \"device\": \"%s\", \"precision\": \"%s\", \"graph\": %s, \"split\": \"%s\", \"targets\": %lld, \"steps\": %lld, \"threads\": %d, \"seconds\": %.4f, "
        "\"image_steps_per_s\": %.1f, \"median_psnr\": %.3f, \"build\": \"%s\"}\n",
        device.c_str(), precision.c_str(), graph && device != "cpu" ? "true" : "false", split.c_str(), (long long)x.size(0), (long long)steps, rw::num_threads(), s, double(x.size(0) * steps) / s,
        q.psnr.median().item<double>(), rw::build_string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_split: %s\n", e.what());
    return 1;
  }
  return 0;
}
