// What hf2mcore writes around the weights, as Megatron-Bridge 0.6.2 / megatron-core 0.19.2 write it (issue 10):
// the common state as the DCP byte item `common_state/shard_0_1` with the 2-key metadata.json by default, the
// older common.pt + 4-key metadata.json with --common-pt, int64/float64 train-state counters, and --pad-vocab:
// zero rows appended to the word embedding (and an untied output layer) as MB's provider builds it.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_edit.h"
#include "convert/hf2mcore.h"
#include "convert/mcore_files.h"
#include "convert/roundtrip.h"
#include "inspect/hf_inspect.h"
#include "runtime/dcp/dcp_metadata.h"
#include "runtime/mapped_file.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;
using torch::PyPtr;
using torch::PyValue;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

Result<ConvertSummary> convert(const fs::path& hf, const fs::path& out, CommonStateLayout common) {
  Hf2McoreOptions o;
  o.hf = hf;
  o.out = out;
  o.threads = 2;
  o.common = common;
  return hf2mcore(o);
}

// The value of a plain pickled graph (dicts, lists, scalars) as text, to compare two graphs in one assertion.
std::string show(const PyValue& v) {
  using K = PyValue::Kind;
  switch (v.kind) {
    case K::kNone: return "None";
    case K::kBool: return v.b ? "True" : "False";
    case K::kInt: return std::to_string(v.i);
    case K::kFloat: return std::to_string(v.f) + "f";
    case K::kStr: return "'" + v.s + "'";
    default: break;
  }
  std::string s = v.is(K::kDict) ? "{" : v.is(K::kList) ? "[" : "<" + std::to_string(static_cast<int>(v.kind)) + ">(";
  for (size_t k = 0; k < v.items.size(); ++k) s += (k ? (v.is(K::kDict) && k % 2 ? ": " : ", ") : "") + show(*v.items[k]);
  return s + (v.is(K::kDict) ? "}" : v.is(K::kList) ? "]" : ")");
}

const char* kExpectedCommon = "{'checkpoint_version': 3.000000f, 'iteration': 0, 'content_metadata': "
                              "{'singleton_local_shards': False, 'chained_optim_avoid_prefix': True}}";

// The unpickled byte item `key` of the DCP checkpoint in `iter` (torch.load of its blob).
std::string dcp_byte_item(const fs::path& iter, const std::string& key) {
  auto md = dcp::read_metadata(iter);
  EXPECT_OK(md);
  if (!md.ok() || !md->byte_items.count(key)) return "(absent)";
  const dcp::StorageLocation& at = md->byte_items.at(key);
  auto file = MappedFile::open(iter / at.relative_path);
  EXPECT_OK(file);
  if (!file.ok()) return "";
  auto parsed = torch::parse_torch_bytes(file->bytes().subspan(at.offset, at.length), key);
  EXPECT_OK(parsed);
  return parsed.ok() ? show(*parsed->second) : "";
}

TEST(McoreLayout, DefaultStoresTheCommonStateInsideDcpAsMegatronCore019DoesWithTheTwoKeyMetadataJson) {
  ScratchDir dir;
  auto summary = convert(tiny("tiny-31b"), dir / "m", CommonStateLayout::kDcpObject);
  ASSERT_OK(summary);
  const fs::path iter = dir / "m" / "iter_0000000";
  // torch.save([common]) under ShardedObject("common_state", (1,), (0,)).unique_key; no common.pt
  EXPECT_EQ(dcp_byte_item(iter, "common_state/shard_0_1"), std::string("[") + kExpectedCommon + "]");
  EXPECT_FALSE(fs::exists(iter / "common.pt"));
  EXPECT_EQ(testing::read_bytes(iter / "metadata.json"), "{\"sharded_backend\": \"torch_dist\", \"sharded_backend_version\": 1}");
  auto md = dcp::read_metadata(iter);
  ASSERT_OK(md);
  EXPECT_EQ(summary->extra_state + 1, md->byte_items.size()) << "the common state is not an _extra_state object";
}

