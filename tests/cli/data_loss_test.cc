// No command writes, moves or deletes an input, whatever the flags; every side output goes through the same
// policy (exists -> --force; inside/over an input -> refused). Each case runs the real binary on real
// directories and checks the input tree is byte-for-byte unchanged.
#include <sys/stat.h>

#include <map>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

// Every regular file under `dir` with its bytes (small test checkpoints only).
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = testing::read_bytes(e.path());
  return files;
}

class DataLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    hf_ = root_ / "hf";
    fs::copy(testing::source_dir() / "testdata" / "tiny-e4b", hf_, fs::copy_options::recursive);
    mcore_ = root_ / "mcore";
    std::string out;
    ASSERT_EQ(run("hf2mcore --hf " + hf_.string() + " --out " + mcore_.string(), &out), 0) << out;
    hf_before_ = snapshot(hf_);
    mcore_before_ = snapshot(mcore_);
  }
  void TearDown() override {
    EXPECT_EQ(snapshot(hf_), hf_before_) << "the HF input changed";
    EXPECT_EQ(snapshot(mcore_), mcore_before_) << "the Megatron input changed";
  }
  static int run(const std::string& args, std::string* out) { return testing::run_g4convert(args + " --quiet", out); }
  // Runs a command that must be refused with exit 2 and one error line containing `words`.
  void expect_refused(const std::string& args, const std::string& words) {
    std::string out;
    EXPECT_EQ(run(args, &out), 2) << args << "\n" << out;
    EXPECT_NE(out.find("g4convert: error: "), std::string::npos) << out;
    EXPECT_NE(out.find(words), std::string::npos) << args << "\n" << out;
  }

  ScratchDir root_;
  fs::path hf_, mcore_;
  std::map<std::string, std::string> hf_before_, mcore_before_;
};

TEST_F(DataLoss, Hf2McoreOntoItsInputIsRefusedEvenWithForce) {
  expect_refused("hf2mcore --hf " + hf_.string() + " --out " + hf_.string() + " --force", "is the input");
}

TEST_F(DataLoss, Hf2McoreOntoTheInputsParentIsRefusedEvenWithForce) {
  expect_refused("hf2mcore --hf " + hf_.string() + " --out " + root_.path().string() + " --force", "contains the input");
  EXPECT_TRUE(fs::exists(mcore_ / "latest_checkpointed_iteration.txt")) << "a sibling of the input survived";
}

TEST_F(DataLoss, Hf2McoreInsideItsInputIsRefused) {
  expect_refused("hf2mcore --hf " + hf_.string() + " --out " + (hf_ / "sub").string(), "lies inside the input");
}

TEST_F(DataLoss, Hf2McoreThroughASymlinkOrDotDotToTheInputIsRefused) {
  fs::create_directory_symlink(hf_, root_ / "alias");
  expect_refused("hf2mcore --hf " + hf_.string() + " --out " + (root_ / "alias").string() + " --force", "is the input");
  expect_refused("hf2mcore --hf " + (root_ / "alias").string() + " --out " + (root_ / "mcore" / ".." / "hf").string() + " --force",
                 "is the input");
}

TEST_F(DataLoss, Mcore2HfOntoOrInsideItsInputIsRefused) {
  expect_refused("mcore2hf --mcore " + mcore_.string() + " --out " + mcore_.string() + " --force", "is the input");
  expect_refused("mcore2hf --mcore " + mcore_.string() + " --out " + (mcore_ / "hf").string(), "lies inside the input");
  expect_refused("mcore2hf --mcore " + mcore_.string() + " --reference-hf " + hf_.string() + " --out " + hf_.string() + " --force",
                 "is the input");
}

TEST_F(DataLoss, ForwardSideOutputsNeverOverwriteAnInput) {
  const std::string base = "forward --hf " + hf_.string() + " --ids 2,3,4";
  expect_refused(base + " --logits " + (hf_ / "model.safetensors").string() + " --force", "lies inside the input");
  expect_refused(base + " --hidden " + (hf_ / "model.safetensors").string(), "lies inside the input");
  expect_refused(base + " --routing " + (hf_ / "config.json").string() + " --force", "lies inside the input");
}

TEST_F(DataLoss, ForwardSideOutputsNeedForceToReplaceAFileAndMustDiffer) {
  const fs::path logits = root_ / "logits.safetensors";
  testing::write_bytes(logits, "user data");
  const std::string base = "forward --hf " + hf_.string() + " --ids 2,3,4";
  expect_refused(base + " --logits " + logits.string(), "already exists (pass --force");
  EXPECT_EQ(testing::read_bytes(logits), "user data");
  expect_refused(base + " --logits " + (root_ / "x").string() + " --hidden " + (root_ / "x").string(), "another output of this run");
  std::string out;
  ASSERT_EQ(run(base + " --logits " + logits.string() + " --force", &out), 0) << out;
  EXPECT_NE(testing::read_bytes(logits), "user data");
}

