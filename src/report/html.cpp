#include "rewind/report/html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "rewind/core/build_info.h"
#include "rewind/io/atomic_file.h"

#include <nlohmann/json.hpp>

namespace rw::report {

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string img_png(const std::string& png_bytes, const std::string& alt, int width_px, const std::string& title) {
  std::string s = "<img alt=\"" + escape(alt) + "\"";
  if (!title.empty()) s += " title=\"" + escape(title) + "\"";
  if (width_px > 0) s += " width=\"" + std::to_string(width_px) + "\"";
  s += " style=\"image-rendering:pixelated\" src=\"data:image/png;base64," + base64(png_bytes) + "\">";
  return s;
}

std::string fmt(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string fmt_interval(double value, double lo, double hi, int digits) {
  if (std::isnan(lo) && std::isnan(hi)) return fmt(value, digits) + " (no interval)";
  return fmt(value, digits) + " [" + fmt(lo, digits) + ", " + fmt(hi, digits) + "]";
}

std::string fmt_g(double v, int significant) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", significant, v);
  return buf;
}

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string tick_label(double v, bool log) {
  char buf[32];
  if (log) {
    std::snprintf(buf, sizeof buf, "1e%d", int(std::lround(v)));
  } else {
    std::snprintf(buf, sizeof buf, "%g", std::abs(v) < 1e-12 ? 0.0 : v);
  }
  return buf;
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

}  // namespace

std::string svg_plot(const std::vector<Series>& series, const PlotOptions& opt) {
  const double ml = 56, mr = 12, mt = opt.title.empty() ? 12 : 28, mb = 44;
  const double pw = opt.width - ml - mr, ph = opt.height - mt - mb;
  // smallest positive values for log axes
  double minpos_x = std::numeric_limits<double>::infinity(), minpos_y = minpos_x;
  for (const auto& s : series) {
    for (double v : s.x) if (v > 0) minpos_x = std::min(minpos_x, v);
    for (double v : s.y) if (v > 0) minpos_y = std::min(minpos_y, v);
  }
  if (!std::isfinite(minpos_x)) minpos_x = 1e-3;
  if (!std::isfinite(minpos_y)) minpos_y = 1e-3;
  auto tx = [&](double v) { return opt.log_x ? std::log10(std::max(v, minpos_x)) : v; };
  auto ty = [&](double v) { return opt.log_y ? std::log10(std::max(v, minpos_y)) : v; };
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      double a = tx(s.x[i]), b = ty(s.y[i]);
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      x0 = std::min(x0, a); x1 = std::max(x1, a); y0 = std::min(y0, b); y1 = std::max(y1, b);
    }
  }
  if (opt.x_min != 0 || opt.x_max != 0) { x0 = tx(opt.x_min); x1 = tx(opt.x_max); }
  if (opt.y_min != 0 || opt.y_max != 0) { y0 = ty(opt.y_min); y1 = ty(opt.y_max); }
  if (!std::isfinite(x0)) { x0 = 0; x1 = 1; }
  if (!std::isfinite(y0)) { y0 = 0; y1 = 1; }
  if (x1 - x0 < 1e-12) { x0 -= 0.5; x1 += 0.5; }
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  if (opt.log_x) { x0 = std::floor(x0); x1 = std::ceil(x1); }
  if (opt.log_y) { y0 = std::floor(y0); y1 = std::ceil(y1); }
  auto px = [&](double a) { return ml + (a - x0) / (x1 - x0) * pw; };
  auto py = [&](double b) { return mt + ph - (b - y0) / (y1 - y0) * ph; };

  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << opt.width << "\" height=\"" << opt.height
     << "\" font-family=\"sans-serif\" font-size=\"11\">";
  if (!opt.title.empty())
    os << "<text x=\"" << opt.width / 2 << "\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">"
       << escape(opt.title) << "</text>";
  os << "<rect x=\"" << ml << "\" y=\"" << mt << "\" width=\"" << pw << "\" height=\"" << ph
     << "\" fill=\"none\" stroke=\"#888\"/>";
  // ticks: integer decades on log axes, 5 divisions otherwise
  auto ticks = [](double a, double b, bool log) {
    std::vector<double> t;
    if (log) {
      for (double v = a; v <= b + 1e-9; v += 1) t.push_back(v);
    } else {
      for (int i = 0; i <= 5; ++i) t.push_back(a + (b - a) * i / 5);
    }
    return t;
  };
  for (double v : ticks(x0, x1, opt.log_x)) {
    os << "<line x1=\"" << num(px(v)) << "\" x2=\"" << num(px(v)) << "\" y1=\"" << num(mt) << "\" y2=\"" << num(mt + ph)
       << "\" stroke=\"#eee\"/><text x=\"" << num(px(v)) << "\" y=\"" << num(mt + ph + 14)
       << "\" text-anchor=\"middle\">" << tick_label(v, opt.log_x) << "</text>";
  }
  for (double v : ticks(y0, y1, opt.log_y)) {
    os << "<line x1=\"" << num(ml) << "\" x2=\"" << num(ml + pw) << "\" y1=\"" << num(py(v)) << "\" y2=\"" << num(py(v))
       << "\" stroke=\"#eee\"/><text x=\"" << num(ml - 4) << "\" y=\"" << num(py(v) + 4)
       << "\" text-anchor=\"end\">" << tick_label(v, opt.log_y) << "</text>";
  }
  os << "<text x=\"" << num(ml + pw / 2) << "\" y=\"" << opt.height - 8 << "\" text-anchor=\"middle\">"
     << escape(opt.x_label) << "</text>";
  os << "<text transform=\"translate(14," << num(mt + ph / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
     << escape(opt.y_label) << "</text>";
  if (opt.diagonal) {
    // y = x, sampled so it is right on log axes too
    os << "<polyline fill=\"none\" stroke=\"#aaa\" stroke-dasharray=\"4 3\" points=\"";
    for (int i = 0; i <= 50; ++i) {
      double a = x0 + (x1 - x0) * i / 50;
      double v = opt.log_x ? std::pow(10.0, a) : a;
      double b = ty(v);
      if (b < y0 || b > y1) continue;
      os << num(px(a)) << "," << num(py(b)) << " ";
    }
    os << "\"/>";
  }
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* color = kColors[k % (sizeof kColors / sizeof *kColors)];
    const size_t nb = std::min({s.band_x.size(), s.band_lo.size(), s.band_hi.size()});
    if (nb > 0) {  // the band: along the upper edge, back along the lower one
      os << "<polygon fill=\"" << color << "\" fill-opacity=\"0.15\" stroke=\"none\" points=\"";
      for (size_t j = 0; j < 2 * nb; ++j) {
        const size_t i = j < nb ? j : 2 * nb - 1 - j;
        const double a = tx(s.band_x[i]), b = ty(j < nb ? s.band_hi[i] : s.band_lo[i]);
        if (!std::isfinite(a) || !std::isfinite(b)) continue;
        os << num(px(std::clamp(a, x0, x1))) << "," << num(py(std::clamp(b, y0, y1))) << " ";
      }
      os << "\"/>";
    }
    os << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.8\""
       << (s.dashed ? " stroke-dasharray=\"5 3\"" : "") << " points=\"";
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      double a = tx(s.x[i]), b = ty(s.y[i]);
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      a = std::clamp(a, x0, x1);
      b = std::clamp(b, y0, y1);
      os << num(px(a)) << "," << num(py(b)) << " ";
    }
    os << "\"/>";
    double ly = mt + 14 + 14 * double(k);
    os << "<line x1=\"" << num(ml + pw - 120) << "\" x2=\"" << num(ml + pw - 100) << "\" y1=\"" << num(ly - 4)
       << "\" y2=\"" << num(ly - 4) << "\" stroke=\"" << color << "\" stroke-width=\"2\"/><text x=\""
       << num(ml + pw - 96) << "\" y=\"" << num(ly) << "\">" << escape(s.name) << "</text>";
  }
  os << "</svg>";
  return os.str();
}

