// Inputs too large for a run are refused up front with the limit named (check_fits), masks cost O(B·S) memory
// instead of B·S², and a deeply nested input JSON is refused at parse time.
#include <algorithm>
#include <string>

#include "forward/forward_input.h"
#include "forward/hf_model.h"
#include "forward/masks.h"
#include "forward/model_common.h"
#include "test_support.h"

namespace g4::forward {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path testdata(const std::string& name) { return testing::source_dir() / "testdata" / name; }

ForwardInput tokens(int64_t seq) {
  ForwardInput in;
  in.batch = 1;
  in.seq = seq;
  in.input_ids.assign(static_cast<size_t>(seq), 2);
  in.attention_mask.assign(static_cast<size_t>(seq), 1);
  for (int64_t s = 0; s < seq; ++s) in.position_ids.push_back(s);
  return in;
}

TEST(ForwardLimits, MasksOf300kTokensArePerTokenNotPerPair) {
  // A [B, S, S] table would be 90 GB here (std::bad_alloc before the fix).
  const int64_t S = 300'000;
  MaskInputs in{1, S, std::vector<uint8_t>(static_cast<size_t>(S), 1), {}};
  in.key_is_real[static_cast<size_t>(S - 2)] = 0;
  AttentionMask sliding = sliding_attention_mask(in, 512), full = full_attention_mask(in);
  EXPECT_TRUE(sliding.at(0, S - 1, S - 512));
  EXPECT_FALSE(sliding.at(0, S - 1, S - 513)) << "outside the window";
  EXPECT_FALSE(sliding.at(0, S - 1, S - 2)) << "padding key";
  EXPECT_TRUE(full.at(0, S - 1, 0));
  EXPECT_FALSE(full.at(0, 0, 1)) << "causal";
}

TEST(ForwardLimits, RowsLongerThanTheContextAreRefusedBeforeAnyAllocation) {
  auto w = HfWeights::open(testdata("tiny-31b"));
  ASSERT_OK(w);
  auto backend = make_cpu_backend();
  ForwardOptions o;
  o.backend = backend.get();
  auto r = hf_forward(*w, tokens(300'000), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "input rows have 300000 tokens, more than the model's context (max_position_embeddings 262144)");
}

TEST(ForwardLimits, ActivationsAboveTheMemoryLimitAreRefusedNamingTheLimit) {
  auto w = HfWeights::open(testdata("tiny-26b-a4b"));
  ASSERT_OK(w);
  auto backend = make_cpu_backend();
  ForwardOptions o;
  o.backend = backend.get();
  const ForwardInput in = tokens(4096);
  const double need = forward_activation_bytes(w->config().text, in, o);
  o.memory_limit = static_cast<uint64_t>(need / 2);
  auto r = hf_forward(*w, in, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input of 1 × 4096 tokens needs about "), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(" limit (activations grow with tokens"), std::string::npos) << r.status().message();
  o.memory_limit = static_cast<uint64_t>(need * 2);
  EXPECT_OK(hf_forward(*w, tokens(16), o));  // well under the limit
}

TEST(ForwardLimits, DeeplyNestedInputJsonIsRefusedNamingTheFile) {
  const std::string deep = "{\"input_ids\": " + std::string(100'000, '[') + "1" + std::string(100'000, ']') + "}";
  auto in = parse_forward_input(deep, "deep/input.json");
  ASSERT_FALSE(in.ok());
  EXPECT_EQ(in.status().message().rfind("deep/input.json: JSON nests deeper than 64 levels", 0), 0u) << in.status().message();
}

TEST(ForwardLimits, TheCliRefuses300kTokensWithOneLine) {
  ScratchDir dir;
  std::string ids;
  for (int k = 0; k < 300'000; ++k) ids += k ? ",2" : "2";
  testing::write_bytes(dir / "long.json", "{\"input_ids\": [[" + ids + "]]}");
  std::string out;
  EXPECT_EQ(testing::run_g4convert("forward --quiet --hf " + testdata("tiny-31b").string() + " --input " +
                                       (dir / "long.json").string(), &out),
            2)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("max_position_embeddings 262144"), std::string::npos) << out;
}

}  // namespace
}  // namespace g4::forward
