// CPU backend of ops.h: OpenMP over rows, heads and tokens; OpenBLAS sgemm for linear() (measured faster
// than the loop version on every shape we use: bench/forward.sh). Accumulations are fp32 except the norm's
// mean of squares, which uses double so the reference is at least as exact as PyTorch's pairwise sums.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "forward/ops.h"
#include "runtime/status.h"

namespace g4::forward {
namespace {

float gelu_tanh_value(float x) {
  // F.gelu(x, approximate="tanh"), evaluated in fp32 as PyTorch's CPU kernel does.
  const float kAlpha = 0.7978845608028654f;  // sqrt(2/pi)
  const float kBeta = 0.044715f;
  float inner = kAlpha * (x + kBeta * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bool use_blas) : use_blas_(use_blas) {}

  void linear(const Mat& x, const Mat& w, Mat& out, const Precision& p) override {
    G4_CHECK(x.cols == w.cols);
    out = Mat(x.rows, w.rows);
    if (x.rows == 0 || w.rows == 0) return;
    if (use_blas_) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows), static_cast<int>(w.rows),
                  static_cast<int>(x.cols), 1.0f, x.v.data(), static_cast<int>(x.cols), w.v.data(),
                  static_cast<int>(w.cols), 0.0f, out.v.data(), static_cast<int>(out.cols));
    } else {
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t t = 0; t < x.rows; ++t)
        for (int64_t n = 0; n < w.rows; ++n) {
          const float* a = x.row(t);
          const float* b = w.row(n);
          float acc = 0;
          for (int64_t k = 0; k < x.cols; ++k) acc += a[k] * b[k];
          out.row(t)[n] = acc;
        }
    }
    p.round(out);
  }

  void rms_norm(Mat& x, const float* w, int64_t dim, float eps, const Precision& p) override {
    G4_CHECK(dim > 0 && x.v.size() % static_cast<size_t>(dim) == 0);
    const int64_t groups = static_cast<int64_t>(x.v.size()) / dim;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      float* y = x.v.data() + g * dim;
      double sum = 0;
      for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(y[i]) * y[i];
      float mean_sq = static_cast<float>(sum / static_cast<double>(dim)) + eps;
      float inv = std::pow(mean_sq, -0.5f);  // torch.pow(ms, -0.5), not rsqrt
      for (int64_t i = 0; i < dim; ++i) {
        float v = y[i] * inv;
        if (w) v *= w[i];
        y[i] = p.round(v);
      }
    }
  }

  void rope(Mat& x, int64_t hd, const Mat& cos, const Mat& sin, const Precision& p) override {
    G4_CHECK(x.cols % hd == 0 && cos.rows == x.rows && cos.cols == hd);
    const int64_t heads = x.cols / hd, half = hd / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < x.rows; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x.row(t) + h * hd;
        const float* c = cos.row(t);
        const float* s = sin.row(t);
        std::vector<float> out(static_cast<size_t>(hd));
        for (int64_t j = 0; j < hd; ++j) {
          float rotated = j < half ? -v[j + half] : v[j - half];  // rotate_half: cat(-x2, x1)
          float a = p.round(v[j] * c[j]);
          float b = p.round(rotated * s[j]);
          out[static_cast<size_t>(j)] = p.round(a + b);
        }
        std::copy(out.begin(), out.end(), v);
      }
  }

  void attention(const Mat& q, const Mat& k, const Mat& v, int64_t q_heads, int64_t kv_heads, int64_t hd,
                 const AttentionMask& mask, Mat& out, const Precision& p) override {
    const int64_t B = mask.batch, S = mask.seq, group = q_heads / kv_heads;
    G4_CHECK(q.rows == B * S && k.rows == B * S && q.cols == q_heads * hd && k.cols == kv_heads * hd);
    out = Mat(q.rows, q.cols);
#pragma omp parallel for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < q_heads; ++h)
        for (int64_t i = 0; i < S; ++i) {
          const int64_t kvh = h / group;
          const float* qi = q.row(b * S + i) + h * hd;
          std::vector<float> scores(static_cast<size_t>(S));
          float max_score = -INFINITY;
          bool any = false;
          for (int64_t j = 0; j < S; ++j) {
            if (!mask.at(b, i, j)) continue;
            const float* kj = k.row(b * S + j) + kvh * hd;
            float dot = 0;
            for (int64_t d = 0; d < hd; ++d) dot += qi[d] * kj[d];
            scores[static_cast<size_t>(j)] = dot;  // scale 1.0: QK-norm replaces 1/sqrt(hd)
            max_score = std::max(max_score, dot);
            any = true;
          }
          float* o = out.row(b * S + i) + h * hd;
          if (!any) continue;
          float denom = 0;
          for (int64_t j = 0; j < S; ++j)
            if (mask.at(b, i, j)) denom += (scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max_score));
          for (int64_t j = 0; j < S; ++j) {
            if (!mask.at(b, i, j)) continue;
            const float weight = scores[static_cast<size_t>(j)] / denom;
            const float* vj = v.row(b * S + j) + kvh * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] += weight * vj[d];
          }
          for (int64_t d = 0; d < hd; ++d) o[d] = p.round(o[d]);
        }
  }

  void gelu_tanh_mul(Mat& gate, const Mat& up, const Precision& p) override {
    G4_CHECK(gate.v.size() == up.v.size());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < gate.v.size(); ++i) gate.v[i] = p.round(p.round(gelu_tanh_value(gate.v[i])) * up.v[i]);
  }

  void gelu_tanh(Mat& x, const Precision& p) override {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] = p.round(gelu_tanh_value(x.v[i]));
  }

  void add(Mat& x, const Mat& y, const Precision& p) override {
    G4_CHECK(x.v.size() == y.v.size());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] = p.round(x.v[i] + y.v[i]);
  }

  void mul(Mat& x, const Mat& y, const Precision& p) override {
    G4_CHECK(x.v.size() == y.v.size());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] = p.round(x.v[i] * y.v[i]);
  }

  void scale(Mat& x, float s, const Precision& p) override {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] = p.round(x.v[i] * s);
  }

  void scale_columns(Mat& x, const std::vector<float>& v, const Precision& p) override {
    G4_CHECK(static_cast<int64_t>(v.size()) == x.cols);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < x.rows; ++t)
      for (int64_t c = 0; c < x.cols; ++c) x.row(t)[c] = p.round(x.row(t)[c] * v[static_cast<size_t>(c)]);
  }

  void softcap(Mat& x, float cap, const Precision& p) override {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] = p.round(p.round(std::tanh(p.round(x.v[i] / cap))) * cap);
  }

  Routing route(const Mat& logits, int64_t top_k, const std::vector<float>& per_expert_scale) override {
    const int64_t T = logits.rows, E = logits.cols;
    G4_CHECK(top_k >= 1 && top_k <= E && static_cast<int64_t>(per_expert_scale.size()) == E);
    Routing r;
    r.tokens = T;
    r.top_k = top_k;
    r.experts.resize(static_cast<size_t>(T * top_k));
    r.weights.resize(static_cast<size_t>(T * top_k));
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* s = logits.row(t);
      float max_s = *std::max_element(s, s + E);
      std::vector<float> prob(static_cast<size_t>(E));
      float sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (prob[static_cast<size_t>(e)] = std::exp(s[e] - max_s));
      for (float& pr : prob) pr /= sum;
      // torch.topk: largest first; among equal values the lower index first.
      std::vector<int32_t> order(static_cast<size_t>(E));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
        return prob[static_cast<size_t>(a)] != prob[static_cast<size_t>(b)] ? prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)] : a < b;
      });
      float kept = 0;
      for (int64_t k = 0; k < top_k; ++k) kept += prob[static_cast<size_t>(order[static_cast<size_t>(k)])];
      for (int64_t k = 0; k < top_k; ++k) {
        int32_t e = order[static_cast<size_t>(k)];
        r.experts[static_cast<size_t>(t * top_k + k)] = e;
        // Renormalise first, then scale: the other order cancels per_expert_scale (pitfalls.md P23).
        r.weights[static_cast<size_t>(t * top_k + k)] = prob[static_cast<size_t>(e)] / kept * per_expert_scale[static_cast<size_t>(e)];
      }
    }
    return r;
  }

 private:
  bool use_blas_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(bool use_blas) { return std::make_unique<CpuBackend>(use_blas); }

}  // namespace g4::forward
