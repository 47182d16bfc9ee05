// Deterministic synthetic cartoon faces with per-identity traits (see synth_render.h).
//
// Rendering: every shape is built in face units, projected through a small pose model (yaw
// parallax on a bulged face surface, roll, scale, translation), drawn anti-aliased with sub-pixel
// precision on a supersampled canvas, downsampled with INTER_AREA, then lit and noised.
#include "synth_render.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace rw::data {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kTwoPi = 2.0 * kPi;
constexpr int kFixedBits = 4;                  // sub-pixel bits passed to OpenCV drawing
constexpr double kFixedScale = 1 << kFixedBits;
constexpr double kFaceCentreY = 0.47;          // face centre height, fraction of the image
constexpr double kUnitFraction = 0.29;         // one face unit, fraction of the image size
constexpr double kCrownRatio = 0.95;           // crown half-height relative to face_h
constexpr double kFaceDepth = 0.75;            // bulge of the face surface (yaw parallax)
constexpr uint64_t kTraitDomain = 0x5452414954533031ULL;
constexpr uint64_t kNuisanceDomain = 0x4e554953414e4345ULL;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// ------------------------------------------------------------------------------------------------
// Deterministic randomness: splitmix64 stream keyed by (seed, a, b, domain).

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Stream {
 public:
  Stream(uint64_t seed, uint64_t a, uint64_t b, uint64_t domain)
      : state_(mix64(mix64(mix64(seed ^ domain) + a * kGolden) ^ (b + 1) * 0xD1B54A32D192ED03ULL)) {}

  uint64_t next() { return mix64(state_ += kGolden); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double range(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }
  int pick(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }
  /// Bell-shaped value in [-1, 1] (mean of three uniforms), std ~ 1/3.
  double centred() { return (uniform() + uniform() + uniform()) / 1.5 - 1.0; }
  /// Index drawn with the given (unnormalised) weights.
  int pick_weighted(std::initializer_list<double> weights) {
    double total = 0;
    for (double w : weights) total += w;
    double x = uniform() * total;
    int i = 0;
    for (double w : weights) {
      if (x < w) return i;
      x -= w;
      ++i;
    }
    return i - 1;
  }

 private:
  uint64_t state_;
};

// ------------------------------------------------------------------------------------------------
// Colours.

Bgr rgb(double r, double g, double b) { return Bgr{b, g, r}; }
Bgr lerp(const Bgr& a, const Bgr& b, double t) {
  return Bgr{a.b + (b.b - a.b) * t, a.g + (b.g - a.g) * t, a.r + (b.r - a.r) * t};
}
Bgr shade(const Bgr& c, double k) { return Bgr{c.b * k, c.g * k, c.r * k}; }
Bgr lighten(const Bgr& c, double t) { return lerp(c, rgb(255, 255, 255), t); }
double clamp255(double v) { return std::clamp(v, 0.0, 255.0); }
cv::Scalar scalar(const Bgr& c) { return cv::Scalar(clamp255(c.b), clamp255(c.g), clamp255(c.r)); }

/// Brightness and per-channel jitter.
Bgr jitter(Stream& s, const Bgr& c, double bright, double channel) {
  const double k = 1.0 + bright * s.centred();
  return Bgr{clamp255(c.b * k + channel * s.centred()), clamp255(c.g * k + channel * s.centred()),
             clamp255(c.r * k + channel * s.centred())};
}

/// h, s, v in [0, 1].
Bgr hsv(double h, double s, double v) {
  h = (h - std::floor(h)) * 6.0;
  const int i = std::min(5, static_cast<int>(h));
  const double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
  }
  return rgb(r * 255, g * 255, b * 255);
}

Bgr pick_colour(Stream& s, std::initializer_list<Bgr> palette) {
  const int i = s.pick(static_cast<int>(palette.size()));
  return *(palette.begin() + i);
}

// Skin ramp from very light to very dark (RGB), sampled continuously.
constexpr double kSkinRamp[][3] = {{255, 230, 214}, {248, 210, 182}, {235, 188, 150}, {214, 160, 118},
                                   {180, 124, 86},  {136, 88, 58},   {88, 58, 40}};
constexpr int kSkinRampSize = sizeof(kSkinRamp) / sizeof(kSkinRamp[0]);

Bgr sample_skin(Stream& s) {
  if (s.chance(0.03)) {  // occasional cartoon skin
    return jitter(s, pick_colour(s, {rgb(140, 200, 130), rgb(130, 165, 225), rgb(175, 140, 205),
                                     rgb(175, 175, 182), rgb(230, 150, 150)}), 0.08, 6);
  }
  const double x = s.uniform() * (kSkinRampSize - 1);
  const int i = std::min(kSkinRampSize - 2, static_cast<int>(x));
  const double f = x - i;
  Bgr c = rgb(kSkinRamp[i][0] + (kSkinRamp[i + 1][0] - kSkinRamp[i][0]) * f,
              kSkinRamp[i][1] + (kSkinRamp[i + 1][1] - kSkinRamp[i][1]) * f,
              kSkinRamp[i][2] + (kSkinRamp[i + 1][2] - kSkinRamp[i][2]) * f);
  const double undertone = 10.0 * s.centred();  // warm (+) / cool (-)
  c.r = clamp255(c.r + undertone);
  c.b = clamp255(c.b - undertone);
  return jitter(s, c, 0.04, 3);
}

// Natural hair colours, then dyed ones.
Bgr sample_hair_colour(Stream& s, bool* dyed) {
  const int k = s.pick_weighted({18, 16, 13, 8, 10, 4, 6, 5, 7, 3, 2, 2, 2, 2, 2});
  *dyed = k >= 10;
  static constexpr double kHair[][3] = {
      {24, 20, 20},    {62, 40, 28},    {105, 70, 42},  {150, 110, 70}, {222, 186, 112},
      {240, 228, 196}, {196, 86, 36},   {130, 52, 32},  {150, 150, 152}, {236, 236, 232},
      {50, 95, 215},   {240, 110, 180}, {60, 175, 95},  {135, 60, 185}, {40, 170, 175}};
  return jitter(s, rgb(kHair[k][0], kHair[k][1], kHair[k][2]), 0.1, 6);
}

// ------------------------------------------------------------------------------------------------
// Geometry helpers (face units).

using Pts = std::vector<cv::Point2d>;

double spow(double v, double e) { return v < 0 ? -std::pow(-v, e) : std::pow(v, e); }
double sq(double v) { return v * v; }

/// n points on a full (rotated) ellipse.
Pts ellipse_pts(cv::Point2d c, double rx, double ry, double rot, int n) {
  Pts out(n);
  const double cr = std::cos(rot), sr = std::sin(rot);
  for (int i = 0; i < n; ++i) {
    const double a = kTwoPi * i / n, x = rx * std::cos(a), y = ry * std::sin(a);
    out[i] = {c.x + x * cr - y * sr, c.y + x * sr + y * cr};
  }
  return out;
}

/// n + 1 points on an axis-aligned elliptic arc from a0 to a1.
Pts arc_pts(cv::Point2d c, double rx, double ry, double a0, double a1, int n) {
  Pts out(n + 1);
  for (int i = 0; i <= n; ++i) {
    const double a = a0 + (a1 - a0) * i / n;
    out[i] = {c.x + rx * std::cos(a), c.y + ry * std::sin(a)};
  }
  return out;
}