std::string vega_line_spec(const std::vector<Series>& series, const PlotOptions& opt) {
  using nlohmann::json;
  const bool named = !opt.x_names.empty();
  json values = json::array();
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const double x = s.x[i], y = s.y[i];
      if (!std::isfinite(x) || !std::isfinite(y) || (opt.log_x && x <= 0) || (opt.log_y && y <= 0)) continue;
      json v = {{"series", s.name}, {"dashed", s.dashed}, {"y", y}};
      if (named) {
        const auto k = size_t(std::llround(x));
        v["x"] = k < opt.x_names.size() ? opt.x_names[k] : std::to_string(k);
      } else {
        v["x"] = x;
      }
      if (i < s.tips.size()) v["tip"] = s.tips[i];
      values.push_back(v);
    }
  auto scale = [](bool log, double lo, double hi) {
    json sc = log ? json{{"type", "log"}} : json{{"zero", false}};
    if (lo != 0 || hi != 0) sc["domain"] = {lo, hi}, sc["clamp"] = true;
    return sc;
  };
  json order = json::array();  // the named positions in order (unnamed ones are not on the axis)
  for (const auto& n : opt.x_names)
    if (!n.empty() && std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  json x = named ? json{{"field", "x"}, {"type", "ordinal"}, {"title", opt.x_label}, {"sort", order},
                        {"axis", {{"labelAngle", -40}}}}
                 : json{{"field", "x"}, {"type", "quantitative"}, {"title", opt.x_label},
                        {"scale", scale(opt.log_x, opt.x_min, opt.x_max)}};
  json y = {{"field", "y"}, {"type", "quantitative"}, {"title", opt.y_label}, {"scale", scale(opt.log_y, opt.y_min, opt.y_max)}};
  json tooltip = json::array({{{"field", "series"}, {"title", "series"}},
                              {{"field", "x"}, {"title", opt.x_label.empty() ? "x" : opt.x_label}},
                              {{"field", "y"}, {"title", opt.y_label.empty() ? "y" : opt.y_label}, {"format", ".4~g"}}});
  bool tips = false;
  for (const auto& s : series) tips = tips || !s.tips.empty();
  if (tips) tooltip.push_back({{"field", "tip"}, {"title", "item"}});
  json layers = json::array();
  // one legend for the lines and their bands (Vega warns when layers' legends differ)
  const json legend = {{"orient", "bottom"}, {"title", nullptr}, {"columns", 2}, {"labelLimit", 420},
                       {"symbolType", "stroke"}, {"symbolOpacity", 1}, {"symbolStrokeWidth", 2}};
  json bands = json::array();  // interval bands, under the lines, in the series' colours
  for (const auto& s : series)
    for (size_t i = 0; i < std::min({s.band_x.size(), s.band_lo.size(), s.band_hi.size()}) && !named; ++i) {
      const double bx = s.band_x[i];
      double lo = s.band_lo[i], hi = s.band_hi[i];
      if (!std::isfinite(bx) || !std::isfinite(lo) || !std::isfinite(hi) || (opt.log_x && bx <= 0)) continue;
      if (opt.log_y) {  // a log axis has no 0: the band's floor is the axis' bottom
        const double floor = opt.y_min > 0 ? opt.y_min : 1e-6;
        if (hi <= 0) continue;
        lo = std::max(lo, floor);
      }
      bands.push_back({{"series", s.name}, {"x", bx}, {"lo", lo}, {"hi", hi}});
    }
  if (!bands.empty()) {
    layers.push_back({{"data", {{"values", bands}}},
                      {"mark", {{"type", "area"}, {"opacity", 0.18}, {"clip", true}}},
                      {"encoding",
                       {{"x", x},
                        {"y", {{"field", "lo"}, {"type", "quantitative"}, {"title", opt.y_label},
                               {"scale", scale(opt.log_y, opt.y_min, opt.y_max)}}},
                        {"y2", {{"field", "hi"}}},
                        {"color", {{"field", "series"}, {"type", "nominal"}, {"legend", legend}}}}}});
  }
  layers.push_back({{"mark", {{"type", "line"}, {"point", values.size() <= 200}, {"clip", true}}},
                    {"encoding",
                     {{"x", x},
                      {"y", y},
                      {"color", {{"field", "series"}, {"type", "nominal"}, {"legend", legend}}},
                      {"strokeDash", {{"field", "dashed"}, {"type", "nominal"}, {"legend", nullptr},
                                      {"scale", {{"domain", {false, true}}, {"range", {{1, 0}, {6, 4}}}}}}},
                      {"tooltip", tooltip}}}});
  if (opt.diagonal && !named) {
    const double lo = opt.log_x ? std::max(opt.x_min, 1e-6) : opt.x_min, hi = opt.x_max != 0 ? opt.x_max : 1;
    layers.push_back({{"data", {{"values", {{{"x", lo}, {"y", lo}}, {{"x", hi}, {"y", hi}}}}}},
                      {"mark", {{"type", "line"}, {"color", "#999"}, {"strokeDash", {2, 3}}}},
                      {"encoding", {{"x", {{"field", "x"}, {"type", "quantitative"}}}, {"y", {{"field", "y"}, {"type", "quantitative"}}}}}});
  }
  auto rules = [&](const std::vector<std::pair<double, std::string>>& rs, const char* axis) {
    for (const auto& [v, label] : rs) {
      json enc = {{axis, {{"datum", v}, {"type", "quantitative"}}}};
      // one datum of their own (the parent's data would draw one rule per row)
      const json data = {{"values", json::array({{{"label", label}}})}};
      layers.push_back({{"data", data}, {"mark", {{"type", "rule"}, {"color", "#b00"}, {"strokeDash", {5, 3}}}}, {"encoding", enc}});
      layers.push_back({{"data", data},
                        {"mark", {{"type", "text"}, {"color", "#b00"}, {"align", "left"}, {"dx", 4}, {"dy", 12},
                                  {"baseline", "bottom"}, {"fontSize", 11}}},
                        {"encoding", enc}});
      layers.back()["encoding"]["text"] = {{"field", "label"}};
      if (std::string(axis) == "x") layers.back()["encoding"]["y"] = {{"value", 0}};
      else layers.back()["encoding"]["x"] = {{"value", 0}};
    }
  };
  rules(opt.x_rules, "x");
  rules(opt.y_rules, "y");
  json spec = {{"$schema", "https://vega.github.io/schema/vega-lite/v5.json"},
               {"title", opt.title},
               {"width", opt.width},
               {"height", opt.height},
               {"data", {{"values", values}}},
               {"layer", layers}};
  return spec.dump();
}

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

