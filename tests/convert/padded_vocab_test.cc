// Megatron-Bridge's vocabulary padding (issue 10): the word embedding and an untied output layer stored with
// more rows than the vocabulary. Every reader takes the vocabulary's rows: zero padding exports the original
// bytes exactly; nonzero padding rows are a warning of mcore2hf naming checkpoint, tensor, count and first row
// (a refusal of the forward); fewer rows, other row dims, or a padded per-layer embedding (which MB does not
// pad) are errors naming the tensor.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_edit.h"
#include "convert/hf2mcore.h"
#include "convert/mcore2hf.h"
#include "convert/roundtrip.h"
#include "forward/forward_input.h"
#include "forward/hf_weights.h"
#include "forward/mcore_weights.h"
#include "inspect/hf_inspect.h"
#include "mcore_edit.h"
#include "test_support.h"
#include "verify/verify.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

fs::path convert_to_mcore(const fs::path& hf, const fs::path& out) {
  Hf2McoreOptions o;
  o.hf = hf;
  o.out = out;
  EXPECT_OK(hf2mcore(o));
  return out / "iter_0000000";
}

// Replaces `key` (a [V, C] tensor) by [V + rows, C]: the original rows, then zeros; `poison` lists padding rows
// (counted from the first padding row) given a nonzero element.
void pad_rows(const fs::path& iter, const std::string& key, int64_t rows, const std::vector<int64_t>& poison = {}, int64_t columns = -1) {
  std::vector<float> values = testing::read_mcore_tensor(iter, key);
  auto ckpt = dcp::Checkpoint::open(iter);
  ASSERT_OK(ckpt);
  const Shape shape = (*ckpt)->find(key)->shape;
  const DType dtype = (*ckpt)->find(key)->dtype;
  ckpt->reset();
  const int64_t V = shape[0], C = shape[1], out_c = columns < 0 ? C : columns;
  std::vector<float> out(static_cast<size_t>((V + rows) * out_c), 0.0f);
  for (int64_t r = 0; r < V; ++r)
    for (int64_t c = 0; c < std::min(C, out_c); ++c) out[static_cast<size_t>(r * out_c + c)] = values[static_cast<size_t>(r * C + c)];
  for (int64_t p : poison) out[static_cast<size_t>((V + p) * out_c + 3)] = 0.5f;
  testing::replace_mcore_tensor(iter, key, dtype, {V + rows, out_c}, out);
}

Result<ConvertSummary> export_hf(const fs::path& mcore, const fs::path& out, std::optional<fs::path> reference = std::nullopt) {
  Mcore2HfOptions o;
  o.mcore = mcore;
  o.out = out;
  o.reference_hf = reference;
  return mcore2hf(o);
}

void expect_identical(const fs::path& original, const fs::path& converted) {
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(original, converted, report));
  EXPECT_TRUE(report.identical()) << (report.tensor_differences.empty() ? report.config_differences[0].item
                                                                        : report.tensor_differences[0].item + ": " +
                                                                              report.tensor_differences[0].roundtripped);
}

const std::string kEmbedding = "language_model.embedding.word_embeddings.weight";

TEST(PaddedVocab, ZeroPaddingRowsExportTheOriginalBytesExactlyWithoutWarningAndVerifyAndInspectPass) {
  ScratchDir dir;
  const fs::path iter = convert_to_mcore(tiny("tiny-31b"), dir / "m");
  pad_rows(iter, kEmbedding, 128);  // [128, 64] stored as [256, 64], as Megatron-Bridge pads
  auto summary = export_hf(dir / "m", dir / "hf");
  ASSERT_OK(summary);
  EXPECT_TRUE(summary->warnings.empty()) << summary->warnings[0];
  expect_identical(tiny("tiny-31b"), dir / "hf");
  auto r = inspect_mcore(dir / "m", {false, nullptr});
  ASSERT_OK(r);
  EXPECT_TRUE(r->problems.empty()) << r->problems[0].message;
  auto hf = forward::HfWeights::open(tiny("tiny-31b"));
  auto mc = forward::McoreWeights::open(dir / "m");
  auto in = forward::forward_input_from_ids("2,17,99,3,55,23,11,7");
  ASSERT_OK(hf);
  ASSERT_OK(mc);
  ASSERT_OK(in);
  auto backend = forward::make_cpu_backend(true);
  auto v = verify::verify(*hf, *mc, *in, *backend, {});
  ASSERT_OK(v);
  EXPECT_TRUE(v->passed) << (v->failures.empty() ? "" : v->failures[0]);
}