/// Face outline at angle a (0 = right cheek, pi/2 = chin), grown by `grow` (fraction).
cv::Point2d outline_point(const FaceTraits& t, double a, double grow = 0) {
  const double c = std::cos(a), s = std::sin(a);
  double x, y;
  if (s < 0) {
    const double e = 2.0 / (2.0 + t.forehead_square);
    x = t.face_w * spow(c, e);
    y = t.face_h * kCrownRatio * spow(s, e);
  } else {
    const double e = 2.0 / (2.0 + t.jaw_square);
    x = t.face_w * spow(c, e);
    y = t.face_h * spow(s, e);
    x *= 1.0 - t.chin_taper * sq(y / t.face_h);
  }
  return {x * (1 + grow), y * (1 + grow)};
}

/// Half-width of the face at height y.
double face_half_width(const FaceTraits& t, double y) {
  if (y < 0) {
    const double e = 2.0 + t.forehead_square, q = std::min(1.0, -y / (t.face_h * kCrownRatio));
    return t.face_w * std::pow(std::max(0.0, 1.0 - std::pow(q, e)), 1.0 / e);
  }
  const double e = 2.0 + t.jaw_square, q = std::min(1.0, y / t.face_h);
  return t.face_w * std::pow(std::max(0.0, 1.0 - std::pow(q, e)), 1.0 / e) * (1.0 - t.chin_taper * q * q);
}

/// Superellipse around the skull that bounds hair and hats.
struct HeadFrame {
  double cy = 0, rx = 1, ry = 1, e = 1;
  cv::Point2d at(double a, double grow = 0) const {
    return {(rx + grow) * spow(std::cos(a), e), cy + (ry + grow) * spow(std::sin(a), e)};
  }
  double top() const { return cy - ry; }
};

HeadFrame head_frame(const FaceTraits& t, double volume) {
  HeadFrame h;
  h.cy = t.eye_y - 0.15;
  h.rx = t.face_w + volume;
  h.ry = t.face_h * kCrownRatio + volume + h.cy;
  h.e = 2.0 / (2.0 + t.forehead_square);
  return h;
}

// ------------------------------------------------------------------------------------------------
// Projection and drawing.

/// Depth of a shape for yaw parallax: constant z, optionally plus the face-surface bulge.
struct Depth {
  double z = 0;
  bool surface = false;
};
constexpr Depth kFlat{0, false};
Depth surf(double dz = 0) { return Depth{dz, true}; }

struct View {
  double cx = 0, cy = 0, unit = 1;  // canvas pixels
  double cos_roll = 1, sin_roll = 0, cos_yaw = 1, sin_yaw = 0;
  double face_w = 0.75, face_h = 1;
};

class Painter {
 public:
  Painter(cv::Mat& img, const View& v) : img_(img), v_(v) {}

  /// Polygon resolution for a shape of radius r (face units).
  int segments(double r) const { return std::clamp(static_cast<int>(r * v_.unit * 0.5) + 8, 10, 72); }

  void fill(const Pts& pts, const Bgr& c, Depth d, bool convex = false) {
    project(pts, d);
    const cv::Point* p = buf_.data();
    const int n = static_cast<int>(buf_.size());
    if (convex) cv::fillConvexPoly(img_, p, n, scalar(c), cv::LINE_AA, kFixedBits);
    else cv::fillPoly(img_, &p, &n, 1, scalar(c), cv::LINE_AA, kFixedBits);
  }

  void stroke(const Pts& pts, const Bgr& c, double width, Depth d, bool closed = false) {
    project(pts, d);
    const cv::Point* p = buf_.data();
    const int n = static_cast<int>(buf_.size());
    cv::polylines(img_, &p, &n, 1, closed, scalar(c), thickness(width), cv::LINE_AA, kFixedBits);
  }

  void dot(cv::Point2d centre, double r, const Bgr& c, Depth d) {
    cv::circle(img_, to_px(centre, d), radius(r), scalar(c), cv::FILLED, cv::LINE_AA, kFixedBits);
  }

  void ring(cv::Point2d centre, double r, const Bgr& c, double width, Depth d) {
    cv::circle(img_, to_px(centre, d), radius(r), scalar(c), thickness(width), cv::LINE_AA, kFixedBits);
  }

 private:
  int thickness(double w) const { return std::max(1, static_cast<int>(std::lround(w * v_.unit))); }
  int radius(double r) const { return std::max(1, static_cast<int>(std::lround(r * v_.unit * kFixedScale))); }

  cv::Point to_px(const cv::Point2d& p, const Depth& d) const {
    double z = d.z;
    if (d.surface) {
      const double qx = p.x / v_.face_w, qy = p.y / v_.face_h;
      z += kFaceDepth * std::sqrt(std::max(0.0, 1.0 - qx * qx - 0.35 * qy * qy));
    }
    const double x = p.x * v_.cos_yaw + z * v_.sin_yaw;
    const double u = x * v_.cos_roll - p.y * v_.sin_roll;
    const double w = x * v_.sin_roll + p.y * v_.cos_roll;
    return {static_cast<int>(std::lround((v_.cx + u * v_.unit) * kFixedScale)),
            static_cast<int>(std::lround((v_.cy + w * v_.unit) * kFixedScale))};
  }

  void project(const Pts& pts, const Depth& d) {
    buf_.resize(pts.size());
    for (size_t i = 0; i < pts.size(); ++i) buf_[i] = to_px(pts[i], d);
  }

  cv::Mat& img_;
  View v_;
  std::vector<cv::Point> buf_;
};

// ------------------------------------------------------------------------------------------------
// Face parts. Each draws one feature; the order in render_face() defines occlusion.

double nose_tip_y(const FaceTraits& t) { return t.eye_y + t.nose_len; }
double mouth_y(const FaceTraits& t) {
  const double tip = nose_tip_y(t);
  return tip + (t.face_h - tip) * t.mouth_pos;
}

void fill_background(cv::Mat& canvas, const FaceTraits& t, const Nuisance& n) {
  const Bgr base{clamp255(t.background.b + n.bg_b), clamp255(t.background.g + n.bg_g),
                 clamp255(t.background.r + n.bg_r)};
  const int cs = canvas.rows;
  const double dx = std::cos(n.bg_angle) * n.bg_contrast * 2.0 / cs;
  const double dy = std::sin(n.bg_angle) * n.bg_contrast * 2.0 / cs;
  const double c0[3] = {base.b, base.g, base.r};
  for (int y = 0; y < cs; ++y) {
    uchar* row = canvas.ptr<uchar>(y);
    for (int x = 0; x < cs; ++x) {
      const double k = 1.0 + (x - cs * 0.5) * dx + (y - cs * 0.5) * dy;
      for (int c = 0; c < 3; ++c) row[3 * x + c] = cv::saturate_cast<uchar>(c0[c] * k);
    }
  }
}

