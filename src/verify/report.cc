// verify's report: JSON for scripts, a compact table for people, an SVG plot that needs no other tool.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "verify/verify.h"

namespace g4::verify {
using nlohmann::json;

namespace {

json metrics_json(const Metrics& m) { return {{"cosine", m.cosine}, {"max_abs", m.max_abs}, {"rel_err", m.rel_err}}; }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

json report_json(const VerifyReport& r) {
  json layers = json::array();
  for (const LayerReport& l : r.layers) {
    json blocks = json::object();
    for (const auto& [name, m] : l.blocks) blocks[name] = metrics_json(m);
    json j = {{"layer", l.layer}, {"type", l.type}, {"residual", metrics_json(l.residual)}, {"blocks", blocks},
              {"divergent_block", l.divergent_block.empty() ? json(nullptr) : json(l.divergent_block)}};
    if (l.router_topk_agreement) j["router_topk_agreement"] = *l.router_topk_agreement;
    layers.push_back(j);
  }
  json logits = json::array();
  for (const LogitsReport& l : r.logits)
    logits.push_back({{"row", l.row}, {"position", l.position}, {"cosine", l.metrics.cosine}, {"max_abs", l.metrics.max_abs},
                      {"rel_err", l.metrics.rel_err}, {"top1_agrees", l.top1_agrees}, {"top5_overlap", l.top5_overlap}, {"kl", l.kl}});
  return {{"passed", r.passed},
          {"mode", r.mode},
          {"backend", r.backend},
          {"thresholds", {{"layer_cosine", r.thresholds.layer_cosine}, {"logits_cosine", r.thresholds.logits_cosine},
                          {"block_rel_err", r.thresholds.block_rel_err}, {"growth", r.thresholds.growth}}},
          {"first_divergent_layer", r.first_divergent_layer ? json(*r.first_divergent_layer) : json(nullptr)},
          {"first_divergent_block", r.first_divergent_block.empty() ? json(nullptr) : json(r.first_divergent_block)},
          {"embedding", metrics_json(r.embedding)},
          {"layers", layers},
          {"logits", logits},
          {"failures", r.failures}};
}

std::string report_text(const VerifyReport& r) {
  std::ostringstream o;
  o << "layer  type     residual cosine  max|d|      rel err    router top-k  diverges\n";
  o << "emb    -        " << fmt("%.9f", r.embedding.cosine) << "      " << fmt("%-10.3g", r.embedding.max_abs) << "  "
    << fmt("%-9.3g", r.embedding.rel_err) << "  -\n";
  for (const LayerReport& l : r.layers) {
    o << fmt("%-5.0f", l.layer) << "  " << (l.type == "full" ? "full   " : "sliding") << "  " << fmt("%.9f", l.residual.cosine) << "      "
      << fmt("%-10.3g", l.residual.max_abs) << "  " << fmt("%-9.3g", l.residual.rel_err) << "  "
      << (l.router_topk_agreement ? fmt("%5.1f%%", 100 * *l.router_topk_agreement) + "      " : std::string("-           ")) << "  "
      << (l.divergent_block.empty() ? "" : l.divergent_block) << "\n";
  }
  o << "logits at the last real token:\n";
  for (const LogitsReport& l : r.logits)
    o << "  row " << l.row << " pos " << l.position << ": cosine " << fmt("%.9f", l.metrics.cosine) << ", max|d| "
      << fmt("%.3g", l.metrics.max_abs) << ", top-1 " << (l.top1_agrees ? "same" : "DIFFERS") << ", top-5 overlap "
      << fmt("%.0f%%", 100 * l.top5_overlap) << ", KL " << fmt("%.3g", l.kl) << "\n";
  if (r.first_divergent_layer) {
    const int L = static_cast<int>(r.layers.size());
    const int f = *r.first_divergent_layer;
    o << "first divergence: " << (f < 0 ? std::string("embedding") : f >= L ? std::string("head") : "layer " + std::to_string(f)) << ", "
      << r.first_divergent_block << "\n";
  }
  o << (r.passed ? "verdict: PASS" : "verdict: FAIL") << " (" << r.mode << ", " << r.backend << ")\n";
  for (const std::string& f : r.failures) o << "  " << f << "\n";
  return o.str();
}

std::string report_svg(const VerifyReport& r, const std::string& title) {
  const int W = 820, H = 420, left = 70, right = 150, top = 40, bottom = 50;
  const int pw = W - left - right, ph = H - top - bottom;
  const double lo = -12, hi = 0;  // log10 range
  const size_t n = r.layers.size();
  auto x_of = [&](size_t i) { return left + (n <= 1 ? pw / 2.0 : pw * static_cast<double>(i) / static_cast<double>(n - 1)); };
  auto y_of = [&](double v) {
    double l = v > 0 ? std::log10(v) : lo;
    l = std::clamp(l, lo, hi);
    return top + ph * (hi - l) / (hi - lo);
  };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">" << escape(title) << " — " << (r.passed ? "PASS" : "FAIL") << " (" << r.mode
    << ")</text>\n";
  const double band = n <= 1 ? pw : pw / static_cast<double>(n - 1);
  for (size_t i = 0; i < n; ++i)  // full-attention layers shaded, clipped to the plot area
    if (r.layers[i].type == "full") {
      const double x0 = std::max<double>(left, x_of(i) - band / 2), x1 = std::min<double>(left + pw, x_of(i) + band / 2);
      s << "<rect x=\"" << x0 << "\" y=\"" << top << "\" width=\"" << x1 - x0 << "\" height=\"" << ph << "\" fill=\"#e8eefc\"/>\n";
    }
  for (int e = static_cast<int>(lo); e <= static_cast<int>(hi); e += 2) {
    const double y = y_of(std::pow(10.0, e));
    s << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y << "\" y2=\"" << y << "\" stroke=\"#ddd\"/>\n";
    s << "<text x=\"" << left - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">1e" << e << "</text>\n";
  }
  for (size_t i = 0; i < n; ++i)
    s << "<text x=\"" << x_of(i) << "\" y=\"" << top + ph + 16 << "\" text-anchor=\"middle\">" << r.layers[i].layer << "</text>\n";
  s << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">layer (shaded: full attention)</text>\n";
  auto series = [&](const char* color, auto value) {
    s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (size_t i = 0; i < n; ++i) s << x_of(i) << "," << y_of(value(r.layers[i])) << " ";
    s << "\"/>\n";
    for (size_t i = 0; i < n; ++i)
      s << "<circle cx=\"" << x_of(i) << "\" cy=\"" << y_of(value(r.layers[i])) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
  };
  series("#1f77b4", [](const LayerReport& l) { return 1.0 - l.residual.cosine; });
  series("#d62728", [](const LayerReport& l) { return l.residual.rel_err; });
  const double thr = r.thresholds.block_rel_err;
  s << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y_of(thr) << "\" y2=\"" << y_of(thr)
    << "\" stroke=\"#d62728\" stroke-dasharray=\"4,3\"/>\n";
  if (r.first_divergent_layer && *r.first_divergent_layer >= 0 && *r.first_divergent_layer < static_cast<int>(n)) {
    const double x = x_of(static_cast<size_t>(*r.first_divergent_layer));
    s << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << top << "\" y2=\"" << top + ph << "\" stroke=\"black\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << x + 6 << "\" y=\"" << top + ph - 8 << "\">first divergence: " << escape(r.first_divergent_block) << "</text>\n";
  }
  const int lx = left + pw + 12;
  s << "<circle cx=\"" << lx << "\" cy=\"" << top + 10 << "\" r=\"4\" fill=\"#1f77b4\"/><text x=\"" << lx + 10 << "\" y=\"" << top + 14
    << "\">1 − cosine</text>\n";
  s << "<circle cx=\"" << lx << "\" cy=\"" << top + 30 << "\" r=\"4\" fill=\"#d62728\"/><text x=\"" << lx + 10 << "\" y=\"" << top + 34
    << "\">relative error</text>\n";
  s << "<line x1=\"" << lx - 6 << "\" x2=\"" << lx + 6 << "\" y1=\"" << top + 50 << "\" y2=\"" << top + 50
    << "\" stroke=\"#d62728\" stroke-dasharray=\"4,3\"/><text x=\"" << lx + 10 << "\" y=\"" << top + 54 << "\">block threshold</text>\n";
  s << "<text x=\"" << lx - 6 << "\" y=\"" << top + 78 << "\">(0 plotted at 1e-12)</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace g4::verify
