#include "runtime/safetensors_reader.h"

#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4 {
namespace {
using testing::safetensors_bytes;
using testing::ScratchDir;
using testing::write_bytes;

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

TEST(SafetensorsReader, ParsesAValidFileAndSortsByOffset) {
  std::string header = R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                       R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"__metadata__":{"format":"pt"}})";
  std::string file = safetensors_bytes(header, std::string(12, 'x'));
  auto h = parse_safetensors(as_bytes(file), "ok.safetensors");
  ASSERT_OK(h);
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[0].name, "a");
  EXPECT_EQ(h->tensors[1].dtype, DType::kF32);
  EXPECT_EQ(h->tensors[1].shape, (Shape{2}));
  EXPECT_EQ(h->metadata.at("format"), "pt");
  EXPECT_EQ(h->data_start, 8 + header.size());
}

TEST(SafetensorsReader, AcceptsEmptyAndZeroSizedTensors) {
  auto h = parse_safetensors(as_bytes(safetensors_bytes("{}", "")), "empty.safetensors");
  ASSERT_OK(h);
  EXPECT_TRUE(h->tensors.empty());
  std::string header = R"({"z":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}})";
  ASSERT_OK(parse_safetensors(as_bytes(safetensors_bytes(header, "")), "zero.safetensors"));
}

struct Corruption {
  const char* name;
  std::string file;
  const char* expected_fragment;
};

std::string with_len(uint64_t len, const std::string& rest) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + rest;
}

std::vector<Corruption> corruptions() {
  auto st = [](const std::string& h, size_t data) { return safetensors_bytes(h, std::string(data, '\0')); };
  return {
      {"TooShortForLength", "abc", "too short"},
      {"HeaderLengthBeyondFile", with_len(1000, "{}"), "runs past the end"},
      {"HeaderLengthAbsurd", with_len(uint64_t{1} << 62, "{}"), "exceeds"},
      {"NotJson", st("{not json}", 0), "not valid JSON"},
      {"DoesNotStartWithBrace", st("[1,2]", 0), "does not start with '{'"},
      {"DuplicateTensorName",
       st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "duplicate key 'a'"},
      {"UnknownDtype", st(R"({"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype 'Q4_K'"},
      {"NegativeDim", st(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "negative"},
      {"ShapeOverflow",
       st(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4), "overflows"},
      {"SizeMismatch", st(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "does not match shape [3]"},
      {"Overlap",
       st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "overlap"},
      {"Gap", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap of 4 bytes"},
      {"OffsetsPastEnd", st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "run past"},
      {"TrailingBytes", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12), "trailing bytes"},
      {"OffsetsArity", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "two integers"},
      {"EndBeforeBegin", st(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4), "< begin"},
      {"UnexpectedField", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4), "unexpected field 'x'"},
      {"MetadataNotString", st(R"({"__metadata__":{"format":1}})", 0), "is not a string"},
      {"RankTooLarge", st(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", 1),
       "rank 17"},
      {"EntryNotObject", st(R"({"a":[1,2,3]})", 0), "not an object"},
      {"ShapeNotArray", st(R"({"a":{"dtype":"F32","shape":7,"data_offsets":[0,4]}})", 4), "non-array 'shape'"},
      {"FloatOffset", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4]}})", 4), "not an unsigned integer"},
      {"InvalidUtf8", st("{\"\xff\xfe\":{}}", 0), "not valid JSON"},
  };
}

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

class SafetensorsCorruption : public ::testing::TestWithParam<Corruption> {};

TEST_P(SafetensorsCorruption, IsRejectedWithOneLineErrorNamingTheFile) {
  const Corruption& c = GetParam();
  auto h = parse_safetensors(as_bytes(c.file), "bad.safetensors");
  ASSERT_FALSE(h.ok()) << c.name;
  const std::string& msg = h.status().message();
  EXPECT_EQ(h.status().code(), ErrorCode::kCorruption) << msg;
  EXPECT_EQ(msg.rfind("bad.safetensors: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(c.expected_fragment), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(AllKinds, SafetensorsCorruption, ::testing::ValuesIn(corruptions()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(SafetensorsReader, EveryTruncationOfAValidFileIsRejected) {
  std::string header = R"({"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})";
  std::string file = safetensors_bytes(header, std::string(16, '\x01'));
  ASSERT_OK(parse_safetensors(as_bytes(file), "full.safetensors"));
  for (size_t cut = 0; cut < file.size(); ++cut) {
    auto h = parse_safetensors(as_bytes(file.substr(0, cut)), "cut.safetensors");
    EXPECT_FALSE(h.ok()) << "truncated to " << cut << " bytes";
  }
}

TEST(SafetensorsFile, OpensFromDiskAndGivesZeroCopyData) {
  ScratchDir dir;
  std::string header = R"({"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
  write_bytes(dir / "m.safetensors", safetensors_bytes(header, "xyz"));
  auto f = SafetensorsFile::open(dir / "m.safetensors");
  ASSERT_OK(f);
  const TensorInfo* w = f->find("w");
  ASSERT_NE(w, nullptr);
  auto d = f->data(*w);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(d.data()), d.size()), "xyz");
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(SafetensorsFile, MissingFileIsNotFound) {
  auto f = SafetensorsFile::open("/nonexistent/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/model.safetensors"), std::string::npos);
}