TEST(PaddedVocab, NonzeroPaddingRowsAreAWarningNamingCheckpointTensorCountAndFirstRowAndTheVocabRowsStayExact) {
  ScratchDir dir;
  const fs::path iter = convert_to_mcore(tiny("tiny-31b"), dir / "m");
  pad_rows(iter, kEmbedding, 128, {77, 3, 120});
  auto summary = export_hf(dir / "m", dir / "hf");
  ASSERT_OK(summary);
  ASSERT_EQ(summary->warnings.size(), 1u);
  const std::string& w = summary->warnings[0];
  EXPECT_NE(w.find(iter.string()), std::string::npos) << w;
  EXPECT_NE(w.find("'" + kEmbedding + "' is stored with 256 rows for a vocabulary of 128: 3 padding rows are not zero (the first: row 131)"),
            std::string::npos) << w;
  expect_identical(tiny("tiny-31b"), dir / "hf");
  // The CLI prints it as a warning; inspect lists it; the forward refuses with one line.
  std::string out;
  EXPECT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "hf2").string(), &out), 0) << out;
  EXPECT_NE(out.find("g4convert: warning: " + iter.string()), std::string::npos) << out;
  auto r = inspect_mcore(dir / "m", {false, nullptr});
  ASSERT_OK(r);
  ASSERT_EQ(r->problems.size(), 1u);
  EXPECT_EQ(r->problems[0].kind, "vocab-padding");
  EXPECT_EQ(testing::run_g4convert("verify --hf " + tiny("tiny-31b").string() + " --mcore " + (dir / "m").string(), &out), 2) << out;
  EXPECT_NE(out.find("3 padding rows are not zero (the first: row 131)"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(PaddedVocab, FewerRowsThanTheVocabularyOrAnotherHiddenSizeIsAnErrorNamingTheTensor) {
  for (int64_t columns : {64, 32}) {
    SCOPED_TRACE(columns);
    ScratchDir dir;
    const fs::path iter = convert_to_mcore(tiny("tiny-31b"), dir / "m");
    if (columns == 64) {
      std::vector<float> values = testing::read_mcore_tensor(iter, kEmbedding);
      values.resize(100 * 64);
      testing::replace_mcore_tensor(iter, kEmbedding, DType::kBF16, {100, 64}, values);
    } else {
      pad_rows(iter, kEmbedding, 128, {}, columns);
    }
    auto summary = export_hf(dir / "m", dir / "hf");
    ASSERT_FALSE(summary.ok());
    const std::string implied = "'" + kEmbedding + "' has shape " + (columns == 64 ? "[100, 64]" : "[256, 32]") +
                                ", the config implies [128, 64] (or more rows: vocabulary padding)";
    EXPECT_NE(summary.status().message().find(implied), std::string::npos) << summary.status().message();
    EXPECT_FALSE(fs::exists(dir / "hf"));
    std::string out;
    EXPECT_EQ(testing::run_g4convert("forward --mcore " + (dir / "m").string() + " --ids 2,17,99", &out), 2) << out;
    EXPECT_NE(out.find(implied), std::string::npos) << out;
  }
}

// tiny-31b with an untied head: lm_head.weight of its own.
fs::path untied_tiny_31b(const fs::path& dst) {
  std::vector<testing::Tensor> extra;
  testing::copy_checkpoint(tiny("tiny-31b"), dst, [&](testing::Tensor& t) {
    if (t.spec.name == "model.language_model.embed_tokens.weight") {
      testing::Tensor head = t;
      head.spec.name = "lm_head.weight";
      for (size_t b = 0; b < head.bytes.size(); b += 2) head.bytes[b] ^= 0x5;  // a head unlike the embedding
      extra.push_back(head);
    }
    return true;
  });
  // copy_checkpoint appends `extra` only when given up front: write the head in a second pass.
  const fs::path with_head = dst.string() + "-head";
  testing::copy_checkpoint(dst, with_head, [](testing::Tensor&) { return true; }, extra);
  std::ifstream in(with_head / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["tie_word_embeddings"] = false;
  j["text_config"]["tie_word_embeddings"] = false;
  testing::write_bytes(with_head / "config.json", j.dump(2));
  return with_head;
}

TEST(PaddedVocab, AnUntiedOutputLayerPaddedLikeTheEmbeddingExportsExactlyAndNonzeroPaddingIsReported) {
  ScratchDir dir;
  const fs::path hf = untied_tiny_31b(dir / "untied");
  const fs::path iter = convert_to_mcore(hf, dir / "m");
  const std::string head = "language_model.output_layer.weight";
  pad_rows(iter, kEmbedding, 128);
  pad_rows(iter, head, 128);
  auto summary = export_hf(dir / "m", dir / "hf");
  ASSERT_OK(summary);
  EXPECT_TRUE(summary->warnings.empty()) << summary->warnings[0];
  expect_identical(hf, dir / "hf");
  auto r = inspect_mcore(dir / "m", {false, nullptr});  // both padded tensors pass the shape check
  ASSERT_OK(r);
  EXPECT_TRUE(r->problems.empty()) << r->problems[0].message;
  testing::edit_mcore_param(iter, head, {}, {256, 64}, [](std::vector<float>& v) { v[130 * 64 + 3] = 0.5f; });
  auto again = export_hf(dir / "m", dir / "hf2");
  ASSERT_OK(again);
  ASSERT_EQ(again->warnings.size(), 1u);
  EXPECT_NE(again->warnings[0].find("'" + head + "' is stored with 256 rows for a vocabulary of 128: 1 padding row is not zero (the first: row 130)"),
            std::string::npos) << again->warnings[0];
}

// Megatron-Bridge builds the per-layer embedding with the unpadded vocab_size_per_layer_input
// (modeling_gemma4._attach_ple_modules): a padded one is not its checkpoint and is refused.
TEST(PaddedVocab, APaddedPerLayerEmbeddingIsRefusedNamingTheTensorSinceMegatronBridgeDoesNotPadIt) {
  ScratchDir dir;
  const fs::path iter = convert_to_mcore(tiny("tiny-e4b"), dir / "m");
  const std::string ple = "language_model.per_layer_embedding.weight";
  pad_rows(iter, ple, 128);
  auto summary = export_hf(dir / "m", dir / "hf");
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("'" + ple + "' has shape [256, "), std::string::npos) << summary.status().message();
}

}  // namespace
}  // namespace g4::convert
