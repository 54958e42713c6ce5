// Every JSON the tool reads is depth-bounded at parse time (runtime/json_parse.h): deep nesting is refused with
// a one-line error naming the file, never a stack overflow in a later copy, comparison or dump.
#include <string>

#include "runtime/json_parse.h"
#include "runtime/safetensors_reader.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4 {
namespace {

using testing::ScratchDir;

// `depth` nested arrays around `core`: 100k levels take 200 KB, the size of the config in the issue.
std::string nested(size_t depth, const std::string& core = "1") { return std::string(depth, '[') + core + std::string(depth, ']'); }

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

TEST(JsonParse, NestingBeyondTheLimitIsRefusedNamingTheFileAndByte) {
  auto r = parse_json(nested(100'000), "deep.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCorruption);
  EXPECT_EQ(r.status().message(), "deep.json: JSON nests deeper than 64 levels (at byte 64)");
}

TEST(JsonParse, TheLimitItselfIsAcceptedAndOneMoreIsNot) {
  EXPECT_OK(parse_json(nested(kMaxJsonDepth), "ok.json"));
  EXPECT_FALSE(parse_json(nested(kMaxJsonDepth + 1), "deep.json").ok());
  EXPECT_FALSE(parse_json("{\"a\":" + nested(kMaxJsonDepth) + "}", "deep.json").ok()) << "objects count too";
}

TEST(JsonParse, BracketsInsideStringsDoNotCount) {
  const std::string text = "{\"a\": \"" + std::string(1000, '[') + "\\\"{{{\", \"b\": [\"]]]]\"]}";
  auto r = parse_json(text, "strings.json");
  ASSERT_OK(r);
  EXPECT_EQ((*r)["a"].get<std::string>().size(), 1004u);
}

TEST(JsonParse, InvalidJsonAndDuplicateKeysAreOneLineErrors) {
  auto bad = parse_json("{\"a\": ", "bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("bad.json: not valid JSON: ", 0), 0u) << bad.status().message();
  EXPECT_EQ(bad.status().message().find('\n'), std::string::npos);
  EXPECT_OK(parse_json("{\"a\": 1, \"a\": 2}", "dup.json"));
  auto dup = parse_json("{\"a\": 1, \"a\": 2}", "dup.json", {.reject_duplicate_keys = true});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "dup.json: duplicate key 'a'");
}

TEST(JsonParse, DeepSafetensorsHeaderIsRefused) {
  const std::string file = testing::safetensors_bytes("{\"__metadata__\": " + nested(100'000) + "}", "");
  auto h = parse_safetensors(as_bytes(file), "deep.safetensors");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("deep.safetensors: header: JSON nests deeper than 64 levels"), std::string::npos)
      << h.status().message();
  auto collected = read_safetensors_header(as_bytes(file), "deep.safetensors");
  EXPECT_FALSE(collected.ok()) << "a header that cannot be parsed has nothing to collect";
}

TEST(JsonParse, DeepIndexIsRefusedNamingTheIndex) {
  ScratchDir dir;
  testing::write_bytes(dir / "model.safetensors.index.json",
                       "{\"metadata\": " + nested(100'000) + ", \"weight_map\": {}}");
  auto set = SafetensorsSet::open_dir(dir.path());
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find((dir / "model.safetensors.index.json").string() + ": JSON nests deeper"),
            std::string::npos)
      << set.status().message();
}

}  // namespace
}  // namespace g4
