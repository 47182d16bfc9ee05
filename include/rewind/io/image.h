// Images <-> tensors. The tensor convention everywhere in rewind:
//   one image  [C, H, W]      float32, RGB (C = 3) or grey (C = 1), values in [-1, 1]
//   a batch    [N, C, H, W]   same
// Files are whatever OpenCV reads (PNG, JPEG, BMP, TIFF, WebP, PGM...). Output is PNG.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "rewind/core/progress.h"

namespace rw::io {

enum class ResizeMode {
  kCenterCrop,  ///< scale the shorter side to `size`, crop the centre (default: keeps aspect)
  kStretch,     ///< scale both sides to `size` (distorts non-square images)
  kRefuse,      ///< a size other than `size` is an error (for data that must not be resampled)
};

struct ImageSpec {
  int channels = 3;   ///< 3 = RGB, 1 = grey; images are converted to this
  int size = 0;       ///< square side in pixels; 0 = keep the file's size (a batch then needs equal sizes)
  ResizeMode resize = ResizeMode::kCenterCrop;
};

/// The decompression-bomb limit: images whose PNG or JPEG header declares more pixels are refused
/// before decoding (OpenCV gets the same limit for other formats). Default: $REWIND_MAX_PIXELS, else
/// 50 megapixels; 0 leaves it unchanged. Set it before the first image is read.
void set_max_pixels(uint64_t pixels);

/// Loads one image as [C,H,W] float32 in [-1,1]. Throws Error{kInput} naming the file and the
/// problem: missing, unreadable, truncated (PNG without IEND, JPEG without its end marker),
/// or (kRefuse) of the wrong size.
at::Tensor load_image(const std::string& path, const ImageSpec& spec);

/// Result of loading many images: the ones that loaded, stacked, and the ones that did not.
struct ImageBatch {
  at::Tensor images;                                    ///< [N_ok, C, H, W]
  std::vector<size_t> indices;                          ///< input index of each loaded image
  std::vector<std::pair<size_t, std::string>> skipped;  ///< (input index, reason)
};

/// Loads `paths`; a bad file is recorded in `skipped` (with the reason) and the rest go on.
/// Throws Error{kInput} only when no image at all could be loaded. With spec.size == 0, images
/// whose size differs from the first good one are skipped with a hint to pass a size.
ImageBatch load_images(const std::vector<std::string>& paths, const ImageSpec& spec,
                       const ProgressFn& progress = {});

/// Writes [C,H,W] (or [1,C,H,W]) in [-1,1] as an 8-bit PNG, atomically. Values are clamped.
void save_image(const std::string& path, const at::Tensor& image);

/// [C,H,W] (or [1,C,H,W]) in [-1,1] -> PNG file bytes (for inline report images).
std::string encode_png(const at::Tensor& image);

/// Tiles [N,C,H,W] into one [C,H',W'] image, `cols` per row, `pad` pixels of `pad_value` between.
at::Tensor make_grid(const at::Tensor& images, int cols, int pad = 2, float pad_value = 1.0f);

/// The words on a grid people read (labelled_grid).
struct GridLabels {
  std::string title;                           ///< one line above the grid; may be empty
  std::vector<std::string> columns;            ///< a header over each column (lines split at '\n', up to 3); may be empty
  std::vector<std::vector<std::string>> rows;  ///< up to 3 short lines left of each row (identity, verdict,
                                               ///< similarity); may be empty. A line starting "LEAKS" is drawn
                                               ///< red, "inconclusive" amber
  int min_side = 96;      ///< tiles are upscaled (nearest, whole factors) to at least this many pixels
  int max_width = 1280;   ///< a wider grid wraps: its columns continue in bands below, each with the header
                          ///< and the row labels again
  bool repeat_first = false;  ///< every band starts with column 0 again (an original beside its rebuilds)
};

/// Tiles images [rows * cols, C, H, W] in [-1, 1] (row-major) under a header naming the columns,
/// with a label left of each row and an optional title: RGB [3, H', W'] in [-1, 1]. Text is
/// OpenCV's Hershey font, which has ASCII only: other bytes are drawn as '?'. Missing tiles at the
/// end of the last row stay blank.
at::Tensor labelled_grid(const at::Tensor& images, int cols, const GridLabels& labels);

/// uint8 HWC buffer (RGB or grey) -> [C,H,W] in [-1,1], and back.
at::Tensor from_hwc_u8(const uint8_t* data, int h, int w, int c);
std::vector<uint8_t> to_hwc_u8(const at::Tensor& chw);

}  // namespace rw::io
