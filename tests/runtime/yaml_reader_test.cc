// run_config.yaml is read with yaml-cpp and typed the way PyYAML's safe_load types it (runtime/yaml_reader.h),
// with nesting, alias expansion and size bounded: one-line errors naming the file and line, never a crash.
#include <cmath>
#include <string>

#include "runtime/yaml_reader.h"
#include "test_support.h"

namespace g4 {
namespace {

using nlohmann::json;

json parsed(const std::string& text) {
  auto r = parse_yaml(text, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : json();
}

std::string error_of(const std::string& text, const YamlLimits& limits = {}) {
  auto r = parse_yaml(text, "bad.yaml", limits);
  EXPECT_FALSE(r.ok()) << text;
  return r.ok() ? "" : r.status().message();
}

TEST(YamlReader, PlainScalarsAreTypedAsPyYamlSafeLoadTypesThem) {
  const json j = parsed(
      "a: ~\nb: null\nc:\nd: true\ne: False\nf: yes\ng: off\nh: 42\ni: -7\nj: 0x1f\nk: 010\nl: 1_000\n"
      "m: 1.0e-06\nn: 1e-06\no: .inf\np: -.inf\nq: .nan\nr: 3.\ns: .5\nt: 1:30\nu: torch.bfloat16\nv: 2026-09-01\n");
  EXPECT_TRUE(j["a"].is_null() && j["b"].is_null() && j["c"].is_null());
  EXPECT_EQ(j["d"], true);
  EXPECT_EQ(j["e"], false);
  EXPECT_EQ(j["f"], true) << "YAML 1.1 booleans";
  EXPECT_EQ(j["g"], false);
  EXPECT_EQ(j["h"], 42);
  EXPECT_EQ(j["i"], -7);
  EXPECT_EQ(j["j"], 31);
  EXPECT_EQ(j["k"], 8) << "a leading 0 is octal in YAML 1.1";
  EXPECT_EQ(j["l"], 1000);
  ASSERT_TRUE(j["m"].is_number_float());
  EXPECT_EQ(j["m"].get<double>(), 1e-6);
  EXPECT_EQ(j["n"], "1e-06") << "PyYAML needs a dot in a float";
  EXPECT_TRUE(std::isinf(j["o"].get<double>()) && j["o"].get<double>() > 0);
  EXPECT_TRUE(std::isinf(j["p"].get<double>()) && j["p"].get<double>() < 0);
  EXPECT_TRUE(std::isnan(j["q"].get<double>()));
  EXPECT_EQ(j["r"].get<double>(), 3.0);
  EXPECT_EQ(j["s"].get<double>(), 0.5);
  EXPECT_EQ(j["t"], 90) << "sexagesimal";
  EXPECT_EQ(j["u"], "torch.bfloat16");
  EXPECT_EQ(j["v"], "2026-09-01") << "timestamps stay strings";
}

TEST(YamlReader, QuotedScalarsStayStringsAndCoreTagsConvert) {
  const json j = parsed("a: '1'\nb: \"true\"\nc: 'null'\nd: !!str 12\ne: !!float 1e-06\nf: !!int '7'\ng: !!bool yes\n");
  EXPECT_EQ(j["a"], "1");
  EXPECT_EQ(j["b"], "true");
  EXPECT_EQ(j["c"], "null");
  EXPECT_EQ(j["d"], "12");
  EXPECT_EQ(j["e"].get<double>(), 1e-6);
  EXPECT_EQ(j["f"], 7);
  EXPECT_EQ(j["g"], true);
}

TEST(YamlReader, BlockAndFlowCollectionsAndTuplesBecomeJson) {
  const json j = parsed(
      "model:\n  _target_: x.Y\n  window_size:\n  - 511\n  - 0\n  flow: {a: [1, 2.5, 'x'], b: {}}\n  t: !!python/tuple [1, 2]\n");
  EXPECT_EQ(j["model"]["_target_"], "x.Y");
  EXPECT_EQ(j["model"]["window_size"], json::array({511, 0}));
  EXPECT_EQ(j["model"]["flow"]["a"], json::array({1, 2.5, "x"}));
  EXPECT_TRUE(j["model"]["flow"]["b"].is_object());
  EXPECT_EQ(j["model"]["t"], json::array({1, 2}));
}

// safe_dump's form of a Python set (Megatron-Bridge's LoRA params_to_save): a !!set mapping of members to null.
TEST(YamlReader, ASetAsSafeDumpWritesItIsAMappingOfItsMembers) {
  const json j = parsed("peft:\n  params_to_save: !!set\n    decoder.layers.0.mlp.linear_fc1.adapter.linear_in.weight: null\n    b: null\n");
  ASSERT_TRUE(j["peft"]["params_to_save"].is_object());
  EXPECT_EQ(j["peft"]["params_to_save"].size(), 2u);
  EXPECT_TRUE(j["peft"]["params_to_save"]["b"].is_null());
  EXPECT_EQ(error_of("a: !!set [1, 2]\n"), "bad.yaml:1: tag 'tag:yaml.org,2002:set' is not one yaml.safe_load accepts");
}

TEST(YamlReader, AnchorsAndAliasesExpand) {
  const json j = parsed("a: &x {k: [1, 2]}\nb: *x\n");
  EXPECT_EQ(j["a"], j["b"]);
}

TEST(YamlReader, AnAliasBombIsRefusedByTheNodeBoundNotExpanded) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int k = 0; k < 10; ++k) bomb += std::string(k ? ", *" : "*") + static_cast<char>(c - 1);
    bomb += "]\n";
  }
  EXPECT_EQ(error_of(bomb).substr(0, 11), "bad.yaml:6:") << error_of(bomb);  // f: 10^6 values
  EXPECT_NE(error_of(bomb).find("values after expanding aliases"), std::string::npos);
}

