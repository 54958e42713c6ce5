#include "runtime/torch/torch_save.h"

#include "runtime/dcp/dcp_metadata.h"

#include <cstring>

#include "runtime/torch/pickle_reader.h"
#include "runtime/torch/pickle_writer.h"
#include "runtime/torch/zip_reader.h"
#include "runtime/torch/zip_writer.h"
#include "test_support.h"

namespace g4::torch {
namespace {
using testing::ScratchDir;

std::span<const std::byte> bytes_of(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

bool same(const PyValue& a, const PyValue& b) {
  if (a.kind != b.kind || a.b != b.b || a.i != b.i || a.s != b.s || a.items.size() != b.items.size()) return false;
  if (a.kind == PyValue::Kind::kFloat && a.f != b.f) return false;
  for (size_t k = 0; k < a.items.size(); ++k)
    if (!same(*a.items[k], *b.items[k])) return false;
  return true;
}

PickleOptions allow_all() { return {[](const std::string&) { return true; }}; }

TEST(Pickle, RoundTripsEveryKindItWrites) {
  PyPtr root = py_dict({
      {py_str("ints"), py_list({py_int(0), py_int(255), py_int(256), py_int(65536), py_int(-1), py_int(INT64_MAX), py_int(INT64_MIN),
                                py_int(int64_t{1} << 40)})},
      {py_str("float"), py_float(-2.5e-300)},
      {py_str("flags"), py_tuple({py_bool(true), py_bool(false), py_none()})},
      {py_str("long tuple"), py_tuple({py_int(1), py_int(2), py_int(3), py_int(4)})},
      {py_str("ünïcode"), py_str("layer_scalar ✓")},
      {py_str("ns"), py_object(py_global("argparse", "Namespace"), {}, py_dict({{py_str("tp"), py_int(1)}}))},
  });
  std::string bytes = pickle_dumps(*root);
  auto back = pickle_loads(bytes_of(bytes), allow_all(), "t.pkl");
  ASSERT_OK(back);
  EXPECT_TRUE(same(*root, **back));
}

TEST(Pickle, BytesBecomeCodecsEncodeOfLatin1Text) {
  std::string raw("\x00\x7f\x80\xff", 4);
  std::string bytes = pickle_dumps(*py_bytes(raw));
  EXPECT_NE(bytes.find("c_codecs\nencode\n"), std::string::npos);
  auto back = pickle_loads(bytes_of(bytes), allow_all(), "t.pkl");
  ASSERT_OK(back);
  ASSERT_TRUE((*back)->is(PyValue::Kind::kCall));
  EXPECT_EQ((*back)->items[1]->items[0]->s, std::string("\x00\x7f\xc2\x80\xc3\xbf", 6));
}

struct BadPickle {
  const char* name;
  std::string bytes;
  ErrorCode code;
};

std::vector<BadPickle> bad_pickles() {
  return {
      {"GlobalNotAllowed", std::string("\x80\x02" "cos\nsystem\n.", 14), ErrorCode::kNotSupported},
      {"StackGlobalNotAllowed", std::string("\x80\x04\x8c\x02os\x8c\x06system\x93.", 15), ErrorCode::kNotSupported},
      {"UnknownOpcode", std::string("\x80\x02\xff.", 4), ErrorCode::kNotSupported},
      {"NoStop", std::string("\x80\x02K\x01", 4), ErrorCode::kCorruption},
      // Split literal: "\x00ab" would read as the one hex escape \xab.
      {"StringPastEnd", std::string("\x80\x02X\xff\xff\x00\x00" "ab.", 10), ErrorCode::kCorruption},
      {"PopEmptyStack", std::string("\x80\x02R.", 4), ErrorCode::kCorruption},
      {"MemoMissing", std::string("\x80\x02h\x05.", 5), ErrorCode::kCorruption},
      {"AppendToTuple", std::string("\x80\x02)K\x01" "a.", 7), ErrorCode::kCorruption},
      {"TupleOnShortStack", std::string("\x80\x02K\x01\x87.", 6), ErrorCode::kCorruption},
      {"Protocol9", std::string("\x80\x09N.", 4), ErrorCode::kCorruption},
  };
}

void PrintTo(const BadPickle& b, std::ostream* os) { *os << b.name; }

class PickleRejects : public ::testing::TestWithParam<BadPickle> {};

TEST_P(PickleRejects, WithAOneLineErrorNamingTheFile) {
  PickleOptions torch_only{torch_weights_only_global};
  auto r = pickle_loads(bytes_of(GetParam().bytes), torch_only, "bad/data.pkl");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GetParam().code) << r.status().message();
  EXPECT_EQ(r.status().message().rfind("bad/data.pkl: pickle ", 0), 0u) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(Hostile, PickleRejects, ::testing::ValuesIn(bad_pickles()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Pickle, NestingIsBounded) {
  std::string deep = "\x80\x02";
  for (int k = 0; k < 10000; ++k) deep += "]";       // a list...
  for (int k = 0; k < 9999; ++k) deep += "a";        // ...appended into the one below, 10000 deep
  deep += ".";
  auto r = pickle_loads(bytes_of(deep), allow_all(), "deep.pkl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nests deeper"), std::string::npos);
}

TEST(TorchZip, DataIsAlignedAndCrcsVerify) {
  ScratchDir dir;
  auto zip = ZipWriter::create(dir / "a.pt");
  ASSERT_OK(zip);
  ASSERT_OK(zip->add("a/data.pkl", std::string_view("hello")));
  ASSERT_OK(zip->add("a/data/0", std::string_view("")));
  std::string big(100000, 'x');
  ASSERT_OK(zip->add("a/data/1", std::string_view(big)));
  ASSERT_OK(zip->finish());
  std::string file = testing::read_bytes(dir / "a.pt");
  auto archive = read_zip(bytes_of(file), "a.pt", /*verify_crc=*/true);
  ASSERT_OK(archive);
  EXPECT_EQ(archive->prefix, "a");
  for (const auto& [name, data] : archive->records)
    EXPECT_EQ((data.data() - bytes_of(file).data()) % 64, 0) << name << " is not 64-byte aligned";
  EXPECT_EQ(archive->find("data/1")->size(), big.size());
  EXPECT_EQ(archive->find("data/0")->size(), 0u);

  std::string flipped = file;
  flipped[flipped.find("hello")] = 'j';
  auto bad_crc = read_zip(bytes_of(flipped), "a.pt", true);
  ASSERT_FALSE(bad_crc.ok());
  EXPECT_NE(bad_crc.status().message().find("CRC-32"), std::string::npos);
  for (size_t cut : {size_t{0}, size_t{21}, file.size() / 2, file.size() - 1})
    EXPECT_FALSE(read_zip(bytes_of(file.substr(0, cut)), "a.pt").ok()) << cut;
}

TEST(TorchZip, Zip64LocatorInATinyFileIsRejected) {
  // Found by fuzz_torch_file: a ZIP64 locator in a file shorter than a ZIP64 end record made the bounds check
  // underflow. fuzz/corpus/torch_file/regression-zip64-locator-short-file keeps the original input.
  std::string file = testing::read_bytes(testing::source_dir() / "fuzz/corpus/torch_file/regression-zip64-locator-short-file");
  auto r = read_zip(bytes_of(file), "short.pt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCorruption);
}

TEST(TorchSave, TensorsRoundTripThroughOurWriterAndReader) {
  ScratchDir dir;
  std::vector<uint16_t> bf16 = {0x3f80, 0x4000, 0xbf80, 0x7fc0, 0, 1};
  std::vector<float> f32 = {1.5f, -2.0f};
  TorchSaveWriter w;
  PyPtr root = py_dict({
      {py_str("w"), w.tensor(DType::kBF16, {2, 3}, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bf16.data()), 12))},
      {py_str("s"), w.tensor(DType::kF32, {2}, std::span<const std::byte>(reinterpret_cast<const std::byte*>(f32.data()), 8))},
      {py_str("empty"), w.tensor(DType::kI64, {0}, std::span<const std::byte>())},
      {py_str("meta"), py_str("x")},
  });
  ASSERT_OK(w.write(dir / "common.pt", *root, "common"));
  auto file = load_torch_file(dir / "common.pt");
  ASSERT_OK(file);
  auto tv = tensor_view(file->archive, *file->root->get("w"), "w");
  ASSERT_OK(tv);
  EXPECT_EQ(tv->dtype, DType::kBF16);
  EXPECT_EQ(tv->shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(tv->data.data(), bf16.data(), 12), 0);
  auto empty = tensor_view(file->archive, *file->root->get("empty"), "empty");
  ASSERT_OK(empty);
  EXPECT_EQ(empty->data.size(), 0u);
  EXPECT_EQ(file->root->get("meta")->s, "x");
}

}  // namespace
}  // namespace g4::torch

namespace g4::dcp {
namespace {

TEST(DcpMetadata, MissingOrCorruptMetadataNamesTheFile) {
  testing::ScratchDir dir;
  auto missing = read_metadata(dir.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  testing::write_bytes(dir / ".metadata", std::string("\x80\x04\x95", 3));
  auto corrupt = read_metadata(dir.path());
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.status().message().find(".metadata"), std::string::npos) << corrupt.status().message();
  // A well-formed pickle of something else is not a Metadata object.
  testing::write_bytes(dir / ".metadata", torch::pickle_dumps(*torch::py_dict({})));
  auto other = read_metadata(dir.path());
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("not a DCP Metadata object"), std::string::npos);
}

}  // namespace
}  // namespace g4::dcp