void HtmlReport::heading(const std::string& text, int level) {
  level = std::clamp(level, 1, 4);
  body_ += "<h" + std::to_string(level) + ">" + escape(text) + "</h" + std::to_string(level) + ">\n";
}
void HtmlReport::paragraph(const std::string& text) { body_ += "<p>" + escape(text) + "</p>\n"; }
void HtmlReport::paragraph_html(const std::string& html) { body_ += "<p>" + html + "</p>\n"; }
void HtmlReport::summary(const std::vector<std::string>& lines) {
  body_ += "<div class=\"summary\">";
  for (const auto& l : lines) body_ += "<p>" + escape(l) + "</p>";
  body_ += "</div>\n";
}

// Every table sorts by a click on its header (numbers by value, "n/a" and text after them; the
// script in str()); one longer than kLongTable rows sits in a <details> the reader opens.
constexpr size_t kLongTable = 60;

static void table_impl(std::string& body, const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows, bool escape_cells) {
  const bool long_table = rows.size() > kLongTable;
  if (long_table)
    body += "<details><summary>" + std::to_string(rows.size()) + " rows (click to show; click a column to sort)</summary>";
  body += "<table class=\"sortable\"><thead><tr>";
  for (const auto& h : header) body += "<th>" + escape(h) + "</th>";
  body += "</tr></thead><tbody>\n";
  for (const auto& r : rows) {
    body += "<tr>";
    for (const auto& c : r) body += "<td>" + (escape_cells ? escape(c) : c) + "</td>";
    body += "</tr>\n";
  }
  body += "</tbody></table>";
  body += long_table ? "</details>\n" : "\n";
}