void draw_ears(Painter& p, const FaceTraits& t) {
  const Bgr outer = shade(t.skin, 0.93), inner = shade(t.skin, 0.72);
  for (int side = -1; side <= 1; side += 2) {
    const cv::Point2d c(side * (t.face_w * 0.95 + 0.05 * t.ear_out), t.eye_y + 0.1);
    const double rx = t.ear_size * 0.5, ry = t.ear_size;
    p.fill(ellipse_pts(c, rx, ry, side * 0.15, p.segments(ry)), outer, Depth{-0.2}, true);
    p.fill(ellipse_pts(c + cv::Point2d(side * 0.015, 0.01), rx * 0.5, ry * 0.6, side * 0.15, p.segments(ry)),
           inner, Depth{-0.2}, true);
    const cv::Point2d lobe = c + cv::Point2d(side * 0.01, ry * 0.9);
    if (t.earrings == EarringStyle::kStud) {
      p.dot(lobe, 0.035, t.earring_colour, Depth{-0.2});
    } else if (t.earrings == EarringStyle::kHoop) {
      p.ring(lobe + cv::Point2d(0, 0.07), 0.07, t.earring_colour, 0.022, Depth{-0.2});
    }
  }
}

/// Hair mass behind the head (long, bob, curly, afro) and behind-the-head extras (bun, ponytail).
void draw_back_hair(Painter& p, const FaceTraits& t) {
  const Bgr dark = shade(t.hair, 0.8);
  const HairStyle s = t.hair_style;
  const bool hatted = t.hat == HatStyle::kBeanie || t.hat == HatStyle::kCap;
  if (s == HairStyle::kBun && !hatted) {
    const HeadFrame h = head_frame(t, t.hair_volume);
    p.dot({0, h.top() - 0.12}, 0.24, t.hair, kFlat);
    p.stroke(arc_pts({0, h.top() - 0.12}, 0.24, 0.24, kPi * 1.15, kPi * 1.6, 8), lighten(t.hair, 0.25), 0.03,
             kFlat);
  } else if (s == HairStyle::kPonytail) {
    const double x = t.part_side * (t.face_w + 0.06);
    p.fill(ellipse_pts({x, 0.45}, 0.13, 0.45, -t.part_side * 0.25, 24), dark, Depth{-0.3}, true);
  } else if (s == HairStyle::kBob || s == HairStyle::kLong) {
    const HeadFrame h = head_frame(t, t.hair_volume + 0.05);
    const int n = p.segments(h.rx);
    Pts pts;
    for (int i = 0; i <= n; ++i) pts.push_back(h.at(kPi + kPi * i / n));
    const double flare = s == HairStyle::kLong ? 0.12 : 0.05;
    const double bottom = t.hair_length;
    pts.push_back({h.rx + flare, bottom - 0.05});
    pts.push_back({h.rx * 0.8, bottom});
    pts.push_back({-h.rx * 0.8, bottom});
    pts.push_back({-h.rx - flare, bottom - 0.05});
    p.fill(pts, dark, Depth{-0.2});
  } else if (s == HairStyle::kCurly || s == HairStyle::kAfro) {
    const HeadFrame h = head_frame(t, t.hair_volume);
    const double r = s == HairStyle::kAfro ? 0.2 : 0.13;
    const double a0 = s == HairStyle::kAfro ? 0.85 * kPi : 0.92 * kPi;
    const int n = s == HairStyle::kAfro ? 18 : 14;
    p.fill(ellipse_pts({0, h.cy}, h.rx, h.ry, 0, p.segments(h.rx)), dark, Depth{-0.2}, true);
    for (int i = 0; i <= n; ++i) {
      const double a = a0 + (3 * kPi - 2 * a0) * i / n;
      const cv::Point2d c = h.at(a, -r * 0.6);
      p.dot(c, r * (0.85 + 0.3 * ((i * 7) % 3) / 2.0), dark, Depth{-0.2});
    }
  }
}

void draw_body(Painter& p, const FaceTraits& t) {
  const double nw = t.neck_w, sw = t.shoulder_w, ys = t.face_h + 0.3;
  const Bgr neck = shade(t.skin, 0.8);
  p.fill({{-nw, 0.2}, {nw, 0.2}, {nw * 1.05, 2.0}, {-nw * 1.05, 2.0}}, neck, kFlat, true);
  // Shadow under the chin.
  p.fill(ellipse_pts({0, t.face_h - 0.02}, nw * 1.1, 0.12, 0, 16), shade(t.skin, 0.68), kFlat, true);

  Pts shirt;
  if (t.collar == CollarStyle::kTurtleneck) {
    shirt = {{-nw * 1.1, t.face_h - 0.05}, {nw * 1.1, t.face_h - 0.05}};
  }
  // Shoulder line: quadratic Bezier from the neck to the upper arm, right side then mirrored.
  const cv::Point2d q0(nw + 0.06, ys - 0.02), q1(sw * 0.85, ys + 0.02), q2(sw + 0.14, ys + 0.45);
  const int m = 12;
  for (int i = 0; i <= m; ++i) {
    const double u = static_cast<double>(i) / m;
    shirt.push_back(q0 * sq(1 - u) + q1 * (2 * u * (1 - u)) + q2 * sq(u));
  }
  shirt.insert(shirt.end(), {{sw + 0.2, 3.5}, {-sw - 0.2, 3.5}});
  for (int i = m; i >= 0; --i) {
    const double u = static_cast<double>(i) / m;
    const cv::Point2d q = q0 * sq(1 - u) + q1 * (2 * u * (1 - u)) + q2 * sq(u);
    shirt.push_back({-q.x, q.y});
  }
  if (t.collar == CollarStyle::kCrew) {
    shirt.insert(shirt.end(), {{-nw * 0.7, ys + 0.08}, {0, ys + 0.12}, {nw * 0.7, ys + 0.08}});
  } else if (t.collar == CollarStyle::kVNeck || t.collar == CollarStyle::kShirt) {
    shirt.push_back({0, ys + 0.38});
  }
  p.fill(shirt, t.shirt, kFlat);
  const Bgr trim = shade(t.shirt, 0.75);
  if (t.collar == CollarStyle::kShirt) {
    const Bgr collar = lighten(t.shirt, 0.55);
    for (int side = -1; side <= 1; side += 2) {
      p.fill({{side * (nw + 0.1), ys - 0.08}, {side * 0.02, ys + 0.36}, {side * (nw + 0.18), ys + 0.2}}, collar,
             kFlat, true);
    }
  } else if (t.collar == CollarStyle::kTurtleneck) {
    p.stroke({{-nw * 1.1, t.face_h + 0.12}, {nw * 1.1, t.face_h + 0.12}}, trim, 0.025, kFlat);
  } else if (t.collar == CollarStyle::kCrew) {
    p.stroke({{-nw - 0.06, ys - 0.02}, {-nw * 0.7, ys + 0.08}, {0, ys + 0.12}, {nw * 0.7, ys + 0.08},
              {nw + 0.06, ys - 0.02}},
             trim, 0.03, kFlat);
  }
}