class ShardedSet : public ::testing::Test {
 protected:
  void write_shard(const std::string& name, const std::string& tensor) {
    std::string header = R"({")" + tensor + R"(":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
    write_bytes(dir / name, safetensors_bytes(header, "ab"));
  }
  void write_index(const std::string& weight_map, const std::string& total = "4") {
    write_bytes(dir / "model.safetensors.index.json",
                R"({"metadata":{"total_size":)" + total + R"(},"weight_map":)" + weight_map + "}");
  }
  ScratchDir dir;
};

TEST_F(ShardedSet, ReadsEveryShardThroughTheIndex) {
  write_shard("s1.safetensors", "a");
  write_shard("s2.safetensors", "b");
  write_index(R"({"a":"s1.safetensors","b":"s2.safetensors"})");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_OK(set);
  EXPECT_TRUE(set->sharded());
  EXPECT_EQ(set->tensors().size(), 2u);
  EXPECT_EQ(set->total_bytes(), 4u);
  EXPECT_TRUE(set->issues().empty());
}

TEST_F(ShardedSet, MissingShardNamesTheFile) {
  write_shard("s1.safetensors", "a");
  write_index(R"({"a":"s1.safetensors","b":"gone.safetensors"})");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("gone.safetensors"), std::string::npos);
}

TEST_F(ShardedSet, IndexCannotEscapeTheDirectory) {
  write_index(R"({"a":"../../etc/passwd"})");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), ErrorCode::kCorruption);
}

TEST_F(ShardedSet, TensorListedButAbsentIsAMismatch) {
  write_shard("s1.safetensors", "a");
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors"})");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("'b'"), std::string::npos);
}

TEST_F(ShardedSet, DuplicateAcrossShardsAndWrongTotalAreReportedAsIssues) {
  write_shard("s1.safetensors", "a");
  // s2 holds 'a' again beside its own 'd'; the index maps 'a' to s1 and claims a wrong total.
  write_bytes(dir / "s2.safetensors", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"d":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "abcd"));
  write_index(R"({"a":"s1.safetensors","d":"s2.safetensors"})", "99");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_OK(set);
  bool duplicate = false, total = false;
  for (const auto& issue : set->issues()) {
    duplicate |= issue.find("duplicate tensor 'a'") != std::string::npos;
    total |= issue.find("total_size") != std::string::npos;
  }
  EXPECT_TRUE(duplicate);
  EXPECT_TRUE(total);
}

TEST_F(ShardedSet, EmptyDirectoryIsNotFound) {
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace g4
