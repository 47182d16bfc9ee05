// Self-contained HTML reports: one file, no external assets. Images are inline PNG data URIs,
// plots are inline SVG. Every piece of user text (identity names come from folder names) goes
// through escape(); only the builder's own markup is emitted raw.
//
// Torch- and OpenCV-free: images arrive as PNG bytes (io::encode_png makes them).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace rw::report {

/// HTML-escapes & < > " ' .
std::string escape(const std::string& text);

/// RFC 4648 base64.
std::string base64(const std::string& bytes);

/// <img> with the PNG inline; `alt` and `title` are escaped. width_px 0 = natural size.
std::string img_png(const std::string& png_bytes, const std::string& alt, int width_px = 0,
                    const std::string& title = "");

/// A line series for svg_plot.
struct Series {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
  std::vector<std::string> tips;  ///< per point, shown on hover in Vega plots (identity, file); may be empty
  std::vector<double> band_x, band_lo, band_hi;  ///< an interval band (e.g. a 95% bootstrap band) drawn
                                                 ///< under the line in its colour; may be empty
};

struct PlotOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_x = false;       ///< log10 x axis (values <= 0 are clamped to the smallest positive)
  bool log_y = false;
  bool diagonal = false;    ///< draw y = x (chance line of a ROC curve)
  int width = 420;
  int height = 320;
  double x_min = 0, x_max = 0, y_min = 0, y_max = 0;  ///< 0,0 = from the data
  std::vector<std::string> x_names;  ///< names of the integer x positions 0, 1, ... (an ordinal axis: split stages)
  std::vector<std::pair<double, std::string>> x_rules;  ///< labelled vertical lines (a threshold)
  std::vector<std::pair<double, std::string>> y_rules;  ///< labelled horizontal lines
};

/// Inline SVG line plot (ROC curves, quality-vs-depth). Text is escaped. The static fallback of
/// vega_line_spec where Vega is not installed.
std::string svg_plot(const std::vector<Series>& series, const PlotOptions& opt);

/// The same plot as a Vega-Lite spec (JSON text, data inline): one coloured line per series with
/// its legend below the plot, dashed series dashed, log axes dropping values <= 0, the y = x
/// diagonal, labelled rules, tooltips with the series, x, y and the point's tip. For HtmlReport::vega.
std::string vega_line_spec(const std::vector<Series>& series, const PlotOptions& opt);

/// Builds one report page. Methods that take plain text escape it; *_html methods take markup
/// that the caller built from escaped pieces.
class HtmlReport {
 public:
  explicit HtmlReport(std::string title);

  void heading(const std::string& text, int level = 2);
  void paragraph(const std::string& text);
  /// A paragraph of caller-built markup (must already be escaped).
  void paragraph_html(const std::string& html);
  /// A highlighted summary box; `lines` are plain text.
  void summary(const std::vector<std::string>& lines);
  /// A table; header and cells are plain text (escaped). `numeric_cols` are right-aligned.
  void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
  /// A table whose cells are markup (e.g. images); header is plain text.
  void table_html(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
  /// Raw markup (SVG from svg_plot, figures).
  void raw(const std::string& html);
  /// A <details> block with preformatted text (run record JSON, options).
  void details(const std::string& summary_text, const std::string& pre_text);
  /// A plot as a Vega-Lite spec (JSON text, data inline; `name` a file-name-safe word). Drawn in
  /// the page by Vega, whose files (vega_assets()) are inlined once per report so it opens offline;
  /// write() also puts the spec beside the page as plots/NAME.vl.json (`node
  /// data-tools/vega/render.js DIR` renders those as SVG). Without the Vega files (npm not run),
  /// `fallback_svg` is shown instead, with a note saying how to get the interactive plot.
  void vega(const std::string& name, const std::string& spec_json, const std::string& fallback_svg = "");

  std::string str() const;
  /// Writes the page atomically.
  void write(const std::string& path) const;

 private:
  std::string title_;
  std::string body_;
  std::vector<std::pair<std::string, std::string>> plots_;  ///< (name, Vega-Lite spec) in page order
};

/// The Vega, Vega-Lite and vega-embed builds the reports inline, concatenated as <script> blocks;
/// "" when they are not installed. Looked up in $REWIND_VEGA_DIR, else share/rewind/vega beside
/// or above the executable (the build copies them there from data-tools/vega/node_modules).
const std::string& vega_assets();

/// The number formatters every report and table uses: fixed ("0.953", `digits` after the point)
/// and significant ("0.000123", "1.5e+07": printf %.{significant}g). NaN prints as "n/a".
std::string fmt(double v, int digits = 3);
std::string fmt_g(double v, int significant = 4);
/// An estimate with its interval: "0.812 [0.770, 0.851]" (fmt at `digits`); "0.812 (no interval)" when both
/// ends are NaN.
std::string fmt_interval(double value, double lo, double hi, int digits = 3);

}  // namespace rw::report