void draw_face(Painter& p, const FaceTraits& t, const Nuisance& n) {
  const int segs = p.segments(t.face_h) + 12;
  Pts outline(segs), lit(segs);
  const cv::Point2d light(0.035 * std::cos(n.light_angle), 0.035 * std::sin(n.light_angle));
  for (int i = 0; i < segs; ++i) {
    outline[i] = outline_point(t, kTwoPi * i / segs);
    lit[i] = outline[i] * 0.955 + light;
  }
  p.fill(outline, shade(t.skin, 0.84), kFlat);
  p.fill(lit, t.skin, kFlat);
  p.stroke(outline, shade(t.skin, 0.62), 0.014, kFlat, true);
  if (t.hair_style == HairStyle::kBald || t.hair_style == HairStyle::kHorseshoe) {  // scalp shine
    const double y = -t.face_h * kCrownRatio * 0.75;
    p.fill(ellipse_pts({-0.18, y}, 0.16, 0.07, -0.35, 16), lighten(t.skin, 0.22), surf(), true);
  }
}

void draw_marks(Painter& p, const FaceTraits& t) {
  if (t.blush > 0) {
    const Bgr c = lerp(t.skin, rgb(235, 105, 120), t.blush);
    for (int side = -1; side <= 1; side += 2) {
      p.fill(ellipse_pts({side * (t.eye_sep + 0.05), nose_tip_y(t) - 0.02}, 0.12, 0.07, 0, 16), c, surf(), true);
    }
  }
  if (t.freckles > 0) {
    Stream s(t.marks_seed, 1, 2, 3);
    const Bgr c = lerp(shade(t.skin, 0.7), rgb(120, 70, 40), 0.25);
    for (int i = 0; i < t.freckles; ++i) {
      const double side = (i % 2) ? 1.0 : -1.0;
      const cv::Point2d at(side * (t.eye_sep + s.range(-0.17, 0.12)), t.eye_y + s.range(0.12, 0.3));
      p.dot(at, s.range(0.011, 0.018), c, surf());
    }
  }
  if (t.mole_r > 0) p.dot({t.mole_x, t.mole_y}, t.mole_r, rgb(70, 45, 35), surf());
}

/// Polygon of the lower face below a line through the cheeks (full beard / stubble region).
Pts beard_region(const FaceTraits& t, double grow, int n) {
  const double tip = nose_tip_y(t), my = mouth_y(t);
  const double top = std::min(tip + 0.04, my - t.lip_upper - 0.06);
  const double a_side = -0.12;
  const cv::Point2d left = outline_point(t, kPi - a_side, grow), right = outline_point(t, a_side, grow);
  Pts pts = {left,
             {left.x * 0.8, tip - 0.02},
             {-(t.mouth_w + 0.07), top},
             {0, top + 0.01},
             {t.mouth_w + 0.07, top},
             {right.x * 0.8, tip - 0.02}};
  for (int i = 0; i <= n; ++i) pts.push_back(outline_point(t, a_side + (kPi - 2 * a_side) * i / n, grow));
  return pts;
}

void draw_beard(Painter& p, const FaceTraits& t) {
  const double my = mouth_y(t);
  const int n = p.segments(t.face_h) / 2 + 8;
  switch (t.beard) {
    case BeardStyle::kFull:
      p.fill(beard_region(t, 0.05, n), t.beard_colour, kFlat);
      break;
    case BeardStyle::kStubble:
      p.fill(beard_region(t, 0.0, n), lerp(t.skin, t.beard_colour, 0.38), kFlat);
      break;
    case BeardStyle::kChinstrap: {
      Pts pts;
      for (int i = 0; i <= n; ++i) pts.push_back(outline_point(t, -0.1 + (kPi + 0.2) * i / n, 0.04));
      for (int i = n; i >= 0; --i) pts.push_back(outline_point(t, -0.1 + (kPi + 0.2) * i / n, -0.09));
      p.fill(pts, t.beard_colour, kFlat);
      break;
    }
    case BeardStyle::kGoatee: {
      const double top = my + t.lip_lower + 0.03, bottom = t.face_h + 0.05;
      p.fill(ellipse_pts({0, (top + bottom) / 2}, t.mouth_w * 0.55, (bottom - top) / 2, 0, 20), t.beard_colour,
             surf(), true);
      break;
    }
    default:
      break;
  }
}

void draw_moustache(Painter& p, const FaceTraits& t) {
  if (t.beard != BeardStyle::kMoustache && t.beard != BeardStyle::kFull && t.beard != BeardStyle::kGoatee &&
      t.beard != BeardStyle::kHandlebar) {
    return;
  }
  const double my = mouth_y(t), w = t.mouth_w + 0.05, base = my - t.lip_upper * 0.6;
  const bool handlebar = t.beard == BeardStyle::kHandlebar;
  const int n = 10;
  Pts pts;
  for (int i = 0; i <= n; ++i) {  // top edge, left to right
    const double u = -1.0 + 2.0 * i / n;
    pts.push_back({u * w, base - t.moustache_thick * std::sqrt(1 - 0.75 * u * u) + 0.04 * u * u});
  }
  if (handlebar) pts.push_back({w + 0.07, base - 0.06});
  for (int i = n; i >= 0; --i) {  // bottom edge, right to left
    const double u = -1.0 + 2.0 * i / n;
    pts.push_back({u * w, base + 0.01 + 0.05 * u * u});
  }
  if (handlebar) pts.push_back({-w - 0.07, base - 0.06});
  p.fill(pts, t.beard_colour, surf());
}

void draw_nose(Painter& p, const FaceTraits& t) {
  const double top = t.eye_y + 0.08, tip = nose_tip_y(t), w = t.nose_w;
  const Bgr line = shade(t.skin, 0.68), soft = shade(t.skin, 0.86), nostril = shade(t.skin, 0.5);
  const double lw = 0.018;
  const int side = t.part_side;
  switch (t.nose_style) {
    case NoseStyle::kLine:
      p.stroke({{side * 0.02, top + 0.06}, {side * w * 0.55, tip - 0.02}, {side * w * 0.35, tip + 0.025},
                {-side * w * 0.15, tip + 0.03}},
               line, lw, surf(0.08));
      break;
    case NoseStyle::kNostrils:
      p.fill(ellipse_pts({0, tip - 0.03}, w * 0.75, 0.06, 0, 14), soft, surf(0.1), true);
      p.dot({-w * 0.42, tip}, 0.022, nostril, surf(0.1));
      p.dot({w * 0.42, tip}, 0.022, nostril, surf(0.1));
      break;
    case NoseStyle::kWedge:
      p.fill({{0, top}, {side * w * 0.8, tip - 0.01}, {0, tip + 0.03}}, soft, surf(0.08));
      p.stroke({{-w * 0.6, tip}, {-w * 0.2, tip + 0.03}, {w * 0.2, tip + 0.03}, {w * 0.6, tip}}, line, lw, surf(0.1));
      break;
    case NoseStyle::kButton:
      p.dot({0, tip - 0.02}, w * 0.6, soft, surf(0.1));
      p.dot({-w * 0.12, tip - 0.05}, w * 0.2, lighten(t.skin, 0.2), surf(0.12));
      p.dot({-w * 0.35, tip + 0.01}, 0.016, nostril, surf(0.1));
      p.dot({w * 0.35, tip + 0.01}, 0.016, nostril, surf(0.1));
      break;
    default:  // kCurve: long nose with a curved base
      p.stroke({{side * 0.015, top}, {side * 0.03, tip - 0.1}}, soft, lw, surf(0.06));
      p.stroke(arc_pts({0, tip - 0.02}, w, 0.05, 0.15 * kPi, 0.85 * kPi, 10), line, lw, surf(0.1));
      break;
  }
}

