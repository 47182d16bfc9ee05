#include "rewind/data/image_stream.h"

#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/io/npy.h"

namespace fs = std::filesystem;

namespace rw::data {

namespace {

/// One image from a .npy file: [C,H,W] or [H,W,C] (C = 1 or 3), uint8 or float in [-1, 1].
at::Tensor load_npy_image(const std::string& path, const io::ImageSpec& spec) {
  RW_CHECK(fs::exists(path), Input, "image '", path, "' does not exist (check the manifest's paths; they are relative to the manifest's folder)");
  auto t = io::read_npy(path);
  if (t.dim() == 2) t = t.unsqueeze(0);
  RW_CHECK(t.dim() == 3, Input, "'", path, "' holds an array of shape ", t.sizes(),
           "; an image .npy must be [C,H,W] or [H,W,C] with C = 1 or 3");
  if (t.size(0) != 1 && t.size(0) != 3 && (t.size(2) == 1 || t.size(2) == 3)) t = t.permute({2, 0, 1});
  RW_CHECK(t.size(0) == 1 || t.size(0) == 3, Input, "'", path, "' has ", t.size(0), " channels; expected 1 or 3");
  if (t.scalar_type() == torch::kUInt8) t = t.to(torch::kFloat32).div(127.5).sub(1.0);
  else t = t.to(torch::kFloat32);
  if (spec.channels == 1 && t.size(0) == 3) t = t.mean(0, true);
  if (spec.channels == 3 && t.size(0) == 1) t = t.repeat({3, 1, 1});
  if (spec.size > 0 && (t.size(1) != spec.size || t.size(2) != spec.size)) {
    RW_CHECK(spec.resize != io::ResizeMode::kRefuse, Input, "image '", path, "' is ", t.size(2), "x", t.size(1),
             ", expected ", spec.size, "x", spec.size);
    t = torch::upsample_bilinear2d(t.unsqueeze(0), {spec.size, spec.size}, false).squeeze(0);
  }
  return t.contiguous();
}

}  // namespace

Loader image_loader(const io::ImageSpec& spec) {
  return [spec](size_t, const std::string& path) -> at::Tensor {
    if (fs::path(path).extension() == ".npy") return load_npy_image(path, spec);
#ifdef REWIND_WITH_OPENCV
    return io::load_image(path, spec);
#else
    RW_FAIL(Input, "image '", path, "': this build of rewind has no image decoder (built with REWIND_WITH_OPENCV=OFF); "
            "convert the images to .npy ([C,H,W] uint8) or use a build with OpenCV");
#endif
  };
}

struct ImageStream::Impl {
  const io::Manifest& manifest;
  std::vector<size_t> rows;
  Loader loader;
  StreamOptions opt;
  ProgressFn progress;

  // produced by the worker
  struct Item {
    Batch batch;
    std::vector<Skipped> skipped;
    int64_t visited = 0;       // rows visited up to and including this batch
    bool end = false;
    std::exception_ptr error;
  };
  std::mutex mu;
  std::condition_variable cv_full, cv_empty;
  std::deque<Item> queue;
  bool stop = false;
  std::thread worker;
  bool pin = false;  // page-locked batches (a CUDA device is in force)

  // consumer side
  std::vector<Skipped> skipped;
  int64_t delivered = 0;
  bool finished = false;

  Impl(const io::Manifest& m, std::vector<size_t> r, Loader l, const StreamOptions& o, const ProgressFn& p)
      : manifest(m), loader(std::move(l)), opt(o), progress(p) {
    RW_CHECK(opt.batch >= 1, Usage, "StreamOptions::batch must be >= 1, got ", opt.batch);
    RW_CHECK(opt.prefetch >= 1, Usage, "StreamOptions::prefetch must be >= 1, got ", opt.prefetch);
    RW_CHECK(opt.shard.count >= 1 && opt.shard.index >= 0 && opt.shard.index < opt.shard.count, Usage,
             "shard ", opt.shard.index, "/", opt.shard.count, " is not valid (need 0 <= index < count)");
    for (size_t row : r) {
      RW_CHECK(row < manifest.entries.size(), Internal, "ImageStream: row ", row, " is outside the manifest (",
               manifest.entries.size(), " rows)");
      if (opt.shard.contains(int64_t(row))) rows.push_back(row);
    }
    pin = opt.pin_memory && current_device() != "cpu";
    worker = std::thread([this] { produce(); });
  }

  ~Impl() { halt(); }

  void halt() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv_full.notify_all();
    cv_empty.notify_all();
    if (worker.joinable()) worker.join();
  }

  bool push(Item item) {
    std::unique_lock<std::mutex> lk(mu);
    cv_full.wait(lk, [&] { return stop || int64_t(queue.size()) < opt.prefetch; });
    if (stop) return false;
    queue.push_back(std::move(item));
    cv_empty.notify_one();
    return true;
  }

