// The grouped expert op on the GPU against the CPU (routing on the host, experts in ascending order, ordered
// scatter-add), and determinism: the same ops twice in one process give bitwise-equal results. Skipped without a GPU.
#include <set>

#include "cuda/cuda_test_support.h"
#include "forward/routing.h"

namespace g4::forward::testing {
namespace {

using CudaExperts = CudaVsCpu;

class HostExperts final : public ExpertWeights {
 public:
  HostExperts(Backend& b, const Precision& p, int64_t E, int64_t H, int64_t I, DType stored) : b_(b), p_(p) {
    for (int64_t e = 0; e < E; ++e) {
      gate_up_.push_back(host_tensor(random_mat(2 * I, H, 100 + static_cast<uint32_t>(e), 0.2f, true), stored));
      down_.push_back(host_tensor(random_mat(H, I, 200 + static_cast<uint32_t>(e), 0.2f, true), stored));
    }
  }
  Result<Tensor> gate_up(int64_t e) override {
    ++reads_;
    return b_.weight(gate_up_[static_cast<size_t>(e)], p_);
  }
  Result<Tensor> down(int64_t e) override { return b_.weight(down_[static_cast<size_t>(e)], p_); }
  int reads_ = 0;

 private:
  Backend& b_;
  const Precision& p_;
  std::vector<Tensor> gate_up_, down_;
};

Routing some_routing(int64_t T, int64_t E, int64_t K) {
  Mat logits = random_mat(T, E, 300, 3.0f);
  for (int64_t t = 0; t < T; ++t) logits.row(t)[E - 1] = -1e4f;  // one expert nobody picks: never read
  std::vector<float> scale(static_cast<size_t>(E));
  for (size_t e = 0; e < scale.size(); ++e) scale[e] = 0.5f + 0.1f * static_cast<float>(e);
  return route(logits, K, scale);
}

TEST_F(CudaExperts, GroupedExpertOpMatchesCpuInBothModes) {
  const int64_t T = 13, H = 33, I = 7, E = 6, K = 2;
  const Routing r = some_routing(T, E, K);
  for (const Precision& p : {kF32, kBF16}) {
    const Mat x = random_mat(T, H, 301, 1.0f, p.bf16());
    HostExperts wc(*cpu, p, E, H, I, DType::kBF16), wg(*cuda, p, E, H, I, DType::kBF16);
    auto c = cpu->experts(cpu->upload(x), r, wc, H, p);
    auto g = cuda->experts(cuda->upload(x), r, wg, H, p);
    ASSERT_TRUE(c.ok() && g.ok());
    EXPECT_TRUE(close(p, cpu->download(*c), cuda->download(*g))) << "bf16=" << p.bf16();
    const std::set<int32_t> picked(r.experts.begin(), r.experts.end());
    ASSERT_EQ(picked.count(static_cast<int32_t>(E - 1)), 0u);
    EXPECT_EQ(wg.reads_, static_cast<int>(picked.size()));  // unpicked experts are never read
  }
}

TEST_F(CudaExperts, TwoRunsInOneProcessAreBitwiseEqual) {
  const int64_t T = 13, H = 33, I = 7, E = 6, K = 2;
  const Routing r = some_routing(T, E, K);
  for (const Precision& p : {kF32, kBF16}) {
    const Mat x = random_mat(T, H, 302, 1.0f, p.bf16());
    const Mat q = random_mat(2 * 33, 4 * 64, 303, 1.0f, p.bf16()), kv = random_mat(2 * 33, 2 * 64, 304, 1.0f, p.bf16());
    AttentionMask mask;
    mask.batch = 2, mask.seq = 33, mask.key_is_real.assign(66, 1), mask.window = 5;
    const Tensor w = host_tensor(random_mat(769, 33, 305, 0.1f, true), DType::kBF16);
    auto run = [&] {
      HostExperts we(*cuda, p, E, H, I, DType::kF32);
      std::vector<Mat> out;
      out.push_back(cuda->download(*cuda->experts(cuda->upload(x), r, we, H, p)));
      out.push_back(cuda->download(cuda->attention(cuda->upload(q), cuda->upload(kv), cuda->upload(kv), 4, 2, 64, mask, p)));
      out.push_back(cuda->download(cuda->linear(cuda->upload(x), cuda->weight(w, p), p)));
      return out;
    };
    const auto a = run(), b = run();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "output " << i << " bf16=" << p.bf16();
  }
}

}  // namespace
}  // namespace g4::forward::testing