void draw_eye(Painter& p, const FaceTraits& t, const Nuisance& n, int side) {
  const cv::Point2d c(side * t.eye_sep, t.eye_y);
  const double ew = t.eye_w, eh = std::max(0.012, t.eye_w * t.eye_round * n.eye_open);
  const double rot = -side * t.eye_tilt, cr = std::cos(rot), sr = std::sin(rot);
  auto place = [&](double lx, double ly) { return c + cv::Point2d(lx * cr - ly * sr, lx * sr + ly * cr); };
  auto half_h = [&](double lx, bool lower) {
    const double h = eh * std::sqrt(std::max(0.0, 1.0 - sq(lx / ew)));
    return lower ? h * 0.75 : h;
  };
  const int segs = p.segments(ew) + 4;
  const Depth d = surf();

  Pts white(segs);
  for (int i = 0; i < segs; ++i) {
    const double a = kTwoPi * i / segs, s = std::sin(a);
    white[i] = place(ew * std::cos(a), eh * s * (s > 0 ? 0.75 : 1.0));
  }
  p.fill(white, rgb(246, 244, 240), d, true);

  // Iris and pupil, clipped to the eye opening.
  const double icx = n.gaze_x * ew * 0.3, icy = n.gaze_y * eh * 0.15, ir = ew * t.iris_size;
  auto clipped_disc = [&](double r) {
    Pts pts(segs);
    for (int i = 0; i < segs; ++i) {
      const double a = kTwoPi * i / segs;
      const double lx = std::clamp(icx + r * std::cos(a), -ew, ew);
      const double ly = std::clamp(icy + r * std::sin(a), -half_h(lx, false), half_h(lx, true));
      pts[i] = place(lx, ly);
    }
    return pts;
  };
  p.fill(clipped_disc(ir), t.iris, d, true);
  p.fill(clipped_disc(ir * 0.45), rgb(15, 12, 12), d, true);
  if (eh > ir * 0.7) p.dot(place(icx - ir * 0.35, icy - ir * 0.35), ir * 0.22, rgb(255, 255, 255), d);

  // Upper lid line and lashes.
  Pts lid;
  for (int i = 0; i <= segs / 2; ++i) {
    const double a = kPi + kPi * i / (segs / 2);
    lid.push_back(place(ew * std::cos(a), eh * std::sin(a)));
  }
  const Bgr lash = rgb(35, 25, 25);
  p.stroke(lid, lash, t.lashes ? 0.034 : 0.02, d);
  if (t.lashes) p.stroke({place(side * ew * 0.9, -eh * 0.35), place(side * (ew + 0.05), -eh * 0.7 - 0.02)}, lash,
                         0.022, d);
}

void draw_brow(Painter& p, const FaceTraits& t, const Nuisance& n, int side) {
  const double x_in = side * (t.eye_sep - t.brow_len * 0.45), x_out = side * (t.eye_sep + t.brow_len * 0.55);
  const double base = t.eye_y - t.eye_w * t.eye_round - t.brow_gap - n.brow_raise;
  const double y_in = base + t.brow_slant, y_out = base - t.brow_slant;
  const int k = 8;
  Pts top, bottom;
  for (int i = 0; i <= k; ++i) {
    const double u = static_cast<double>(i) / k;
    const double x = x_in + (x_out - x_in) * u, y = y_in + (y_out - y_in) * u - t.brow_arch * 4 * u * (1 - u);
    const double h = t.brow_thick * 0.5 * (1.0 - 0.5 * u);
    top.push_back({x, y - h});
    bottom.push_back({x, y + h});
  }
  top.insert(top.end(), bottom.rbegin(), bottom.rend());
  p.fill(top, t.brow, surf());
}

void draw_mouth(Painter& p, const FaceTraits& t, const Nuisance& n) {
  const double my = mouth_y(t), mw = t.mouth_w * (1.0 + 0.1 * std::max(0.0, n.smile));
  const double smile = n.smile, open = n.mouth_open;
  const int k = 12;
  auto mid = [&](double u) { return my + 0.05 * smile * (1 - u * u) - 0.03 * smile; };
  auto inner_up = [&](double u) { return mid(u) - open * 0.02 * (1 - u * u); };
  auto inner_lo = [&](double u) { return mid(u) + open * 0.1 * (1 - u * u); };
  auto outer_up = [&](double u) {
    return inner_up(u) - t.lip_upper * std::sqrt(1 - u * u) * (1 - 0.35 * std::exp(-sq(u / 0.2)));
  };
  auto outer_lo = [&](double u) { return inner_lo(u) + t.lip_lower * std::sqrt(1 - u * u); };
  auto u_at = [&](int i) { return -1.0 + 2.0 * i / k; };
  const Depth d = surf();

  if (open > 0.05) {
    Pts hole;
    for (int i = 0; i <= k; ++i) hole.push_back({u_at(i) * mw, inner_up(u_at(i))});
    for (int i = k; i >= 0; --i) hole.push_back({u_at(i) * mw, inner_lo(u_at(i))});
    p.fill(hole, rgb(95, 28, 34), d);
    Pts teeth;
    for (int i = 2; i <= k - 2; ++i) teeth.push_back({u_at(i) * mw, inner_up(u_at(i)) - 0.005});
    for (int i = k - 2; i >= 2; --i) {
      const double u = u_at(i);
      teeth.push_back({u * mw, std::min(inner_up(u) + 0.04, inner_lo(u))});
    }
    p.fill(teeth, rgb(248, 246, 238), d);
  }
  Pts upper, lower;
  for (int i = 0; i <= k; ++i) upper.push_back({u_at(i) * mw, outer_up(u_at(i))});
  for (int i = k; i >= 0; --i) upper.push_back({u_at(i) * mw, inner_up(u_at(i))});
  for (int i = 0; i <= k; ++i) lower.push_back({u_at(i) * mw, inner_lo(u_at(i))});
  for (int i = k; i >= 0; --i) lower.push_back({u_at(i) * mw, outer_lo(u_at(i))});
  p.fill(lower, lighten(t.lips, 0.08), d);
  p.fill(upper, t.lips, d);
  if (open <= 0.05) {
    Pts line;
    for (int i = 0; i <= k; ++i) line.push_back({u_at(i) * mw, mid(u_at(i))});
    p.stroke(line, shade(t.lips, 0.55), 0.016, d);
  }
}

