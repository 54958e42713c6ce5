// Hand-computed cases for the op vocabulary and the mask/RoPE builders.
#include <cmath>

#include "forward/masks.h"
#include "forward/ops.h"
#include "forward/rope.h"
#include "forward/routing.h"
#include "test_support.h"

namespace g4::forward {
namespace {

const Precision kF32{ComputeMode::kF32};
const Precision kBF16{ComputeMode::kBF16};

Mat mat(int64_t r, int64_t c, std::vector<float> v) {
  Mat m(r, c);
  m.v = std::move(v);
  return m;
}

Tensor tensor(Backend& ops, int64_t r, int64_t c, std::vector<float> v) { return ops.upload(mat(r, c, std::move(v))); }
std::vector<float> values(Backend& ops, const Tensor& t) { return ops.download(t).v; }

TEST(Ops, RmsNormMultipliesByWeightNotOnePlusWeight) {
  auto ops = make_cpu_backend();
  Tensor x = tensor(*ops, 1, 2, {3.0f, 4.0f});  // mean square 12.5
  const Tensor w = ops->parameter({2.0f, 0.5f}, kF32);
  ops->rms_norm(x, &w, 2, 0.0f, kF32);
  const float inv = 1.0f / std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(values(*ops, x)[0], 3.0f * inv * 2.0f);  // (1 + w) would give 3·inv·3
  EXPECT_FLOAT_EQ(values(*ops, x)[1], 4.0f * inv * 0.5f);
  Tensor heads = tensor(*ops, 1, 4, {1, 1, 2, 2});  // two groups of 2: each normalises to ones
  ops->rms_norm(heads, nullptr, 2, 0.0f, kF32);
  for (float v : values(*ops, heads)) EXPECT_FLOAT_EQ(v, 1.0f);
}

TEST(Ops, LinearIsXTimesWTransposedAndLibrariesMatchLoopsInBothWeightTypes) {
  for (const Precision& p : {kF32, kBF16})
    for (bool libraries : {true, false}) {
      auto ops = make_cpu_backend(libraries);
      const Tensor x = tensor(*ops, 2, 3, {1, 2, 3, 4, 5, 6});
      const Tensor w = ops->weight(tensor(*ops, 2, 3, {1, 0, -1, 0.5f, 0.5f, 0.5f}), p);  // [out=2, in=3]
      EXPECT_EQ(w.dtype(), p.bf16() ? DType::kBF16 : DType::kF32);
      const Tensor out = ops->linear(x, w, p);
      EXPECT_EQ(out.rows(), 2);
      EXPECT_EQ(out.cols(), 2);
      EXPECT_EQ(values(*ops, out), (std::vector<float>{-2.0f, 3.0f, -2.0f, 7.5f})) << libraries << p.bf16();
    }
}

TEST(Ops, Bf16LinearMultipliesBf16WeightsExactlyAndAccumulatesInFp32) {
  // 1 + 2^-7 is a bf16 value; 1 + 2^-9 is not (the weight rounds to 1). Products are exact in fp32; the sum of 256
  // of them keeps bits a bf16 accumulator would lose, until the output is rounded (here: fp32 output asked).
  for (bool libraries : {true, false}) {
    auto ops = make_cpu_backend(libraries);
    const int64_t K = 256;
    const Tensor x = ops->upload(Mat(1, K)), w_host = ops->upload(Mat(2, K));
    for (int64_t k = 0; k < K; ++k) {
      x.f32()[k] = 1.0f + 1.0f / 128;
      w_host.f32()[k] = 1.0f + 1.0f / 128;
      w_host.f32()[K + k] = 1.0f + 1.0f / 512;
    }
    const Tensor w = ops->weight(w_host, kBF16);
    const std::vector<float> out = values(*ops, ops->linear(x, w, kF32));
    EXPECT_EQ(out[0], 256.0f * (1.0f + 1.0f / 128) * (1.0f + 1.0f / 128)) << libraries;
    EXPECT_EQ(out[1], 256.0f * (1.0f + 1.0f / 128)) << libraries;
    EXPECT_EQ(values(*ops, ops->linear(x, w, kBF16))[0], round_to_bf16(out[0])) << libraries;
  }
}

TEST(Ops, ProportionalRopeHasLiveFrequenciesOverTheFullHeadAndZeroTail) {
  gemma4::RopeParameters p{"proportional", 1e6, 0.25, std::nullopt};
  std::vector<float> inv = rope_inv_freq(p, 512);
  ASSERT_EQ(inv.size(), 256u);
  for (int i = 0; i < 64; ++i)  // denominator 512 (the full head), not 128 (the rotary width)
    EXPECT_FLOAT_EQ(inv[i], 1.0f / static_cast<float>(std::pow(1e6, 2.0 * i / 512.0))) << i;
  for (int i = 64; i < 256; ++i) EXPECT_EQ(inv[i], 0.0f) << i;
  gemma4::RopeParameters d{"default", 1e4, std::nullopt, std::nullopt};
  std::vector<float> def = rope_inv_freq(d, 256);
  EXPECT_EQ(def.size(), 128u);
  EXPECT_FLOAT_EQ(def[127], 1.0f / static_cast<float>(std::pow(1e4, 254.0 / 256.0)));
}

TEST(Ops, RopePairsJWithJPlusHalfAndLeavesZeroFrequencyPairsUnchanged) {
  // hd = 8 with two live frequencies (prf 0.5): pairs (0,4) and (1,5) rotate, (2,6) and (3,7) pass through.
  gemma4::RopeParameters p{"proportional", 100.0, 0.5, std::nullopt};
  std::vector<float> inv = rope_inv_freq(p, 8);
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_GT(inv[1], 0.0f);
  EXPECT_EQ(inv[2], 0.0f);
  Mat cos, sin;
  rope_tables(inv, {3}, kF32, cos, sin);
  auto ops = make_cpu_backend();
  Tensor xt = tensor(*ops, 1, 8, {1, 2, 3, 4, 5, 6, 7, 8});
  ops->rope(xt, 8, ops->upload(cos), ops->upload(sin), kF32);
  const Mat x = ops->download(xt);
  const float a0 = 3.0f * inv[0], a1 = 3.0f * inv[1];
  EXPECT_NEAR(x.v[0], 1 * std::cos(a0) - 5 * std::sin(a0), 1e-5);
  EXPECT_NEAR(x.v[4], 5 * std::cos(a0) + 1 * std::sin(a0), 1e-5);
  EXPECT_NEAR(x.v[1], 2 * std::cos(a1) - 6 * std::sin(a1), 1e-5);
  EXPECT_NEAR(x.v[5], 6 * std::cos(a1) + 2 * std::sin(a1), 1e-5);
  EXPECT_EQ(x.v[2], 3.0f);
  EXPECT_EQ(x.v[3], 4.0f);
  EXPECT_EQ(x.v[6], 7.0f);
  EXPECT_EQ(x.v[7], 8.0f);
}

TEST(Ops, RouterRenormalisesTheTopKThenAppliesPerExpertScale) {
  Mat logits = mat(1, 4, {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)});  // probs 0.1, 0.2, 0.3, 0.4
  Routing r = route(logits, 2, {1.0f, 1.0f, 10.0f, 0.5f});
  ASSERT_EQ(r.experts, (std::vector<int32_t>{3, 2}));
  // Renormalise first: 0.4/0.7 and 0.3/0.7, then scale. Scaling first would give 0.2/3.2 and 3/3.2.
  EXPECT_NEAR(r.weights[0], 0.4f / 0.7f * 0.5f, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.3f / 0.7f * 10.0f, 1e-5);
}

TEST(Ops, SoftcapIsAppliedOnce) {
  auto ops = make_cpu_backend();
  Tensor xt = tensor(*ops, 1, 3, {60.0f, -15.0f, 0.0f});
  ops->softcap(xt, 30.0f, kF32);
  const Mat x = ops->download(xt);
  EXPECT_NEAR(x.v[0], 30.0f * std::tanh(2.0f), 1e-5);  // 28.92; twice would be 22.4
  EXPECT_NEAR(x.v[1], 30.0f * std::tanh(-0.5f), 1e-5);
  EXPECT_EQ(x.v[2], 0.0f);
}

TEST(Ops, GeGluUsesTanhApproximation) {
  auto ops = make_cpu_backend();
  Tensor gt = tensor(*ops, 1, 2, {1.0f, -2.0f});
  ops->gelu_tanh_mul(gt, tensor(*ops, 1, 2, {2.0f, 1.0f}), kF32);
  const Mat g = ops->download(gt);
  auto gelu = [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); };
  EXPECT_NEAR(g.v[0], gelu(1.0) * 2.0, 1e-6);
  EXPECT_NEAR(g.v[1], gelu(-2.0), 1e-6);
}