void HtmlReport::table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  table_impl(body_, header, rows, true);
}
void HtmlReport::table_html(const std::vector<std::string>& header,
                            const std::vector<std::vector<std::string>>& rows) {
  table_impl(body_, header, rows, false);
}
void HtmlReport::raw(const std::string& html) { body_ += html + "\n"; }
void HtmlReport::details(const std::string& summary_text, const std::string& pre_text) {
  body_ += "<details><summary>" + escape(summary_text) + "</summary><pre>" + escape(pre_text) + "</pre></details>\n";
}

// Click a header to sort its table (again to reverse). Cells sort by data-sort when set, else by a
// leading number, else as text; numbers come first.
static const char* kSortScript =
    "<script>document.querySelectorAll('table.sortable th').forEach(function(th){th.style.cursor='pointer';"
    "th.title='click to sort';th.addEventListener('click',function(){var b=th.closest('table').tBodies[0],"
    "i=Array.prototype.indexOf.call(th.parentNode.children,th),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';"
    "function key(r){var c=r.cells[i],s=c?(c.dataset.sort||c.textContent.trim()):'',m=s.match(/^-?[0-9]*\\.?[0-9]+(e[-+]?[0-9]+)?/i);"
    "return m?parseFloat(m[0]):s;}var rs=Array.prototype.slice.call(b.rows);rs.sort(function(a,c){var x=key(a),y=key(c),"
    "nx=typeof x==='number',ny=typeof y==='number';if(nx&&ny)return asc?x-y:y-x;if(nx)return -1;if(ny)return 1;"
    "return asc?x.localeCompare(y):y.localeCompare(x);});rs.forEach(function(r){b.appendChild(r);});});});</script>\n";