/// Hairline (right to left) for the cap styles.
Pts hairline_pts(const FaceTraits& t, const HeadFrame& h, int k) {
  const double y_top = -t.face_h * kCrownRatio * t.hairline;
  const double rx = t.face_w * 0.96, ry = h.cy - y_top;
  const double brow_top = t.eye_y - t.eye_w * t.eye_round - t.brow_gap - t.brow_thick;
  Pts pts;
  for (int i = 0; i <= k; ++i) {
    const double u = 1.0 - 2.0 * i / k, arch = std::sqrt(std::max(0.0, 1 - u * u));
    double y = h.cy - ry * arch;
    switch (t.hair_style) {
      case HairStyle::kSidePart:
      case HairStyle::kBob:
      case HairStyle::kLong:
        y += ry * 0.5 * std::max(0.0, u * t.part_side) * arch;
        break;
      case HairStyle::kFringe:
        if (std::abs(u) < 0.9) y = std::max(y, brow_top - 0.05 + ((i % 2) ? 0.03 : 0.0));
        break;
      case HairStyle::kReceding:
        y -= 0.13 * std::exp(-sq((std::abs(u) - 0.55) / 0.2));
        break;
      default:
        break;
    }
    pts.push_back({u * rx, y});
  }
  return pts;
}

/// Hair in front of the face: cap, fringes, side locks, crests.
void draw_front_hair(Painter& p, const FaceTraits& t) {
  const HairStyle s = t.hair_style;
  if (s == HairStyle::kBald) return;
  const Depth d = surf();
  const Bgr hi = lighten(t.hair, 0.28);
  const bool hatted = t.hat == HatStyle::kBeanie || t.hat == HatStyle::kCap;
  if (s == HairStyle::kHorseshoe) {
    for (int side = -1; side <= 1; side += 2) {
      p.fill(ellipse_pts({side * (t.face_w - 0.01), t.eye_y - 0.22}, 0.08, 0.2, side * 0.2, 16), t.hair, kFlat,
             true);
    }
    return;
  }
  const double volume = s == HairStyle::kMohawk ? 0.015 : t.hair_volume;
  const HeadFrame h = head_frame(t, volume);
  const int n = p.segments(h.rx) + 6;
  Bgr cap_colour = t.hair;
  if (s == HairStyle::kBuzz || s == HairStyle::kMohawk) cap_colour = lerp(t.skin, t.hair, 0.5);

  Pts cap;
  for (int i = 0; i <= n; ++i) cap.push_back(h.at(kPi + kPi * i / n));
  const double sb = h.cy + t.sideburn;
  cap.push_back({h.rx * 0.98, sb});
  cap.push_back({face_half_width(t, sb) * 0.96, sb});
  const Pts line = hairline_pts(t, h, 24);
  cap.insert(cap.end(), line.begin(), line.end());
  cap.push_back({-face_half_width(t, sb) * 0.96, sb});
  cap.push_back({-h.rx * 0.98, sb});
  p.fill(cap, cap_colour, d);

  if (s == HairStyle::kCurly || s == HairStyle::kAfro) {  // curls along the hairline
    for (size_t i = 1; i + 1 < line.size(); i += 2) p.dot(line[i], 0.06, t.hair, d);
  }
  if (s == HairStyle::kSpiky && !hatted) {
    for (int i = 0; i < 7; ++i) {
      const double a = kPi * (1.12 + 0.76 * i / 6.0), da = 0.07;
      p.fill({h.at(a - da, -0.03), h.at(a, 0.14), h.at(a + da, -0.03)}, t.hair, kFlat, true);
    }
  }
  if (s == HairStyle::kMohawk && !hatted) {
    const double top = h.top();
    Pts crest = {{-0.09, -t.face_h * kCrownRatio * t.hairline}, {-0.11, top + 0.05}};
    for (int i = 0; i <= 6; ++i) crest.push_back({-0.11 + 0.22 * i / 6.0, top - 0.22 - ((i % 2) ? 0.0 : 0.08)});
    crest.push_back({0.11, top + 0.05});
    crest.push_back({0.09, -t.face_h * kCrownRatio * t.hairline});
    p.fill(crest, t.hair, d);
  }
  if (s == HairStyle::kSidePart) {  // parting line
    const double x = -t.part_side * t.face_w * 0.35;
    p.stroke({{x, h.top() + 0.08}, {x * 1.05, -t.face_h * kCrownRatio * t.hairline + 0.04}}, shade(t.hair, 0.6),
             0.02, d);
  }
  if (s == HairStyle::kBob || s == HairStyle::kLong) {  // side locks framing the face
    const double end = std::min(t.hair_length, t.face_h * 0.7);
    for (int side = -1; side <= 1; side += 2) {
      Pts lock;
      const int m = 8;
      for (int i = 0; i <= m; ++i) {
        const double y = h.cy + (end - h.cy) * i / m;
        lock.push_back({side * face_half_width(t, y) * 0.88, y});
      }
      if (t.hair_length > end) lock.push_back({side * face_half_width(t, end) * 0.9, t.hair_length});
      const double flare = s == HairStyle::kLong ? 0.14 : 0.08;
      if (t.hair_length > end) lock.push_back({side * (face_half_width(t, end) + flare + 0.06), t.hair_length});
      for (int i = m; i >= 0; --i) {
        const double y = h.cy + (end - h.cy) * i / m;
        lock.push_back({side * (face_half_width(t, y) + 0.04 + flare * i / m), y});
      }
      p.fill(lock, t.hair, kFlat);
    }
  }
  // Shine.
  if (s != HairStyle::kBuzz && s != HairStyle::kMohawk) {
    Pts shine;
    for (int i = 0; i <= 6; ++i) shine.push_back(h.at(kPi * (1.22 + 0.2 * i / 6.0), -std::max(0.05, volume * 0.6)));
    p.stroke(shine, hi, 0.035, d);
  }
}

void draw_hat(Painter& p, const FaceTraits& t) {
  if (t.hat == HatStyle::kNone) return;
  const double volume = (t.hair_style == HairStyle::kAfro || t.hair_style == HairStyle::kCurly) ? t.hair_volume
                        : t.hair_style == HairStyle::kBald ? 0.02 : std::max(0.03, t.hair_volume);
  const HeadFrame h = head_frame(t, volume + 0.04);
  const int n = p.segments(h.rx) + 6;
  auto crown_clamped = [&](double y_lo, double y_hi) {
    Pts pts;
    for (int i = 0; i <= n; ++i) {
      cv::Point2d q = h.at(kPi + kPi * i / n);
      q.y = std::clamp(q.y, y_lo, y_hi);
      pts.push_back(q);
    }
    return pts;
  };
  const Bgr dark = shade(t.hat_colour, 0.75);
  switch (t.hat) {
    case HatStyle::kBeanie: {
      const double yb = -t.face_h * 0.42;
      p.fill(crown_clamped(-10, yb), t.hat_colour, kFlat, true);
      p.fill(crown_clamped(yb - 0.15, yb), dark, kFlat, true);
      if (t.marks_seed & 1) p.dot({0, h.top() - 0.04}, 0.11, lighten(t.hat_colour, 0.35), kFlat);
      break;
    }
    case HatStyle::kCap: {
      const double yb = -t.face_h * 0.5;
      p.fill(crown_clamped(-10, yb), t.hat_colour, kFlat, true);
      Pts brim = arc_pts({0, yb - 0.01}, h.rx * 1.02, 0.16, 0, kPi, 16);
      p.fill(brim, dark, Depth{0.5}, true);
      p.dot({0, h.top() + 0.02}, 0.04, dark, kFlat);
      break;
    }
    case HatStyle::kHeadband: {
      const double yc = -t.face_h * 0.55;
      p.fill(crown_clamped(yc - 0.05, yc + 0.05), t.hat_colour, kFlat, true);
      break;
    }
    default: {  // kBow: hair bow above one temple
      const cv::Point2d c(t.part_side * t.face_w * 0.55, h.top() + 0.25);
      const double s = 0.13;
      p.fill({c, c + cv::Point2d(-1.6 * s, -0.9 * s), c + cv::Point2d(-1.6 * s, 0.9 * s)}, t.hat_colour, kFlat, true);
      p.fill({c, c + cv::Point2d(1.6 * s, -0.9 * s), c + cv::Point2d(1.6 * s, 0.9 * s)}, t.hat_colour, kFlat, true);
      p.dot(c, 0.45 * s, dark, kFlat);
      break;
    }
  }
}

