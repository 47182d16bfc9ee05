// ImageStream: a manifest read as fixed-size batches of images, decoded on a worker thread with a
// bounded prefetch, so that memory holds a few batches whatever the dataset's size.
//
//   batch.images  [B, C, H, W] float32 in [-1, 1] (B <= batch size; the last batch may be short)
//   batch.rows    manifest row (index into Manifest::entries) of each image, ascending
//   batch.first   position of the batch's first image among the images streamed so far (the
//                 stream position: 0, B, 2B... counting loaded images only). Seeds that depend on
//                 it (latent-recovery restarts) make a streamed run equal to an in-memory one.
//
// A bad item (missing, truncated, undecodable, refused size) is skipped with its reason and the
// rest goes on; skipped() lists them. Only Error{kInput} counts as a bad item: any other error
// (a bug, out of memory) is rethrown by next().
//
// Decoding: by default io::load_image (OpenCV) at ImageSpec; in the torch-only build (no OpenCV)
// only `.npy` files holding one image [C,H,W] or [H,W,C] uint8 / float in [-1,1] can be read, and
// any other file is reported as a skipped item saying so. A custom Loader (e.g. a face cropper)
// replaces the decoder.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/dist/shard.h"
#include "rewind/io/image.h"
#include "rewind/io/manifest.h"

namespace rw::data {

/// Rows i with i % count == index (round-robin: shards stay balanced whatever the identity order).
using Shard = dist::Shard;

struct Batch {
  at::Tensor images;          ///< [B, C, H, W] in [-1, 1]
  std::vector<size_t> rows;   ///< manifest row of each image
  int64_t first = 0;          ///< stream position of images[0]
  int64_t size() const { return int64_t(rows.size()); }
};

struct Skipped {
  size_t row = 0;       ///< manifest row
  std::string path;     ///< resolved path
  std::string reason;   ///< why it was skipped (names the file and the fix)
};

/// Decodes one item: manifest row + resolved path -> [C, H, W] in [-1, 1]. Throws Error{kInput}
/// for a bad item.
using Loader = std::function<at::Tensor(size_t row, const std::string& path)>;

/// The default decoder for `spec` (see the header comment for the torch-only build).
Loader image_loader(const io::ImageSpec& spec);

struct StreamOptions {
  int64_t batch = 64;      ///< images per batch (>= 1)
  int64_t prefetch = 2;    ///< batches decoded ahead of the consumer (>= 1); memory ~ (prefetch + 1) batches
  Shard shard;             ///< which rows this process reads
  std::string stage = "load";  ///< progress stage name
  bool pin_memory = true;  ///< when the device in force (rw::current_device) is CUDA, batches are decoded
                           ///< into page-locked memory, so their copy to the GPU is asynchronous while
                           ///< the worker decodes the next ones; no effect on the CPU
};

class ImageStream {
 public:
  /// Streams every row of `manifest` (in the shard) in manifest order.
  ImageStream(const io::Manifest& manifest, const io::ImageSpec& spec, const StreamOptions& options = {},
              const ProgressFn& progress = {});
  /// Streams the given rows, in the given order (rows outside the shard are dropped).
  ImageStream(const io::Manifest& manifest, std::vector<size_t> rows, Loader loader, const StreamOptions& options = {},
              const ProgressFn& progress = {});
  /// Streams every row with a custom loader.
  ImageStream(const io::Manifest& manifest, Loader loader, const StreamOptions& options = {},
              const ProgressFn& progress = {});
  ~ImageStream();
  ImageStream(const ImageStream&) = delete;
  ImageStream& operator=(const ImageStream&) = delete;

  /// The next batch; false at the end. Throws Error{kCancelled} when the progress callback asks
  /// to stop (the worker is stopped too), and rethrows a non-input error of the decoder.
  /// Images of a size unlike the stream's first image are skipped (pass ImageSpec::size).
  bool next(Batch* out);

  /// Items skipped so far (complete once next() has returned false).
  const std::vector<Skipped>& skipped() const;
  /// Rows the stream will visit (after sharding), loaded or not.
  int64_t total() const;
  /// Images delivered so far.
  int64_t delivered() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Every image of a stream in memory (for small sets and tests): images [N, C, H, W] and their
/// rows; the skipped items stay readable on the stream. Throws Error{kInput} naming `what` and the
/// first reason when no image at all could be loaded.
struct Loaded {
  at::Tensor images;
  std::vector<size_t> rows;
};
Loaded load_all(ImageStream& stream, const std::string& what);

}  // namespace rw::data
