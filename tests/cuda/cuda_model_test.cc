// Whole models on the CUDA backend (issue 12's GPU proof beside the op tests and the goldens on --device cuda):
// two forwards in one process are bit-identical, logits and every residual agree with the CPU backend, and
// verify passes on every tiny preset in both modes. Every test skips, visibly, without a GPU.
#include <cmath>

#include "convert/hf2mcore.h"
#include "cuda/cuda_test_support.h"
#include "forward/forward_input.h"
#include "forward/hf_model.h"
#include "test_support.h"
#include "verify/verify.h"

namespace g4::forward {
namespace {
namespace fs = std::filesystem;

const char* kIds = "2,17,99,3,55,23,11,7,42,64,5,31,88,19,73,26";
const char* kTiny[] = {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b", "tiny-e4b-vla", "tiny-26b-a4b-vl"};

fs::path tiny(const std::string& name) { return g4::testing::source_dir() / "testdata" / name; }

Result<ForwardResult> forward_on(Backend& backend, const std::string& name, ComputeMode mode) {
  G4_ASSIGN_OR_RETURN(HfWeights w, HfWeights::open(tiny(name)));
  G4_ASSIGN_OR_RETURN(ForwardInput in, forward_input_from_ids(kIds));
  ForwardOptions o;
  o.mode = mode;
  o.backend = &backend;
  o.all_logits = true;
  o.keep_hidden = true;
  return hf_forward(w, in, o);
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

using CudaModel = testing::CudaVsCpu;

TEST_F(CudaModel, TwoForwardsInOneProcessAreBitIdentical) {
  for (const char* name : {"tiny-26b-a4b", "tiny-e2b"})
    for (ComputeMode mode : {ComputeMode::kF32, ComputeMode::kBF16}) {
      auto a = forward_on(*cuda, name, mode), b = forward_on(*cuda, name, mode);
      ASSERT_OK(a);
      ASSERT_OK(b);
      EXPECT_EQ(a->logits.v, b->logits.v) << name;
      for (size_t l = 0; l < a->hidden.size(); ++l) EXPECT_EQ(a->hidden[l].v, b->hidden[l].v) << name << " hidden." << l;
    }
}

TEST_F(CudaModel, LogitsAndResidualsAgreeWithTheCpuBackendInFp32) {
  for (const char* name : kTiny) {
    auto g = forward_on(*cuda, name, ComputeMode::kF32), c = forward_on(*cpu, name, ComputeMode::kF32);
    ASSERT_OK(g);
    ASSERT_OK(c);
    EXPECT_GE(cosine(g->logits.v, c->logits.v), 0.999999) << name;
    ASSERT_EQ(g->hidden.size(), c->hidden.size());
    for (size_t l = 0; l < g->hidden.size(); ++l) EXPECT_GE(cosine(g->hidden[l].v, c->hidden[l].v), 0.999999) << name << " hidden." << l;
  }
}

TEST_F(CudaModel, VerifyPassesOnEveryTinyPresetInBothModes) {
  g4::testing::ScratchDir dir;
  for (const char* name : kTiny) {
    convert::Hf2McoreOptions c;
    c.hf = tiny(name);
    c.out = dir / name;
    ASSERT_TRUE(convert::hf2mcore(c).ok()) << name;
    auto hf = HfWeights::open(tiny(name));
    auto mc = McoreWeights::open(dir / name);
    auto in = forward_input_from_ids(kIds);
    ASSERT_OK(hf);
    ASSERT_OK(mc);
    ASSERT_OK(in);
    for (ComputeMode mode : {ComputeMode::kF32, ComputeMode::kBF16}) {
      verify::VerifyOptions o;
      o.mode = mode;
      o.thresholds.block_rel_err = mode == ComputeMode::kBF16 ? 1e-2 : 1e-5;
      auto r = verify::verify(*hf, *mc, *in, *cuda, o);
      ASSERT_OK(r);
      EXPECT_TRUE(r->passed) << name << ": " << (r->failures.empty() ? "" : r->failures[0]);
      EXPECT_EQ(r->backend.rfind("cuda", 0), 0u) << r->backend;
    }
  }
}

}  // namespace
}  // namespace g4::forward