const std::string& vega_assets() {
  static const std::string assets = [] {
    const std::vector<std::string> files = {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"};
    const std::string dir = find_share_dir("vega", "REWIND_VEGA_DIR", files, executable_dir());
    std::string all;
    for (const auto& f : files) {
      std::ifstream in(std::filesystem::path(dir) / f, std::ios::binary);
      if (dir.empty() || !in) return std::string();
      std::string js((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      // a literal "</script" inside the code would end the block early
      for (size_t p = 0; (p = js.find("</script", p)) != std::string::npos; p += 9) js.replace(p, 8, "<\\/script");
      all += "<script>" + js + "</script>\n";
    }
    return all;
  }();
  return assets;
}

void HtmlReport::vega(const std::string& name, const std::string& spec_json, const std::string& fallback_svg) {
  const std::string id = "vega-" + std::to_string(plots_.size());
  plots_.emplace_back(name, spec_json);
  if (vega_assets().empty()) {
    body_ += fallback_svg + "\n<p style=\"font-size:11px;color:#777\">(a static plot: the interactive one needs Vega, "
             "which scripts/install-deps.sh installs from npm; its spec is in plots/" + escape(name) + ".vl.json)</p>\n";
    return;
  }
  // the spec as JSON in a data block: '<' escaped so no text in it can close the block
  std::string safe;
  for (char c : spec_json) safe += c == '<' ? std::string("\\u003c") : std::string(1, c);
  body_ += "<div class=\"plot\" id=\"" + id + "\"></div><script type=\"application/json\" id=\"" + id + "-spec\">" +
           safe + "</script>\n";
}

std::string HtmlReport::str() const {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape(title_) +
      "</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
      "vertical-align:middle}th{background:#f4f4f4}.summary{background:#fff7e6;border-left:4px solid #e69500;"
      "padding:.5em 1em;margin:1em 0}.summary p{margin:.3em 0;font-size:1.05em}.leak{color:#b00;font-weight:bold}"
      ".safe{color:#070}.warn{color:#a60;font-weight:bold}pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:12px}"
      "figure{display:inline-block;margin:4px;text-align:center}figcaption{font-size:11px}</style></head><body>\n<h1>" +
      escape(title_) + "</h1>\n" + body_ + "<hr><p style=\"font-size:11px;color:#777\">" +
      escape(build_string()) + "</p>\n" + kSortScript;
  if (!plots_.empty() && !vega_assets().empty()) {
    s += vega_assets();
    s += "<script>document.querySelectorAll('div.plot').forEach(function(d){vegaEmbed(d,JSON.parse("
         "document.getElementById(d.id+'-spec').textContent),{actions:false,renderer:'svg'}).catch(function(e){"
         "d.textContent='plot failed: '+e;console.error(e);});});</script>\n";
  }
  return s + "</body></html>\n";
}

void HtmlReport::write(const std::string& path) const {
  if (!plots_.empty()) {
    const std::string dir = (std::filesystem::path(path).parent_path() / "plots").string();
    io::ensure_dir(dir);
    for (const auto& [name, spec] : plots_) io::write_file_atomic(dir + "/" + name + ".vl.json", spec + "\n");
  }
  io::write_file_atomic(path, str());
}

}  // namespace rw::report