TEST_F(DataLoss, VerifyReportAndPlotNeverOverwriteAnInputOrAnExistingFile) {
  const std::string base = "verify --hf " + hf_.string() + " --mcore " + mcore_.string();
  expect_refused(base + " --plot " + (mcore_ / "iter_0000000" / ".metadata").string() + " --force", "lies inside the input");
  expect_refused(base + " --report " + (hf_ / "config.json").string() + " --force", "lies inside the input");
  const fs::path report = root_ / "report.json";
  testing::write_bytes(report, "earlier report");
  expect_refused(base + " --report " + report.string(), "already exists (pass --force");
  EXPECT_EQ(testing::read_bytes(report), "earlier report");
  std::string out;
  ASSERT_EQ(run(base + " --report " + report.string() + " --force", &out), 0) << out;
  EXPECT_EQ(testing::read_bytes(report).front(), '{');
}

TEST_F(DataLoss, RoundtripKeepNeverReplacesUserFilesOrItsOwnInput) {
  const fs::path keep = root_ / "keep";
  fs::create_directories(keep / "hf");
  testing::write_bytes(keep / "hf" / "notes.txt", "user files");
  expect_refused("roundtrip --hf " + hf_.string() + " --keep " + keep.string(), "already exists (pass --force");
  EXPECT_EQ(testing::read_bytes(keep / "hf" / "notes.txt"), "user files");
  expect_refused("roundtrip --hf " + hf_.string() + " --keep " + root_.path().string() + " --force", "contains the input");
  // --hf DIR/hf --keep DIR: the input lives inside the kept directory.
  std::string out;
  const fs::path nested = root_ / "nested";
  fs::create_directories(nested);
  fs::copy(hf_, nested / "hf", fs::copy_options::recursive);
  const auto nested_before = snapshot(nested / "hf");
  EXPECT_EQ(run("roundtrip --hf " + (nested / "hf").string() + " --keep " + nested.string() + " --force", &out), 2) << out;
  EXPECT_NE(out.find("contains the input"), std::string::npos) << out;
  EXPECT_EQ(snapshot(nested / "hf"), nested_before);
}

TEST_F(DataLoss, RoundtripKeepWritesAFreshPairAndReplacesItOnlyWithForce) {
  const fs::path keep = root_ / "keep";
  std::string out;
  ASSERT_EQ(run("roundtrip --hf " + hf_.string() + " --keep " + keep.string(), &out), 0) << out;
  EXPECT_TRUE(fs::exists(keep / "mcore" / "latest_checkpointed_iteration.txt"));
  EXPECT_TRUE(fs::exists(keep / "hf" / "config.json"));
  EXPECT_EQ(run("roundtrip --hf " + hf_.string() + " --keep " + keep.string(), &out), 2) << out;
  ASSERT_EQ(run("roundtrip --hf " + hf_.string() + " --keep " + keep.string() + " --force", &out), 0) << out;
}

TEST_F(DataLoss, ForceNeverReplacesADirectoryThatIsNotAnEarlierOutput) {
  const fs::path home = root_ / "home";
  fs::create_directories(home / "docs");
  testing::write_bytes(home / "docs" / "thesis.tex", "years of work");
  expect_refused("hf2mcore --hf " + hf_.string() + " --out " + home.string() + " --force", "does not look like an earlier output");
  expect_refused("synth --preset tiny-e4b --out " + home.string() + " --force", "does not look like an earlier output");
  EXPECT_EQ(testing::read_bytes(home / "docs" / "thesis.tex"), "years of work");
}

TEST_F(DataLoss, NonFiniteErrorNamesTheTargetNotTheHiddenTempDirectory) {
  // A NaN in the input: the error names the input tensor, never the hidden ".NAME.g4tmp-PID" directory.
  const fs::path out_dir = root_ / "exported";
  std::string out;
  const fs::path nan_hf = root_ / "nan-hf";
  fs::copy(hf_, nan_hf, fs::copy_options::recursive);
  std::string bytes = testing::read_bytes(nan_hf / "model.safetensors");
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const auto meta = nlohmann::json::parse(bytes.substr(8, header));
  const uint64_t at = meta["model.language_model.embed_tokens.weight"]["data_offsets"][0].get<uint64_t>();
  const uint16_t nan_bf16 = 0x7fc0;
  std::memcpy(bytes.data() + 8 + header + at, &nan_bf16, 2);  // the embedding's first element
  testing::write_bytes(nan_hf / "model.safetensors", bytes);
  EXPECT_EQ(run("hf2mcore --hf " + nan_hf.string() + " --out " + out_dir.string(), &out), 2) << out;
  EXPECT_NE(out.find("NaN"), std::string::npos) << out;
  EXPECT_EQ(out.find(".g4tmp"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(out_dir));
}

}  // namespace
}  // namespace g4
