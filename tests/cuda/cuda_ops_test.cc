// Each op of the CUDA backend against the CPU backend on random inputs with odd sizes, in fp32 and bf16, with
// cuda-forward.md B.6's thresholds (close_f32 / close_bf16, cuda_test_support.h). Skipped without a GPU.
#include <numeric>

#include "cuda/cuda_test_support.h"

namespace g4::forward::testing {
namespace {

using CudaOps = CudaVsCpu;

// The op on each backend from the same host inputs; `f` gets the backend and returns the device result.
template <class F>
std::pair<Mat, Mat> both(Backend& cpu, Backend& cuda, F&& f) {
  Mat a = cpu.download(f(cpu));
  Mat b = cuda.download(f(cuda));
  return {std::move(a), std::move(b)};
}

TEST_F(CudaOps, LinearMatchesCpuOnOddShapesInBothModesAndStoredTypes) {
  for (const Precision& p : {kF32, kBF16})
    for (DType stored : {DType::kF32, DType::kBF16})
      for (int64_t T : {1, 7, 33})
        for (int64_t N : {5, 769})
          for (int64_t K : {1, 7, 769}) {
            const Mat x = random_mat(T, K, 1, 1.0f, p.bf16());
            const Tensor w = host_tensor(random_mat(N, K, 2, 0.1f, stored == DType::kBF16), stored);
            auto [c, g] = both(*cpu, *cuda, [&](Backend& b) { return b.linear(b.upload(x), b.weight(w, p), p); });
            EXPECT_TRUE(close(p, c, g)) << "bf16=" << p.bf16() << " stored=" << dtype_name(stored) << " T=" << T << " N=" << N << " K=" << K;
          }
}

TEST_F(CudaOps, RmsNormMatchesCpuWithAndWithoutWeight) {
  for (int64_t dim : {1, 7, 769})
    for (bool weighted : {true, false}) {
      const Mat x = random_mat(5, dim * 3, 3, 2.0f, true);
      const std::vector<float> wv = random_mat(1, dim, 4, 1.0f).v;
      Mat out[2][2];
      for (const Precision& p : {kF32, kBF16}) {
        auto [c, g] = both(*cpu, *cuda, [&](Backend& b) {
          Tensor t = b.upload(x);
          const Tensor w = b.parameter(wv, p);
          b.rms_norm(t, weighted ? &w : nullptr, dim, 1e-6f, p);
          return t;
        });
        EXPECT_TRUE(close(p, c, g)) << "dim=" << dim << " weighted=" << weighted << " bf16=" << p.bf16();
        out[p.bf16()][0] = std::move(c), out[p.bf16()][1] = std::move(g);
      }
      if (weighted) continue;  // a weight is rounded to bf16 in bf16 mode, so fp32 mode is not its pre-rounding value
      EXPECT_TRUE(same_where_f32_agrees(out[0][0], out[0][1], out[1][0], out[1][1])) << "dim=" << dim;
    }
}

TEST_F(CudaOps, RopeMatchesCpuWithHostTables) {
  for (const Precision& p : {kF32, kBF16})
    for (int64_t hd : {2, 8, 256}) {
      const int64_t T = 7, heads = 3;
      const Mat x = random_mat(T, heads * hd, 5, 1.0f, p.bf16());
      Mat angle = random_mat(T, hd, 6, 3.0f), cos(T, hd), sin(T, hd);
      for (size_t i = 0; i < angle.v.size(); ++i) cos.v[i] = p.round(std::cos(angle.v[i])), sin.v[i] = p.round(std::sin(angle.v[i]));
      auto [c, g] = both(*cpu, *cuda, [&](Backend& b) {
        Tensor t = b.upload(x);
        b.rope(t, hd, b.upload(cos), b.upload(sin), p);
        return t;
      });
      // Each element is one product-sum of scalar_math's; both sides compute it identically.
      EXPECT_TRUE(bitwise_equal(c, g)) << "hd=" << hd << " bf16=" << p.bf16();
    }
}

AttentionMask make_mask(int64_t B, int64_t S, std::optional<int64_t> window, bool vision, uint32_t seed) {
  std::mt19937 rng(seed);
  AttentionMask m;
  m.batch = B, m.seq = S, m.window = window;
  m.key_is_real.assign(static_cast<size_t>(B * S), 1);
  // Row 1 is left-padded (its first queries see no key: zeros) and has a padded hole.
  if (B > 1)
    for (int64_t s = 0; s < std::min<int64_t>(S, 3); ++s) m.key_is_real[static_cast<size_t>(S + s)] = 0;
  if (B > 1 && S > 5) m.key_is_real[static_cast<size_t>(S + 5)] = 0;
  if (vision) {
    m.vision_group.assign(static_cast<size_t>(B * S), -1);
    for (int64_t s = 1; s < S && s < 5; ++s) m.vision_group[static_cast<size_t>(s)] = 0;  // a bidirectional span
    for (int64_t s = 5; s < S; ++s)  // scattered members of a second group, in row 0 only (row 1 keeps its masked query)
      if (rng() % 7 == 0) m.vision_group[static_cast<size_t>(s)] = 1;
  }
  return m;
}

TEST_F(CudaOps, AttentionMatchesCpuOverGqaWindowsPaddingAndMaskedQueries) {
  struct Heads {
    int64_t q, kv;
  };
  uint32_t seed = 10;
  for (const Precision& p : {kF32, kBF16})
    for (Heads h : {Heads{2, 2}, Heads{4, 2}, Heads{8, 1}})
      for (int64_t S : {1, 7, 33})
        for (std::optional<int64_t> window : {std::optional<int64_t>{}, std::optional<int64_t>{3}, std::optional<int64_t>{100}})
          for (bool vision : {false, true})
            for (int64_t hd : {8, 64}) {
              const int64_t B = 2;
              const AttentionMask mask = make_mask(B, S, window, vision, ++seed);
              const Mat q = random_mat(B * S, h.q * hd, seed * 3, 1.0f, p.bf16());
              const Mat k = random_mat(B * S, h.kv * hd, seed * 3 + 1, 1.0f, p.bf16());
              const Mat v = random_mat(B * S, h.kv * hd, seed * 3 + 2, 1.0f, p.bf16());
              auto run = [&](const Precision& pp) {
                return both(*cpu, *cuda, [&](Backend& b) { return b.attention(b.upload(q), b.upload(k), b.upload(v), h.q, h.kv, hd, mask, pp); });
              };
              auto [c, g] = run(p);
              const std::string where = "Hq=" + std::to_string(h.q) + " Hkv=" + std::to_string(h.kv) + " S=" + std::to_string(S) +
                                        " W=" + std::to_string(window.value_or(0)) + " vision=" + std::to_string(vision) +
                                        " hd=" + std::to_string(hd) + " bf16=" + std::to_string(p.bf16());
              EXPECT_TRUE(close(p, c, g)) << where;
              for (int64_t d = 0; d < h.q * hd; ++d) {  // row 1's first query sees no key
                ASSERT_EQ(g.row(S)[d], 0.0f) << where;
              }
              if (p.bf16()) {
                auto [c32, g32] = run(kF32);
                EXPECT_TRUE(same_where_f32_agrees(c32, g32, c, g)) << where;
              }
            }
}

TEST_F(CudaOps, ElementwiseOpsMatchCpu) {
  const int64_t R = 7, C = 769;
  for (const Precision& p : {kF32, kBF16}) {
    const Mat x = random_mat(R, C, 20, 6.0f, p.bf16()), y = random_mat(R, C, 21, 2.0f, p.bf16());
    const Mat col = random_mat(1, C, 22, 2.0f, p.bf16());
    const std::string mode = p.bf16() ? "bf16" : "fp32";
    struct Case {
      const char* name;
      std::function<void(Backend&, Tensor&)> op;
    };
    const std::vector<Case> cases = {
        {"gelu_tanh", [&](Backend& b, Tensor& t) { b.gelu_tanh(t, p); }},
        {"gelu_tanh_mul", [&](Backend& b, Tensor& t) { b.gelu_tanh_mul(t, b.upload(y), p); }},
        {"add", [&](Backend& b, Tensor& t) { b.add(t, b.upload(y), p); }},
        {"mul", [&](Backend& b, Tensor& t) { b.mul(t, b.upload(y), p); }},
        {"scale", [&](Backend& b, Tensor& t) { b.scale(t, 0.0883883476f, p); }},
        {"scale_columns", [&](Backend& b, Tensor& t) { b.scale_columns(t, b.upload(col), p); }},
        {"softcap", [&](Backend& b, Tensor& t) { b.softcap(t, 30.0f, p); }},
    };
    for (const Case& cs : cases) {
      auto [c, g] = both(*cpu, *cuda, [&](Backend& b) {
        Tensor t = b.upload(x);
        cs.op(b, t);
        return t;
      });
      // tanhf may differ from glibc's by an ulp or two; everything else is scalar_math's to the bit.
      EXPECT_TRUE(close(p, c, g)) << cs.name << " " << mode;
    }
  }
}

TEST_F(CudaOps, DataMovementIsExact) {
  const Mat x = random_mat(7, 769, 30);
  std::vector<int64_t> cols = {768, 0, 5, 5, 300};
  std::vector<int64_t> rows = {6, 0, 3, 3};
  const Mat part = random_mat(7, 3, 31);
  auto [c1, g1] = both(*cpu, *cuda, [&](Backend& b) { return b.select_columns(b.upload(x), cols); });
  EXPECT_TRUE(bitwise_equal(c1, g1));
  auto [c2, g2] = both(*cpu, *cuda, [&](Backend& b) {
    Tensor t = b.upload(x);
    b.write_columns(t, 766, b.upload(part));
    return t;
  });
  EXPECT_TRUE(bitwise_equal(c2, g2));
  auto [c3, g3] = both(*cpu, *cuda, [&](Backend& b) { return b.gather_rows(b.upload(x), rows); });
  EXPECT_TRUE(bitwise_equal(c3, g3));
  auto [c4, g4] = both(*cpu, *cuda, [&](Backend& b) {
    Tensor t = b.copy(b.upload(x));
    return t;
  });
  EXPECT_TRUE(bitwise_equal(c4, g4));
  auto [c5, g5] = both(*cpu, *cuda, [&](Backend& b) { return b.zeros(3, 5); });
  EXPECT_TRUE(bitwise_equal(c5, g5));
}

TEST_F(CudaOps, ScatterAddRowsAddsInOrderWithDistinctAndRepeatedRows) {
  for (const Precision& p : {kF32, kBF16}) {
    const Mat acc = random_mat(9, 769, 40, 4.0f, p.bf16());
    for (std::vector<int64_t> rows : {std::vector<int64_t>{8, 0, 3}, std::vector<int64_t>{2, 2, 7, 2, 0, 7}}) {
      const Mat y = random_mat(static_cast<int64_t>(rows.size()), 769, 41, 1.0f, p.bf16());
      std::vector<float> w(rows.size());
      for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1f + 0.37f * static_cast<float>(i);
      auto [c, g] = both(*cpu, *cuda, [&](Backend& b) {
        Tensor t = b.upload(acc);
        b.scatter_add_rows(t, b.upload(y), rows, w, p);
        return t;
      });
      EXPECT_TRUE(bitwise_equal(c, g)) << "rows " << rows.size() << " bf16=" << p.bf16();
    }
  }
}

TEST_F(CudaOps, ParameterRoundsPerPrecision) {
  const std::vector<float> v = {1.0f + 0x1p-9f, -3.3f, 0.0f};
  for (const Precision& p : {kF32, kBF16}) {
    const Mat c = cpu->download(cpu->parameter(v, p)), g = cuda->download(cuda->parameter(v, p));
    EXPECT_TRUE(bitwise_equal(c, g));
    EXPECT_EQ(g.v[0], p.round(v[0]));
  }
}

}  // namespace
}  // namespace g4::forward::testing