TEST(YamlReader, NestingBeyondTheLimitIsRefusedWithTheLine) {
  std::string deep;
  for (int d = 0; d < 100; ++d) deep += std::string(static_cast<size_t>(2 * d), ' ') + "k:\n";
  deep += std::string(200, ' ') + "v: 1\n";
  const std::string e = error_of(deep);
  EXPECT_EQ(e, "bad.yaml:65: YAML nests deeper than 64 levels");
  EXPECT_FALSE(parse_yaml(std::string(100000, '[') + std::string(100000, ']'), "deep.yaml").ok()) << "flow nesting, 100k deep";
  std::string ok = "";
  for (int d = 0; d < 64; ++d) ok += "[";
  for (int d = 0; d < 64; ++d) ok += "]";
  EXPECT_OK(parse_yaml(ok, "ok.yaml"));
}

TEST(YamlReader, CodeRunningAndUnknownTagsAreRefusedNamingTheTag) {
  EXPECT_EQ(error_of("a: !!python/object/apply:os.system ['ls']\n"),
            "bad.yaml:1: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not one yaml.safe_load accepts (it would run code "
            "to construct a Python object)");
  EXPECT_EQ(error_of("a: !custom 1\n"), "bad.yaml:1: tag '!custom' is not one yaml.safe_load accepts");
  EXPECT_EQ(error_of("a: !!binary aGk=\n"), "bad.yaml:1: tag '!!binary' is not supported here (run_config.yaml is written by yaml.safe_dump)");
}

TEST(YamlReader, MalformedDuplicateTruncatedAndBinaryInputsAreOneLineErrors) {
  EXPECT_EQ(error_of("a: 1\nb: 2\na: 3\n"), "bad.yaml:3: duplicate key 'a'");
  EXPECT_EQ(error_of("a: [1, 2\n").substr(0, 9), "bad.yaml:");
  EXPECT_NE(error_of("a: [1, 2\n").find("not valid YAML"), std::string::npos);
  EXPECT_EQ(error_of(std::string("a: 1\nb: \0\x01\x02", 11)), "bad.yaml:2: a NUL byte: not a YAML text file");
  EXPECT_EQ(error_of("? [1, 2]\n: x\n"), "bad.yaml:1: a mapping key must be a scalar");
  EXPECT_EQ(error_of("a: 1\n---\nb: 2\n"), "bad.yaml: more than one YAML document");
  EXPECT_EQ(error_of("a: 99999999999999999999999\n"), "bad.yaml:1: integer '99999999999999999999999' does not fit in 64 bits");
  EXPECT_EQ(error_of("<<: {a: 1}\n"), "bad.yaml:1: merge keys (<<) are not supported");
  for (const std::string& s : {std::string("\"unterminated"), std::string("a: 'x"), std::string("- a\nb: c\n"), std::string("\t- x")})
    EXPECT_FALSE(parse_yaml(s, "bad.yaml").ok()) << s;
}

// fuzz_run_config: a string with a stray byte reached nlohmann's dump (in an error message) and threw there.
TEST(YamlReader, InvalidUtf8IsRefusedWithItsLineAndByteNotKeptInAString) {
  EXPECT_EQ(error_of("a: 1\nb: x\xbdy\n"), "bad.yaml:2: not valid UTF-8 (byte 9)");
  EXPECT_EQ(error_of("a: \xc0\x80\n"), "bad.yaml:1: not valid UTF-8 (byte 3)") << "overlong NUL";
  EXPECT_EQ(error_of("a: \xed\xa0\x80\n"), "bad.yaml:1: not valid UTF-8 (byte 3)") << "a UTF-16 surrogate";
  EXPECT_EQ(error_of("a: \xf4\x90\x80\x80\n"), "bad.yaml:1: not valid UTF-8 (byte 3)") << "past U+10FFFF";
  EXPECT_EQ(error_of("a: \xe2\x82"), "bad.yaml:1: not valid UTF-8 (byte 3)") << "truncated sequence";
  const json j = parsed("a: \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"\n");
  EXPECT_EQ(j["a"].dump(), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"") << "valid multi-byte text is kept";
}

TEST(YamlReader, ALargerFileThanTheCapIsRefusedBeforeParsing) {
  YamlLimits small;
  small.max_bytes = 10;
  EXPECT_EQ(error_of("a: 12345678901\n", small), "bad.yaml: 15 bytes is too large for a YAML file");
}

TEST(YamlReader, AnEmptyDocumentIsNull) { EXPECT_TRUE(parsed("").is_null()); }

}  // namespace
}  // namespace g4