void draw_glasses(Painter& p, const FaceTraits& t) {
  if (t.glasses == GlassesStyle::kNone) return;
  const double k = t.glasses_size;
  const double lw = t.eye_w * 1.45 * k;
  double lh = t.eye_w * 1.1 * k;
  double thick = 0.025;
  double e = 1.0;  // superellipse exponent factor (1 = ellipse, <1 = rectangular)
  switch (t.glasses) {
    case GlassesStyle::kRound: lh = lw * 0.95; e = 1.0; break;
    case GlassesStyle::kRect: e = 0.45; lh = lw * 0.7; thick = 0.032; break;
    case GlassesStyle::kOval: lh = lw * 0.68; e = 0.85; thick = 0.02; break;
    case GlassesStyle::kSun: e = 0.65; lh = lw * 0.8; thick = 0.028; break;
    default: lh = lw * 0.85; thick = 0.013; break;  // kWire
  }
  const Depth d = surf(0.1);
  const int segs = p.segments(lw) + 6;
  for (int side = -1; side <= 1; side += 2) {
    const cv::Point2d c(side * t.eye_sep, t.eye_y + 0.01);
    Pts lens(segs);
    for (int i = 0; i < segs; ++i) {
      const double a = kTwoPi * i / segs;
      lens[i] = c + cv::Point2d(lw * spow(std::cos(a), e), lh * spow(std::sin(a), e));
    }
    if (t.glasses == GlassesStyle::kSun) {
      p.fill(lens, t.lens_colour, d, true);
      p.stroke({c + cv::Point2d(-lw * 0.5, -lh * 0.35), c + cv::Point2d(-lw * 0.15, -lh * 0.6)},
               lighten(t.lens_colour, 0.45), 0.02, d);
    }
    p.stroke(lens, t.glasses_colour, thick, d, true);
    const double outer = side * (t.eye_sep + lw);
    p.stroke({{outer, t.eye_y - lh * 0.3}, {side * face_half_width(t, t.eye_y) * 0.99, t.eye_y - 0.04}},
             t.glasses_colour, thick * 0.8, surf(0.05));
  }
  const double inner = t.eye_sep - lw;
  p.stroke({{-inner, t.eye_y - lh * 0.2}, {0, t.eye_y - lh * 0.35}, {inner, t.eye_y - lh * 0.2}}, t.glasses_colour,
           thick * 0.9, d);
}