TEST(Ops, Bf16ModeRoundsResults) {
  auto ops = make_cpu_backend();
  Tensor x = tensor(*ops, 1, 1, {1.0f});
  ops->scale(x, 1.0f + 1.0f / 512.0f, kBF16);  // 1.00195 is not a bf16 value
  EXPECT_EQ(values(*ops, x)[0], 1.0f);
}

TEST(Ops, AttentionUsesScaleOneGqaAndGivesZerosToAFullyMaskedQuery) {
  // B=1, S=2, two query heads sharing one KV head of size 1.
  auto ops = make_cpu_backend();
  const Tensor q = tensor(*ops, 2, 2, {1, 2, 1, 2}), k = tensor(*ops, 2, 1, {1, 3}), v = tensor(*ops, 2, 1, {10, 20});
  AttentionMask m = full_attention_mask({1, 2, {1, 1}, {}});  // q0 sees k0; q1 sees k0 and k1
  Mat out = ops->download(ops->attention(q, k, v, 2, 1, 1, m, kF32));
  EXPECT_FLOAT_EQ(out.v[0], 10.0f);  // query 0 sees only key 0
  const float p1 = 1.0f / (1.0f + std::exp(1.0f * 1 - 1.0f * 3));  // head 0: scores 1 and 3, scale 1.0
  EXPECT_NEAR(out.v[2], 10.0f * (1 - p1) + 20.0f * p1, 1e-5);
  const float p2 = 1.0f / (1.0f + std::exp(2.0f * 1 - 2.0f * 3));
  EXPECT_NEAR(out.v[3], 10.0f * (1 - p2) + 20.0f * p2, 1e-5);
  AttentionMask none = full_attention_mask({1, 2, {0, 0}, {}});  // every key is padding
  out = ops->download(ops->attention(q, k, v, 2, 1, 1, none, kF32));
  for (float o : out.v) EXPECT_EQ(o, 0.0f);
}