TEST(McoreLayout, CommonPtWritesTheOlderLayoutWithTheSameCommonDictAndTheFourKeyMetadataJson) {
  ScratchDir dir;
  auto summary = convert(tiny("tiny-26b-a4b"), dir / "m", CommonStateLayout::kCommonPt);
  ASSERT_OK(summary);
  const fs::path iter = dir / "m" / "iter_0000000";
  auto common = torch::load_torch_file(iter / "common.pt");
  ASSERT_OK(common);
  EXPECT_EQ(show(*common->root), kExpectedCommon);
  EXPECT_EQ(common->archive.prefix, "common") << "torch.save names the archive after the file";
  EXPECT_EQ(dcp_byte_item(iter, "common_state/shard_0_1"), "(absent)");
  EXPECT_EQ(testing::read_bytes(iter / "metadata.json"),
            "{\"sharded_backend\": \"torch_dist\", \"sharded_backend_version\": 1, \"common_backend\": \"torch\", "
            "\"common_backend_version\": 1}");
  auto md = dcp::read_metadata(iter);
  ASSERT_OK(md);
  EXPECT_EQ(summary->extra_state, md->byte_items.size());
}

TEST(McoreLayout, InspectFindsTheCommonStateInEitherLayoutAndReportsACheckpointWithNeither) {
  ScratchDir dir;
  for (CommonStateLayout layout : {CommonStateLayout::kDcpObject, CommonStateLayout::kCommonPt}) {
    const fs::path out = dir / (layout == CommonStateLayout::kCommonPt ? "pt" : "dcp");
    ASSERT_OK(convert(tiny("tiny-e2b"), out, layout));
    auto r = inspect_mcore(out, InspectOptions{}, {});
    ASSERT_OK(r);
    EXPECT_TRUE(r->problems.empty()) << r->problems.front().message;
  }
  fs::remove(dir / "pt" / "iter_0000000" / "common.pt");
  auto r = inspect_mcore(dir / "pt", InspectOptions{}, {});
  ASSERT_OK(r);
  ASSERT_EQ(r->problems.size(), 1u);
  EXPECT_NE(r->problems[0].message.find("common"), std::string::npos) << r->problems[0].message;
}

TEST(McoreLayout, TrainStateCountersAreInt64AndFlopsFloat64AsMegatronBridge062sTrainState) {
  ScratchDir dir;
  ASSERT_OK(convert(tiny("tiny-31b"), dir / "m", CommonStateLayout::kDcpObject));
  for (const fs::path& p : {dir / "m" / "iter_0000000" / "train_state.pt", dir / "m" / "latest_train_state.pt"}) {
    auto file = torch::load_torch_file(p);
    ASSERT_OK(file);
    const PyValue& root = *file->root;
    ASSERT_TRUE(root.is(PyValue::Kind::kDict));
    std::vector<std::string> keys;
    for (size_t k = 0; k + 1 < root.items.size(); k += 2) {
      const std::string key = root.items[k]->s;
      keys.push_back(key);
      auto view = torch::tensor_view(file->archive, *root.items[k + 1], key);
      ASSERT_OK(view);
      EXPECT_TRUE(view->shape.empty()) << key;
      const DType want = key == "floating_point_operations_so_far" ? DType::kF64 : key.starts_with("do_") ? DType::kBool : DType::kI64;
      EXPECT_EQ(view->dtype, want) << p << ": " << key;
      for (std::byte b : view->data) EXPECT_EQ(b, std::byte{0}) << key;
    }
    EXPECT_EQ(keys, (std::vector<std::string>{"step", "consumed_train_samples", "skipped_train_samples", "consumed_valid_samples",
                                              "floating_point_operations_so_far", "do_train", "do_valid", "do_test"}));
  }
}

// The bytes of a DCP tensor chunked along dim 0 only (as hf2mcore writes unstacked parameters), and its shape.
std::pair<Shape, std::string> read_rows_tensor(const fs::path& iter, const std::string& key) {
  auto md = dcp::read_metadata(iter);
  EXPECT_OK(md);
  if (!md.ok() || !md->tensors.count(key)) return {{}, "(absent)"};
  const dcp::TensorEntry& e = md->tensors.at(key);
  const uint64_t row_bytes = static_cast<uint64_t>(e.shape[1]) * dtype_size(e.dtype);
  std::string out(static_cast<size_t>(e.shape[0]) * row_bytes, '\x7f');
  std::map<std::string, MappedFile> maps;
  for (const dcp::TensorChunk& c : e.chunks) {
    auto view = dcp::read_chunk(iter, c, maps, key);
    EXPECT_OK(view);
    if (view.ok()) std::memcpy(out.data() + c.offsets[0] * row_bytes, view->data.data(), view->data.size());
  }
  return {e.shape, out};
}