  void produce() {
    try {
      torch::NoGradGuard ng;
      std::vector<at::Tensor> imgs;
      Item cur;
      std::vector<int64_t> first_size;
      int64_t position = 0;
      for (size_t k = 0; k < rows.size(); ++k) {
        {
          std::lock_guard<std::mutex> lk(mu);
          if (stop) return;
        }
        const size_t row = rows[k];
        const std::string path = manifest.resolve(row);
        try {
          auto t = loader(row, path);
          RW_CHECK(t.dim() == 3, Internal, "the image loader returned ", t.sizes(), " for '", path, "', expected [C,H,W]");
          if (first_size.empty()) first_size = t.sizes().vec();
          if (t.sizes().vec() != first_size) {
            cur.skipped.push_back({row, path, "image '" + path + "' is " + std::to_string(t.size(2)) + "x" +
                                                  std::to_string(t.size(1)) + ", unlike the first (" +
                                                  std::to_string(first_size[2]) + "x" + std::to_string(first_size[1]) +
                                                  "); pass a size to resize all"});
          } else {
            imgs.push_back(std::move(t));
            cur.batch.rows.push_back(row);
          }
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::kInput) throw;
          cur.skipped.push_back({row, path, e.message()});
        }
        const bool last = k + 1 == rows.size();
        if (int64_t(imgs.size()) == opt.batch || last) {
          cur.visited = int64_t(k + 1);
          cur.end = last;
          if (!imgs.empty()) {
            cur.batch.images = torch::stack(imgs);
            if (pin) cur.batch.images = cur.batch.images.pin_memory();
            cur.batch.first = position;
            position += int64_t(imgs.size());
          }
          imgs.clear();
          if (!push(std::move(cur))) return;
          cur = Item{};
        }
      }
      if (rows.empty()) {
        Item end;
        end.end = true;
        push(std::move(end));
      }
    } catch (...) {
      Item err;
      err.error = std::current_exception();
      err.end = true;
      push(std::move(err));
    }
  }

  bool next(Batch* out) {
    while (!finished) {
      Item item;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_empty.wait(lk, [&] { return !queue.empty(); });
        item = std::move(queue.front());
        queue.pop_front();
      }
      cv_full.notify_one();
      if (item.error) {
        finished = true;
        halt();
        std::rethrow_exception(item.error);
      }
      for (auto& s : item.skipped) skipped.push_back(std::move(s));
      finished = item.end;
      try {
        report_progress(progress, {opt.stage, item.visited, int64_t(rows.size()), ""});
      } catch (...) {
        finished = true;
        halt();
        throw;
      }
      if (item.batch.size() > 0) {
        delivered += item.batch.size();
        *out = std::move(item.batch);
        return true;
      }
    }
    return false;
  }
};

namespace {
std::vector<size_t> all_rows(const io::Manifest& m) {
  std::vector<size_t> r(m.entries.size());
  for (size_t i = 0; i < r.size(); ++i) r[i] = i;
  return r;
}
}  // namespace

ImageStream::ImageStream(const io::Manifest& manifest, const io::ImageSpec& spec, const StreamOptions& options,
                         const ProgressFn& progress)
    : impl_(std::make_unique<Impl>(manifest, all_rows(manifest), image_loader(spec), options, progress)) {}

ImageStream::ImageStream(const io::Manifest& manifest, std::vector<size_t> rows, Loader loader,
                         const StreamOptions& options, const ProgressFn& progress)
    : impl_(std::make_unique<Impl>(manifest, std::move(rows), std::move(loader), options, progress)) {}

ImageStream::ImageStream(const io::Manifest& manifest, Loader loader, const StreamOptions& options,
                         const ProgressFn& progress)
    : impl_(std::make_unique<Impl>(manifest, all_rows(manifest), std::move(loader), options, progress)) {}

ImageStream::~ImageStream() = default;

bool ImageStream::next(Batch* out) { return impl_->next(out); }
const std::vector<Skipped>& ImageStream::skipped() const { return impl_->skipped; }
int64_t ImageStream::total() const { return int64_t(impl_->rows.size()); }
int64_t ImageStream::delivered() const { return impl_->delivered; }

Loaded load_all(ImageStream& stream, const std::string& what) {
  Loaded out;
  std::vector<at::Tensor> parts;
  Batch b;
  while (stream.next(&b)) {
    parts.push_back(b.images);
    out.rows.insert(out.rows.end(), b.rows.begin(), b.rows.end());
  }
  RW_CHECK(!parts.empty(), Input, "none of the ", stream.total(), " images of ", what, " could be loaded",
           stream.skipped().empty() ? std::string() : "; first problem: " + stream.skipped().front().reason);
  out.images = parts.size() == 1 ? parts[0] : torch::cat(parts);
  return out;
}

}  // namespace rw::data
