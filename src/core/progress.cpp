#include "rewind/core/progress.h"

#include <atomic>
#include <csignal>
#include <cstdio>

#include "rewind/core/error.h"

namespace rw {

namespace {
std::atomic<int> g_cancel{0};
extern "C" void on_sigint(int) {
  if (g_cancel.fetch_add(1) >= 1) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}
}  // namespace

void install_cancel_handler() { std::signal(SIGINT, on_sigint); }
bool cancel_requested() { return g_cancel.load() > 0; }
void reset_cancel_for_testing() { g_cancel.store(0); }

void report_progress(const ProgressFn& fn, const Progress& p) {
  if (fn && !fn(p))
    throw Error(ErrorKind::kCancelled,
                "cancelled during '" + p.stage + "' after " + std::to_string(p.done) + " of " +
                    std::to_string(p.total) + "; finished work was kept");
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

TerminalProgress::TerminalProgress(bool enabled) : enabled_(enabled) {}
TerminalProgress::~TerminalProgress() { finish(); }

ProgressFn TerminalProgress::fn() {
  return [this](const Progress& p) { return on_progress(p); };
}

void TerminalProgress::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

bool TerminalProgress::on_progress(const Progress& p) {
  using clock = std::chrono::steady_clock;
  auto now = clock::now();
  if (p.stage != stage_) {
    finish();
    stage_ = p.stage;
    stage_start_ = now;
    last_draw_ = clock::time_point{};
  }
  bool last = p.total > 0 && p.done >= p.total;
  if (enabled_ && (last || now - last_draw_ > std::chrono::milliseconds(125))) {
    last_draw_ = now;
    double el = std::chrono::duration<double>(now - stage_start_).count();
    double rate = el > 0 ? p.done / el : 0.0;
    // a rate means something only after a while: an instant phase ("0.0/s") shows none
    char rate_text[32] = "";
    if (el >= 0.5 && p.done > 0) std::snprintf(rate_text, sizeof rate_text, "  %.1f/s", rate);
    char line[256];
    if (p.total > 0) {
      double eta = rate > 0 ? (p.total - p.done) / rate : -1;
      std::snprintf(line, sizeof line, "\r%-10s %lld/%lld (%3.0f%%)%s  %s %s",
                    p.stage.c_str(), (long long)p.done, (long long)p.total,
                    100.0 * p.done / p.total, rate_text, last ? "took" : "ETA",
                    format_duration(last ? el : eta).c_str());
    } else {
      std::snprintf(line, sizeof line, "\r%-10s %lld%s  %s", p.stage.c_str(),
                    (long long)p.done, rate_text, format_duration(el).c_str());
    }
    std::string s(line);
    if (!p.detail.empty()) s += "  " + p.detail;
    s += "\033[K";
    std::fputs(s.c_str(), stderr);
    std::fflush(stderr);
    drawn_ = true;
  }
  return !cancel_requested();
}

}  // namespace rw
