// verify against planted conversion and forward bugs (issue 5): each is caught (verify fails) and pinned to the
// layer and sub-block where it starts. The clean conversions pass in fp32 and bf16.
#include <cmath>

#include <gtest/gtest.h>

#include "convert/hf2mcore.h"
#include "faulty_backend.h"
#include "forward/forward_input.h"
#include "mcore_edit.h"
#include "test_support.h"
#include "verify/verify.h"

namespace g4::verify {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

const char* kIds = "2,17,99,3,55,23,11,7,42,64,5,31,88,19,73,26";

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

class PlantedBug : public ::testing::Test {
 protected:
  // Converts `name` into the scratch dir and returns the Megatron checkpoint's path.
  fs::path convert(const std::string& name) {
    convert::Hf2McoreOptions o;
    o.hf = tiny(name);
    o.out = dir_ / name;
    EXPECT_TRUE(convert::hf2mcore(o).ok());
    return o.out;
  }
  VerifyReport run(const std::string& name, const fs::path& mcore, forward::ComputeMode mode = forward::ComputeMode::kF32,
                   planted::FaultInjection faults = {}) {
    auto hf = forward::HfWeights::open(tiny(name));
    auto mc = forward::McoreWeights::open(mcore);
    auto in = forward::forward_input_from_ids(kIds);
    EXPECT_TRUE(hf.ok() && mc.ok() && in.ok());
    auto backend = forward::make_cpu_backend(true);
    planted::FaultyBackend faulty(*backend, faults);
    VerifyOptions o;
    o.mode = mode;
    o.thresholds.block_rel_err = mode == forward::ComputeMode::kBF16 ? 1e-2 : 1e-5;
    o.megatron_backend = &faulty;
    auto r = verify(*hf, *mc, *in, *backend, o);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : VerifyReport{};
  }
  static void expect_caught(const VerifyReport& r, int layer, const std::string& block) {
    EXPECT_FALSE(r.passed);
    ASSERT_TRUE(r.first_divergent_layer.has_value());
    EXPECT_EQ(*r.first_divergent_layer, layer);
    EXPECT_EQ(r.first_divergent_block, block);
  }
  ScratchDir dir_;
};

constexpr const char* kSlidingQkv = "language_model.decoder.layers.self_attention_sliding.linear_qkv.weight";
constexpr int64_t H = 64, kNq = 4, kNg = 2, kHd = 32;  // tiny-26b-a4b sliding geometry

TEST_F(PlantedBug, CleanConversionsPassInFp32AndBf16) {
  for (const char* name : {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"}) {
    const fs::path m = convert(name);
    for (auto mode : {forward::ComputeMode::kF32, forward::ComputeMode::kBF16}) {
      const VerifyReport r = run(name, m, mode);
      EXPECT_TRUE(r.passed) << name << ": " << (r.failures.empty() ? "" : r.failures[0]);
      EXPECT_FALSE(r.first_divergent_layer.has_value()) << name;
      for (const auto& l : r.logits) EXPECT_TRUE(l.top1_agrees);
    }
  }
}

TEST_F(PlantedBug, KAndVRowsSwappedInOneLayerIsAttention) {
  const fs::path m = convert("tiny-26b-a4b");
  // Layer 1 is the second sliding layer; group 0 is [q (2 heads), k, v].
  testing::edit_mcore_param(m, kSlidingQkv, {1}, {(kNq + 2 * kNg) * kHd, H}, [](std::vector<float>& w) {
    const int64_t k0 = 2 * kHd * H, v0 = 3 * kHd * H;
    for (int64_t i = 0; i < kHd * H; ++i) std::swap(w[k0 + i], w[v0 + i]);
  });
  expect_caught(run("tiny-26b-a4b", m), 1, "attention");
}

TEST_F(PlantedBug, QkvInterleavedWithTheWrongGroupCountIsAttention) {
  const fs::path m = convert("tiny-26b-a4b");
  // Layer 3 (sliding rank 2) packed as if it had one query group: [all q; all k; all v].
  testing::edit_mcore_param(m, kSlidingQkv, {2}, {(kNq + 2 * kNg) * kHd, H}, [](std::vector<float>& w) {
    std::vector<float> q, k, v;
    const int64_t per = kNq / kNg * kHd;
    for (int64_t g = 0; g < kNg; ++g) {
      const float* group = w.data() + g * (per + 2 * kHd) * H;
      q.insert(q.end(), group, group + per * H);
      k.insert(k.end(), group + per * H, group + (per + kHd) * H);
      v.insert(v.end(), group + (per + kHd) * H, group + (per + 2 * kHd) * H);
    }
    std::vector<float> packed = q;
    packed.insert(packed.end(), k.begin(), k.end());
    packed.insert(packed.end(), v.begin(), v.end());
    w = packed;
  });
  expect_caught(run("tiny-26b-a4b", m), 3, "attention");
}

TEST_F(PlantedBug, LayerScalarDroppedIsScalar) {
  const fs::path m = convert("tiny-26b-a4b");
  testing::edit_mcore_param(m, "language_model.decoder.layers.layer_scalar", {2}, {1}, [](std::vector<float>& w) { w[0] = 1.0f; });
  expect_caught(run("tiny-26b-a4b", m), 2, "scalar");
}

TEST_F(PlantedBug, DenseMlpAndExpertPreNormsSwappedIsMlp) {
  const fs::path m = convert("tiny-26b-a4b");
  std::vector<float> experts_norm, shared_norm;
  const std::string a = "language_model.decoder.layers.pre_mlp_layernorm.weight", b = "language_model.decoder.layers.pre_shared_expert_layernorm.weight";
  testing::edit_mcore_param(m, a, {4}, {H}, [&](std::vector<float>& w) { experts_norm = w; });
  testing::edit_mcore_param(m, b, {4}, {H}, [&](std::vector<float>& w) { shared_norm = w; w = experts_norm; });
  testing::edit_mcore_param(m, a, {4}, {H}, [&](std::vector<float>& w) { w = shared_norm; });
  expect_caught(run("tiny-26b-a4b", m), 4, "mlp");
}

TEST_F(PlantedBug, RouterScaleFoldedIntoTheRouterWeightInBf16IsRouter) {
  const fs::path m = convert("tiny-26b-a4b");
  std::vector<float> scale;
  testing::edit_mcore_param(m, "language_model.decoder.layers.mlp.router.scale", {0}, {H}, [&](std::vector<float>& s) {
    scale = s;
    std::fill(s.begin(), s.end(), 1.0f);
  });
  // w · diag(scale), rounded to bf16 on write-back: the historical lossy fusion (pitfalls.md P22).
  testing::edit_mcore_param(m, "language_model.decoder.layers.mlp.router.weight", {0}, {6, H}, [&](std::vector<float>& w) {
    for (size_t i = 0; i < w.size(); ++i) w[i] *= scale[i % H];
  });
  expect_caught(run("tiny-26b-a4b", m), 0, "router");
}

TEST_F(PlantedBug, RopeOnTheFirstDimsOfFullLayersIsAttentionAtTheFirstFullLayer) {
  const fs::path m = convert("tiny-26b-a4b");
  planted::FaultInjection f;
  f.rope_first_dims = true;
  expect_caught(run("tiny-26b-a4b", m, forward::ComputeMode::kF32, f), 2, "attention");
}

TEST_F(PlantedBug, SoftcapSkippedOrAppliedTwiceIsTheHead) {
  const fs::path m = convert("tiny-31b");
  for (int times : {0, 2}) {
    planted::FaultInjection f;
    f.softcap_times = times;
    const VerifyReport r = run("tiny-31b", m, forward::ComputeMode::kF32, f);
    expect_caught(r, static_cast<int>(r.layers.size()), "head");
  }
}

TEST_F(PlantedBug, SlidingWindowOffByOneIsAttentionAtTheFirstSlidingLayer) {
  const fs::path m = convert("tiny-e4b");
  for (int delta : {-1, 1}) {
    planted::FaultInjection f;
    f.sliding_window_delta = delta;
    expect_caught(run("tiny-e4b", m, forward::ComputeMode::kF32, f), 0, "attention");
  }
}

TEST_F(PlantedBug, GateAndUpSwappedInFc1IsMlp) {
  const fs::path m = convert("tiny-31b");
  // tiny-31b: H 64, intermediate 96; swap the halves of layer 3's fc1.
  testing::edit_mcore_param(m, "language_model.decoder.layers.mlp.linear_fc1.weight", {3}, {192, H}, [](std::vector<float>& w) {
    for (int64_t i = 0; i < 96 * H; ++i) std::swap(w[i], w[96 * H + i]);
  });
  expect_caught(run("tiny-31b", m), 3, "mlp");
}

TEST_F(PlantedBug, OneExpertDuplicatedIntoAnotherIsExperts) {
  const fs::path m = convert("tiny-26b-a4b");
  // Every expert of layer 0 that the input routes to gets expert 0's weights except expert 0 itself: at least
  // one routed expert changes whatever the routing is.
  for (const char* fc : {"linear_fc1", "linear_fc2"}) {
    const std::string key = std::string("language_model.decoder.layers.mlp.experts.experts.") + fc + ".weight";
    const Shape shape = std::string(fc) == "linear_fc1" ? Shape{6, 32, H} : Shape{6, H, 16};
    testing::edit_mcore_param(m, key, {0}, shape, [&](std::vector<float>& w) {
      const size_t per = w.size() / 6;
      for (int e = 1; e < 6; ++e) std::copy(w.begin(), w.begin() + static_cast<long>(per), w.begin() + static_cast<long>(e * per));
    });
  }
  expect_caught(run("tiny-26b-a4b", m), 0, "experts");
}

}  // namespace
}  // namespace g4::verify
