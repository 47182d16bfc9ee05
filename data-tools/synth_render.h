// Private header (data-tools only): the synthetic-identity face renderer.
//
// Contract: render_face(traits, nuisance, size) draws one face as an OpenCV 8-bit BGR image of
// size x size pixels. Everything is a pure function of its arguments: the same arguments give the
// same bytes on every machine (no global RNG, no time, no threads inside).
//
// Identity = FaceTraits (sampled once per identity from (seed, identity)).
// Image    = FaceTraits + Nuisance (sampled per image from (seed, identity, index)).
//
// Geometry is expressed in "face units": origin at the face centre, x to the image right, y down,
// face half-height ~1. Colours are 0..255 in OpenCV channel order.
#pragma once

#include <cstdint>

#include <opencv2/core.hpp>

namespace rw::data {

/// A colour, 0..255 per channel, OpenCV (B, G, R) order.
struct Bgr {
  double b = 0, g = 0, r = 0;
};

enum class HairStyle : int { kBald, kBuzz, kCrop, kSidePart, kFringe, kSpiky, kReceding, kHorseshoe,
                             kMohawk, kBun, kPonytail, kBob, kLong, kCurly, kAfro, kCount };
enum class NoseStyle : int { kLine, kNostrils, kWedge, kButton, kCurve, kCount };
enum class GlassesStyle : int { kNone, kRound, kRect, kOval, kSun, kWire, kCount };
enum class BeardStyle : int { kNone, kMoustache, kGoatee, kFull, kStubble, kChinstrap, kHandlebar, kCount };
enum class HatStyle : int { kNone, kBeanie, kHeadband, kCap, kBow, kCount };
enum class EarringStyle : int { kNone, kStud, kHoop, kCount };
enum class CollarStyle : int { kCrew, kVNeck, kShirt, kTurtleneck, kCount };

/// Per-identity appearance. Sampled by sample_traits(); fields are drawn independently so that
/// thousands of identities are distinguishable by eye.
struct FaceTraits {
  // Head and body shape.
  double face_w = 0.75;           // face half-width
  double face_h = 1.0;            // face half-height (centre to chin)
  double forehead_square = 0;     // 0 = oval crown .. 1 = boxy crown
  double jaw_square = 0;          // 0 = round jaw .. 1.6 = square jaw
  double chin_taper = 0.1;        // narrowing towards the chin (pointy chin)
  double neck_w = 0.3;            // neck half-width
  double shoulder_w = 1.3;        // shoulder half-width
  // Skin.
  Bgr skin;
  double blush = 0;               // cheek blush strength, 0 = none
  // Hair.
  HairStyle hair_style = HairStyle::kCrop;
  Bgr hair;
  double hair_volume = 0.06;      // thickness of the hair mass above the skull
  double hairline = 0.6;          // hairline height as a fraction of the crown
  double hair_length = 1.0;       // bottom of long/bob hair (face units)
  double sideburn = 0.05;         // sideburn length below the temple
  int part_side = 1;              // +1 / -1: side of parting and sweep
  // Eyes.
  double eye_y = 0;               // eye line height
  double eye_sep = 0.3;           // half distance between eye centres
  double eye_w = 0.14;            // eye half-width
  double eye_round = 0.6;         // eye height / width
  double eye_tilt = 0;            // outer-corner lift (radians)
  double iris_size = 0.5;         // iris radius / eye half-width
  Bgr iris;
  bool lashes = false;            // heavy upper lash line with flick
  // Brows.
  double brow_thick = 0.05, brow_slant = 0, brow_arch = 0.03, brow_gap = 0.08, brow_len = 0.28;
  Bgr brow;
  // Nose.
  NoseStyle nose_style = NoseStyle::kLine;
  double nose_len = 0.3, nose_w = 0.09;
  // Mouth.
  double mouth_w = 0.2;           // half-width
  double mouth_pos = 0.4;         // height between nose tip (0) and chin (1)
  double lip_upper = 0.03, lip_lower = 0.04;
  Bgr lips;
  // Ears.
  double ear_size = 0.18, ear_out = 0.5;
  // Accessories and marks.
  GlassesStyle glasses = GlassesStyle::kNone;
  Bgr glasses_colour;
  Bgr lens_colour;
  double glasses_size = 1.0;
  BeardStyle beard = BeardStyle::kNone;
  Bgr beard_colour;
  double moustache_thick = 0.06;
  HatStyle hat = HatStyle::kNone;
  Bgr hat_colour;
  EarringStyle earrings = EarringStyle::kNone;
  Bgr earring_colour;
  int freckles = 0;               // number of freckles, 0 = none
  double mole_x = 0, mole_y = 0, mole_r = 0;  // mole_r == 0: no mole
  uint64_t marks_seed = 0;        // places the freckles
  // Clothing and backdrop: identity-linked so that images of one person share them.
  CollarStyle collar = CollarStyle::kCrew;
  Bgr shirt;
  Bgr background;
};

/// Per-image nuisance: pose, scale, lighting, expression, background, noise.
struct Nuisance {
  double yaw = 0;                 // head turn (radians, small): parallax of inner features
  double roll = 0;                // head tilt (radians)
  double scale = 1;               // face size multiplier
  double shift_x = 0, shift_y = 0;  // translation, fraction of the image size
  double light_angle = 0;         // direction of the brightness gradient (radians)
  double light_strength = 0;      // gradient amplitude, fraction of brightness
  double gain = 1;                // overall brightness multiplier
  double smile = 0;               // -0.3 (frown) .. 1 (broad smile)
  double mouth_open = 0;          // 0 closed .. 1 wide open
  double eye_open = 1;            // eyelid opening multiplier
  double brow_raise = 0;          // brow lift (face units)
  double gaze_x = 0, gaze_y = 0;  // iris offset, -1..1
  double bg_b = 0, bg_g = 0, bg_r = 0;  // background colour shift
  double bg_angle = 0;            // background gradient direction (radians)
  double bg_contrast = 0;         // background gradient amplitude
  double noise_sigma = 0;         // Gaussian pixel noise, 0..255 units
  uint64_t noise_seed = 0;
};

/// Deterministic traits of identity `identity` under `seed`.
FaceTraits sample_traits(uint64_t seed, int identity);

/// Deterministic nuisance of image `index` of identity `identity` under `seed`.
Nuisance sample_nuisance(uint64_t seed, int identity, int index);

/// Draws the face. size in [16, 1024]. Returns CV_8UC3 (BGR), size x size.
cv::Mat render_face(const FaceTraits& traits, const Nuisance& nuisance, int size);

}  // namespace rw::data