MaskInputs inputs(int64_t S, std::vector<uint8_t> real = {}, std::vector<int64_t> types = {}) {
  MaskInputs in{1, S, real.empty() ? std::vector<uint8_t>(static_cast<size_t>(S), 1) : real, {}};
  if (!types.empty()) in.vision_group = vision_groups(types, 1, S);
  return in;
}

TEST(Masks, SlidingWindowSeesItselfAndWMinusOneEarlierTokens) {
  AttentionMask m = sliding_attention_mask(inputs(8), 4);
  for (int k = 0; k < 8; ++k) EXPECT_EQ(m.at(0, 5, k), k >= 2 && k <= 5) << k;
  AttentionMask full = full_attention_mask(inputs(8));
  for (int k = 0; k < 8; ++k) EXPECT_EQ(full.at(0, 5, k), k <= 5) << k;
}

TEST(Masks, PaddingMasksKeysOnly) {
  AttentionMask m = full_attention_mask(inputs(4, {1, 1, 0, 0}));
  EXPECT_TRUE(m.at(0, 3, 1));
  EXPECT_FALSE(m.at(0, 3, 2));
  EXPECT_FALSE(m.at(0, 3, 3));
}

TEST(Masks, VisionGroupsAreBidirectionalOnSlidingLayersOnlyAndStillWindowed) {
  // types: text, image×5 (positions 1-5), text, video×2 (7-8); window 3.
  std::vector<int64_t> tt = {0, 1, 1, 1, 1, 1, 0, 2, 2};
  MaskInputs in = inputs(9, {}, tt);
  EXPECT_EQ(in.vision_group, (std::vector<int64_t>{-1, 0, 0, 0, 0, 0, -1, 1, 1}));
  AttentionMask sliding = sliding_attention_mask(in, 3);
  EXPECT_TRUE(sliding.at(0, 1, 3)) << "image token sees a later token of its own run";
  EXPECT_FALSE(sliding.at(0, 1, 6)) << "but not text after the run";
  EXPECT_FALSE(sliding.at(0, 5, 1)) << "the window still applies inside a long run (k > q - W)";
  EXPECT_TRUE(sliding.at(0, 7, 8));
  EXPECT_FALSE(sliding.at(0, 5, 7)) << "separate runs are separate groups";
  AttentionMask full = full_attention_mask(in);
  EXPECT_FALSE(full.at(0, 1, 3)) << "full-attention layers stay causal";
}

}  // namespace
}  // namespace g4::forward