/// Brightness gradient, gain and Gaussian noise at the output resolution.
void finish(cv::Mat& img, const Nuisance& n) {
  const int size = img.rows;
  cv::Mat noise(size, size, CV_32FC3);
  cv::RNG rng(n.noise_seed);
  rng.fill(noise, cv::RNG::NORMAL, 0.0, std::max(0.0, n.noise_sigma));
  const float lx = static_cast<float>(std::cos(n.light_angle) * n.light_strength * 2.0 / size);
  const float ly = static_cast<float>(std::sin(n.light_angle) * n.light_strength * 2.0 / size);
  const float gain = static_cast<float>(n.gain), half = 0.5f * static_cast<float>(size - 1);
  for (int y = 0; y < size; ++y) {
    uchar* row = img.ptr<uchar>(y);
    const float* nz = noise.ptr<float>(y);
    for (int x = 0; x < size; ++x) {
      const float k = gain * (1.0f + (x - half) * lx + (y - half) * ly);
      for (int c = 0; c < 3; ++c) row[3 * x + c] = cv::saturate_cast<uchar>(row[3 * x + c] * k + nz[3 * x + c]);
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------

FaceTraits sample_traits(uint64_t seed, int identity) {
  Stream s(seed, static_cast<uint32_t>(identity), 0, kTraitDomain);
  FaceTraits t;
  // Head and body.
  t.face_w = s.range(0.64, 0.84);
  t.face_h = s.range(0.9, 1.05);
  t.forehead_square = s.range(0.0, 0.9);
  t.jaw_square = s.range(0.0, 1.6);
  t.chin_taper = s.range(0.02, 0.3);
  t.neck_w = s.range(0.22, 0.34);
  t.shoulder_w = s.range(1.15, 1.6);
  // Skin.
  t.skin = sample_skin(s);
  t.blush = s.chance(0.35) ? s.range(0.15, 0.4) : 0.0;
  // Hair.
  t.hair_style = static_cast<HairStyle>(s.pick_weighted({5, 6, 12, 11, 9, 6, 5, 3, 3, 6, 5, 9, 12, 6, 3}));
  bool dyed = false;
  t.hair = sample_hair_colour(s, &dyed);
  t.hair_volume = s.range(0.04, 0.12);
  if (t.hair_style == HairStyle::kBuzz) t.hair_volume = 0.02;
  if (t.hair_style == HairStyle::kCurly) t.hair_volume = s.range(0.12, 0.2);
  if (t.hair_style == HairStyle::kAfro) t.hair_volume = s.range(0.28, 0.4);
  t.hairline = t.hair_style == HairStyle::kReceding ? s.range(0.62, 0.75) : s.range(0.48, 0.66);
  t.hair_length = t.hair_style == HairStyle::kBob ? s.range(0.6, 0.85) : s.range(1.2, 1.7);
  t.sideburn = s.range(0.0, 0.16);
  t.part_side = s.chance(0.5) ? 1 : -1;
  // Eyes.
  t.eye_y = s.range(-0.12, 0.02);
  t.eye_sep = s.range(0.25, 0.35) * (t.face_w / 0.74);
  t.eye_w = s.range(0.11, 0.16);
  t.eye_round = s.range(0.45, 0.85);
  t.eye_tilt = s.range(-0.15, 0.2);
  t.iris_size = s.range(0.42, 0.62);
  t.iris = jitter(s, pick_colour(s, {rgb(55, 32, 20), rgb(100, 60, 30), rgb(135, 100, 50), rgb(70, 135, 70),
                                     rgb(70, 125, 200), rgb(120, 132, 145), rgb(185, 125, 40), rgb(125, 80, 165)}),
                  0.1, 8);
  t.lashes = s.chance(0.3);
  // Brows.
  t.brow_thick = s.range(0.025, 0.075);
  t.brow_slant = s.range(-0.045, 0.045);
  t.brow_arch = s.range(0.0, 0.06);
  t.brow_gap = s.range(0.05, 0.12);
  t.brow_len = s.range(0.22, 0.34);
  t.brow = lerp(shade(t.hair, 0.8), rgb(60, 42, 30), s.range(0.0, dyed ? 0.8 : 0.35));
  // Nose.
  t.nose_style = static_cast<NoseStyle>(s.pick(static_cast<int>(NoseStyle::kCount)));
  t.nose_len = s.range(0.24, 0.38);
  t.nose_w = s.range(0.06, 0.12);
  // Mouth.
  t.mouth_w = s.range(0.15, 0.26);
  t.mouth_pos = s.range(0.32, 0.48);
  t.lip_upper = s.range(0.015, 0.04);
  t.lip_lower = s.range(0.025, 0.055);
  t.lips = s.chance(0.15) ? jitter(s, pick_colour(s, {rgb(195, 25, 45), rgb(230, 95, 145), rgb(110, 30, 70),
                                                      rgb(240, 115, 90), rgb(70, 25, 35)}), 0.08, 6)
                          : lerp(shade(t.skin, 0.82), rgb(190, 80, 85), s.range(0.3, 0.55));
  // Ears.
  t.ear_size = s.range(0.14, 0.22);
  t.ear_out = s.uniform();
  // Accessories and marks.
  t.glasses = static_cast<GlassesStyle>(s.pick_weighted({70, 7, 7, 5, 6, 5}));
  t.glasses_colour = pick_colour(s, {rgb(20, 20, 22), rgb(90, 55, 30), rgb(125, 72, 36), rgb(205, 168, 72),
                                     rgb(175, 175, 185), rgb(185, 30, 40), rgb(40, 70, 175), rgb(236, 236, 236)});
  t.lens_colour = pick_colour(s, {rgb(25, 25, 30), rgb(40, 60, 45), rgb(70, 45, 30), rgb(40, 70, 120)});
  t.glasses_size = s.range(0.9, 1.12);
  t.beard = static_cast<BeardStyle>(s.pick_weighted({64, 8, 6, 10, 6, 3, 3}));
  t.beard_colour = dyed ? jitter(s, rgb(70, 48, 32), 0.2, 6) : jitter(s, shade(t.hair, 0.9), 0.08, 4);
  t.moustache_thick = s.range(0.04, 0.085);
  t.hat = static_cast<HatStyle>(s.pick_weighted({75, 7, 6, 6, 6}));
  t.hat_colour = hsv(s.uniform(), s.range(0.4, 0.9), s.range(0.35, 0.9));
  t.earrings = static_cast<EarringStyle>(s.pick_weighted({70, 15, 15}));
  t.earring_colour = pick_colour(s, {rgb(215, 178, 60), rgb(205, 205, 215), rgb(200, 30, 50), rgb(40, 90, 200),
                                     rgb(245, 240, 230)});
  t.freckles = s.chance(0.2) ? 10 + s.pick(10) : 0;
  if (s.chance(0.25)) {
    const double side = s.chance(0.5) ? 1.0 : -1.0;
    t.mole_x = side * s.range(0.15, 0.45) * t.face_w;
    t.mole_y = s.range(0.1, 0.55);
    t.mole_r = s.range(0.014, 0.024);
  }
  t.marks_seed = s.next();
  // Clothing and backdrop.
  t.collar = static_cast<CollarStyle>(s.pick(static_cast<int>(CollarStyle::kCount)));
  t.shirt = s.chance(0.25) ? hsv(0, 0, s.range(0.1, 0.95)) : hsv(s.uniform(), s.range(0.3, 0.85), s.range(0.3, 0.9));
  t.background = hsv(s.uniform(), s.range(0.1, 0.45), s.range(0.62, 0.92));
  return t;
}

Nuisance sample_nuisance(uint64_t seed, int identity, int index) {
  Stream s(seed, static_cast<uint32_t>(identity), static_cast<uint32_t>(index) + 1ULL, kNuisanceDomain);
  Nuisance n;
  n.yaw = 0.25 * s.centred();
  n.roll = 0.09 * s.centred();  // about +-5 degrees
  n.scale = 1.0 + 0.08 * s.centred();
  n.shift_x = 0.035 * s.centred();
  n.shift_y = 0.03 * s.centred();
  n.light_angle = s.range(0.0, kTwoPi);
  n.light_strength = s.range(0.0, 0.15);
  n.gain = 1.0 + 0.08 * s.centred();
  switch (s.pick_weighted({40, 40, 12, 8})) {
    case 0: n.smile = s.range(-0.25, 0.2); break;                                   // neutral
    case 1: n.smile = s.range(0.45, 1.0); break;                                    // smile
    case 2: n.smile = s.range(0.5, 1.0); n.mouth_open = s.range(0.4, 1.0); break;   // laugh
    default:                                                                         // surprise
      n.smile = s.range(-0.2, 0.1);
      n.mouth_open = s.range(0.5, 1.0);
      n.brow_raise = 0.04;
      break;
  }
  n.eye_open = s.chance(0.06) ? s.range(0.4, 0.6) : 0.92 + 0.12 * s.centred();
  if (n.brow_raise > 0) n.eye_open += 0.12;
  n.brow_raise += 0.03 * s.centred();
  n.gaze_x = s.centred();
  n.gaze_y = s.centred();
  n.bg_b = 10 * s.centred();
  n.bg_g = 10 * s.centred();
  n.bg_r = 10 * s.centred();
  n.bg_angle = s.range(0.0, kTwoPi);
  n.bg_contrast = s.range(0.0, 0.12);
  n.noise_sigma = s.range(1.0, 3.0);
  n.noise_seed = s.next();
  return n;
}

cv::Mat render_face(const FaceTraits& t, const Nuisance& n, int size) {
  CV_Assert(size >= 1);
  const int supersample = size <= 128 ? 4 : 2;
  const int cs = size * supersample;
  cv::Mat canvas(cs, cs, CV_8UC3);
  fill_background(canvas, t, n);

  View v;
  v.unit = cs * kUnitFraction * n.scale;
  v.cx = cs * (0.5 + n.shift_x);
  v.cy = cs * (kFaceCentreY + n.shift_y);
  v.cos_roll = std::cos(n.roll);
  v.sin_roll = std::sin(n.roll);
  v.cos_yaw = std::cos(n.yaw);
  v.sin_yaw = std::sin(n.yaw);
  v.face_w = t.face_w;
  v.face_h = t.face_h;
  Painter p(canvas, v);

  draw_ears(p, t);
  draw_back_hair(p, t);
  draw_body(p, t);
  draw_face(p, t, n);
  draw_marks(p, t);
  draw_beard(p, t);
  draw_nose(p, t);
  for (int side = -1; side <= 1; side += 2) {
    draw_eye(p, t, n, side);
    draw_brow(p, t, n, side);
  }
  draw_mouth(p, t, n);
  draw_moustache(p, t);
  draw_front_hair(p, t);
  draw_hat(p, t);
  draw_glasses(p, t);

  cv::Mat out;
  cv::resize(canvas, out, cv::Size(size, size), 0, 0, cv::INTER_AREA);
  finish(out, n);
  return out;
}

}  // namespace rw::data
