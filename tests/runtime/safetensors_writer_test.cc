#include "runtime/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4 {
namespace {
using testing::ScratchDir;

// Byte k of tensor i is (i * 31 + k) mod 251: position-dependent, so misplaced chunks show.
Status pattern_fill(size_t i, uint64_t offset, std::span<std::byte> out) {
  for (size_t k = 0; k < out.size(); ++k) out[k] = static_cast<std::byte>((i * 31 + offset + k) % 251);
  return {};
}

std::vector<TensorSpec> specs() {
  return {{"model.a", DType::kBF16, {4, 8}}, {"model.b", DType::kF32, {3}}, {"model.c", DType::kF32, {100, 10}},
          {"model.empty", DType::kF32, {0}}, {"model.d", DType::kU8, {7}}};
}

void expect_contents(const SafetensorsSet& set, const std::vector<TensorSpec>& sp) {
  ASSERT_EQ(set.tensors().size(), sp.size());
  for (size_t i = 0; i < sp.size(); ++i) {
    const auto* e = set.find(sp[i].name);
    ASSERT_NE(e, nullptr) << sp[i].name;
    EXPECT_EQ(e->info->shape, sp[i].shape);
    EXPECT_EQ(e->info->dtype, sp[i].dtype);
    auto d = set.data(*e);
    std::vector<std::byte> want(d.size());
    ASSERT_OK(pattern_fill(i, 0, want));
    EXPECT_TRUE(std::equal(d.begin(), d.end(), want.begin())) << sp[i].name;
  }
}

TEST(SafetensorsWriter, SingleFileRoundTripsWithSmallChunksAndThreads) {
  ScratchDir dir;
  ThreadPool pool(3);
  SafetensorsWriteOptions o;
  o.chunk_bytes = 7;  // many chunks per tensor, filled out of order
  o.pool = &pool;
  ASSERT_OK(write_safetensors_checkpoint(dir.path(), specs(), pattern_fill, o));
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_OK(set);
  expect_contents(*set, specs());
  const auto& header = set->files()[0]->header();
  EXPECT_EQ(header.data_start % 8, 0u) << "header padded to 8 bytes";
  EXPECT_EQ(header.metadata.at("format"), "pt");
}

TEST(SafetensorsWriter, ShardsFollowTheHubRuleAndWriteAnIndex) {
  ScratchDir dir;
  SafetensorsWriteOptions o;
  o.max_shard_bytes = 100;  // a (64 B) fits; c (4000 B) is oversized and alone
  ASSERT_OK(write_safetensors_checkpoint(dir.path(), specs(), pattern_fill, o));
  auto plan = plan_shards(specs(), 100);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].tensors, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(plan[1].tensors, (std::vector<size_t>{2}));
  EXPECT_EQ(plan[2].tensors, (std::vector<size_t>{3, 4}));
  EXPECT_EQ(plan[0].file_name, "model-00001-of-00003.safetensors");
  auto index = nlohmann::json::parse(testing::read_bytes(dir / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 64u + 12u + 4000u + 0u + 7u);
  EXPECT_EQ(index["weight_map"]["model.c"], "model-00002-of-00003.safetensors");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_OK(set);
  EXPECT_TRUE(set->issues().empty());
  expect_contents(*set, specs());
}

TEST(SafetensorsWriter, FillErrorIsReportedWithTheTensorName) {
  ScratchDir dir;
  auto failing = [](size_t i, uint64_t, std::span<std::byte>) -> Status {
    return i == 2 ? Status::corruption("source went bad") : Status();
  };
  Status s = write_safetensors_checkpoint(dir.path(), specs(), failing, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tensor 'model.c': source went bad"), std::string::npos) << s.message();
}

TEST(SafetensorsWriter, UnwritableDirectoryIsAnIOError) {
  Status s = write_safetensors_checkpoint("/nonexistent-dir/x", specs(), pattern_fill, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kIOError);
  EXPECT_NE(s.message().find("/nonexistent-dir/x/model.safetensors"), std::string::npos);
}

TEST(ParseByteSize, UnderstandsTransformersUnits) {
  EXPECT_EQ(*parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(*parse_byte_size("500MB"), 500'000'000u);
  EXPECT_EQ(*parse_byte_size("2GiB"), 2ull << 30);
  EXPECT_EQ(*parse_byte_size("1000"), 1000u);
  EXPECT_EQ(*parse_byte_size("1.5kb"), 1500u);
  EXPECT_FALSE(parse_byte_size("GB").ok());
  EXPECT_FALSE(parse_byte_size("5XB").ok());
  EXPECT_FALSE(parse_byte_size("0").ok());
}

}  // namespace
}  // namespace g4