std::string hf_tensor(const fs::path& hf, const std::string& name) {
  auto set = SafetensorsSet::open_dir(hf);
  EXPECT_OK(set);
  if (!set.ok() || !set->find(name)) return "(absent)";
  auto bytes = set->data(*set->find(name));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Result<ConvertSummary> convert_padded(const fs::path& hf, const fs::path& out, std::optional<int64_t> pad) {
  Hf2McoreOptions o;
  o.hf = hf;
  o.out = out;
  o.pad_vocab = pad;
  return hf2mcore(o);
}

const char* kEmbedding = "language_model.embedding.word_embeddings.weight";
const char* kHead = "language_model.output_layer.weight";
const char* kHfEmbedding = "model.language_model.embed_tokens.weight";

// Checks that `key` holds the HF tensor's rows, then zero rows up to `rows`.
void expect_padded(const fs::path& iter, const std::string& key, const std::string& hf_bytes, int64_t rows, const std::string& what) {
  auto [shape, bytes] = read_rows_tensor(iter, key);
  ASSERT_EQ(shape.size(), 2u) << what;
  EXPECT_EQ(shape[0], rows) << what;
  ASSERT_GE(bytes.size(), hf_bytes.size()) << what;
  EXPECT_TRUE(bytes.compare(0, hf_bytes.size(), hf_bytes) == 0) << what << ": the vocabulary's rows are the HF rows";
  EXPECT_EQ(bytes.find_first_not_of('\0', hf_bytes.size()), std::string::npos) << what << ": padding rows are zero";
}

// `src` with its vocabulary cut to `vocab` rows (config and embedding), so that 128 does not divide it.
fs::path with_vocab(const fs::path& src, const fs::path& dst, int64_t vocab) {
  testing::copy_checkpoint(src, dst, [&](testing::Tensor& t) {
    if (t.spec.name == kHfEmbedding) {
      t.bytes.resize(static_cast<size_t>(vocab) * (t.bytes.size() / static_cast<size_t>(t.spec.shape[0])));
      t.spec.shape[0] = vocab;
    }
    return true;
  });
  std::ifstream in(dst / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["text_config"]["vocab_size"] = vocab;
  testing::write_bytes(dst / "config.json", j.dump(2));
  return dst;
}

TEST(PadVocab, PadsTheTiedWordEmbeddingWithZeroRowsToAMultipleOfNAndStatesNInRunConfig) {
  ScratchDir dir;
  const std::string hf = hf_tensor(tiny("tiny-31b"), kHfEmbedding);
  for (int64_t n : {1, 96, 100, 128, 256, 1000}) {
    const fs::path out = dir / ("m" + std::to_string(n));
    auto summary = convert_padded(tiny("tiny-31b"), out, n);
    ASSERT_OK(summary);
    const int64_t rows = (128 + n - 1) / n * n;
    EXPECT_EQ(summary->vocab_rows, rows);
    expect_padded(out / "iter_0000000", kEmbedding, hf, rows, "N=" + std::to_string(n));
    auto md = dcp::read_metadata(out / "iter_0000000");
    ASSERT_OK(md);
    EXPECT_FALSE(md->tensors.count(kHead)) << "tied: no output layer";
    const std::string yaml = testing::read_bytes(out / "iter_0000000" / "run_config.yaml");
    EXPECT_NE(yaml.find("\n  make_vocab_size_divisible_by: " + std::to_string(n) + "\n"), std::string::npos)
        << "Gemma4DenseProvider.build() must pad to the same rows";
  }
}

TEST(PadVocab, PadsAnUntiedOutputLayerLikeTheEmbeddingButNeverThePerLayerEmbedding) {
  ScratchDir dir;
  // tiny-e4b (PLE) with an untied head of its own.
  std::vector<testing::Tensor> extra;
  testing::copy_checkpoint(tiny("tiny-e4b"), dir / "a", [&](testing::Tensor& t) {
    if (t.spec.name == kHfEmbedding) {
      testing::Tensor head = t;
      head.spec.name = "lm_head.weight";
      for (size_t b = 0; b < head.bytes.size(); b += 2) head.bytes[b] ^= 0x5;
      extra.push_back(head);
    }
    return true;
  });
  testing::copy_checkpoint(dir / "a", dir / "hf", [](testing::Tensor&) { return true; }, extra);
  std::ifstream in(dir / "hf" / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["tie_word_embeddings"] = false;
  j["text_config"]["tie_word_embeddings"] = false;
  testing::write_bytes(dir / "hf" / "config.json", j.dump(2));

  ASSERT_OK(convert_padded(dir / "hf", dir / "m", 96));
  const fs::path iter = dir / "m" / "iter_0000000";
  expect_padded(iter, kEmbedding, hf_tensor(dir / "hf", kHfEmbedding), 192, "embedding");
  expect_padded(iter, kHead, hf_tensor(dir / "hf", "lm_head.weight"), 192, "untied output layer");
  auto [ple_shape, ple] = read_rows_tensor(iter, "language_model.per_layer_embedding.weight");
  EXPECT_EQ(ple, hf_tensor(dir / "hf", "model.language_model.embed_tokens_per_layer.weight")) << "per-layer embedding unpadded";
}

TEST(PadVocab, DefaultIsMegatronBridgesRule128ForDenseAndNoneForMoe) {
  ScratchDir dir;
  const fs::path dense = with_vocab(tiny("tiny-31b"), dir / "dense", 100);
  auto summary = convert_padded(dense, dir / "md", std::nullopt);
  ASSERT_OK(summary);
  expect_padded(dir / "md" / "iter_0000000", kEmbedding, hf_tensor(dense, kHfEmbedding), 128, "dense default");
  EXPECT_EQ(summary->vocab_rows, 128);
  const fs::path moe = with_vocab(tiny("tiny-26b-a4b"), dir / "moe", 100);
  summary = convert_padded(moe, dir / "mm", std::nullopt);
  ASSERT_OK(summary);
  expect_padded(dir / "mm" / "iter_0000000", kEmbedding, hf_tensor(moe, kHfEmbedding), 100, "MoE default");
}

TEST(PadVocab, ACheckpointPaddedByDefaultRoundtripsBitExactAndVerifies) {
  ScratchDir dir;
  const fs::path dense = with_vocab(tiny("tiny-31b"), dir / "dense", 100);
  RoundtripOptions o;
  o.hf = dense;
  o.keep = dir / "keep";
  auto report = roundtrip(o);
  ASSERT_OK(report);
  EXPECT_EQ(report->to_mcore.vocab_rows, 128) << "padded on the way";
  EXPECT_TRUE(report->identical()) << (report->tensor_differences.empty() ? "config" : report->tensor_differences[0].item);
  std::string out;
  EXPECT_EQ(testing::run_g4convert("verify --hf " + dense.string() + " --mcore " + (dir / "keep" / "mcore").string(), &out), 0) << out;
}

TEST(PadVocab, RefusesAMultipleOutsideOneToTheBoundInTheLibraryAndAsAOneLineUsageError) {
  ScratchDir dir;
  for (int64_t n : {int64_t{0}, int64_t{-128}, kMaxPadVocab + 1}) {
    auto r = convert_padded(tiny("tiny-31b"), dir / "m", n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_NE(r.status().message().find("--pad-vocab"), std::string::npos) << r.status().message();
    EXPECT_FALSE(fs::exists(dir / "m"));
  }
  for (const char* text : {"0", "-1", "abc", "1.5", "99999999999", "2097152", "''"}) {
    std::string out;
    const int code = testing::run_g4convert("hf2mcore --hf " + tiny("tiny-31b").string() + " --out " + (dir / "c").string() +
                                                " --pad-vocab " + text, &out);
    EXPECT_EQ(code, 2) << text << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << text << ": " << out;
    EXPECT_NE(out.find("--pad-vocab"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir / "c"));
  }
}

}  // namespace
}  // namespace g4::convert
