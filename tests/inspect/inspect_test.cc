#include "inspect/hf_inspect.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "convert/hf2mcore.h"
#include "runtime/dcp/checkpoint.h"
#include "gemma4/synth.h"
#include "runtime/safetensors_set.h"
#include "runtime/safetensors_writer.h"
#include "checkpoint_edit.h"
#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::copy_checkpoint;
using testing::ScratchDir;
using testing::Tensor;

fs::path testdata(const std::string& name) { return testing::source_dir() / "testdata" / name; }

std::vector<std::string> problems_of_kind(const InspectReport& r, const std::string& kind) {
  std::vector<std::string> out;
  for (const auto& p : r.problems)
    if (p.kind == kind) out.push_back(p.message);
  return out;
}

TEST(Inspect, CheckpointsSavedByTransformersHaveNoProblems) {
  for (const char* name : {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"}) {
    auto r = inspect_hf(testdata(name), {.scan = true});
    ASSERT_OK(r);
    EXPECT_TRUE(r->problems.empty()) << name << ": " << inspect_report_text(*r);
    EXPECT_EQ(r->variant, name);
  }
  auto moe = inspect_hf(testdata("tiny-26b-a4b"), {});
  EXPECT_GT(moe->tower_tensors, 0u) << "the vision tower is recognised and passed through";
}

TEST(Inspect, ReportsMissingTensorsByName) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-31b"), dir / "m", [](Tensor& t) {
    return t.spec.name != "model.language_model.layers.2.self_attn.k_proj.weight";
  });
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  auto missing = problems_of_kind(*r, "missing");
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_NE(missing[0].find("layers.2.self_attn.k_proj.weight' [64, 64]"), std::string::npos) << missing[0];
}

TEST(Inspect, ReportsShapesThatContradictTheConfigWithTheLayerGeometry) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-26b-a4b"), dir / "m", [](Tensor& t) {
    if (t.spec.name == "model.language_model.layers.5.self_attn.k_proj.weight") {
      t.spec.shape = {128, 64};  // as if the layer had 2 global KV heads
      t.bytes.append(t.bytes);
    }
    return true;
  });
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  auto shape = problems_of_kind(*r, "shape");
  ASSERT_EQ(shape.size(), 1u);
  EXPECT_NE(shape[0].find("shape [128, 64], expected [64, 64] (layer 5 is full_attention: head_dim 64, 1 KV heads"),
            std::string::npos) << shape[0];
}

TEST(Inspect, VProjOnAKeqVLayerIsUnexpected) {
  ScratchDir dir;
  Tensor v{{"model.language_model.layers.2.self_attn.v_proj.weight", DType::kBF16, {64, 64}}, std::string(64 * 64 * 2, '\0')};
  copy_checkpoint(testdata("tiny-31b"), dir / "m", [](Tensor&) { return true; }, {v});
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  auto unexpected = problems_of_kind(*r, "unexpected");
  ASSERT_EQ(unexpected.size(), 1u);
  EXPECT_NE(unexpected[0].find("layers.2.self_attn.v_proj.weight"), std::string::npos);
}

TEST(Inspect, NamesThePrefixOfTheOtherFormWhenKeysAndConfigDisagree) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor& t) {
    if (t.spec.name.rfind("model.", 0) == 0) t.spec.name = "model.language_model." + t.spec.name.substr(6);
    return true;
  });
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  bool named = false;
  for (const auto& m : problems_of_kind(*r, "unexpected"))
    named |= m.find("use the 'model.language_model.' prefix of Gemma4ForConditionalGeneration") != std::string::npos;
  EXPECT_TRUE(named) << inspect_report_text(*r);
}

TEST(Inspect, TowerTensorsNeedTheirConfig) {
  ScratchDir dir;
  Tensor stray{{"model.vision_tower.patch_embedder.input_proj.weight", DType::kF32, {2}}, std::string(8, '\0')};
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor&) { return true; }, {stray});
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  auto unexpected = problems_of_kind(*r, "unexpected");
  ASSERT_FALSE(unexpected.empty());
  EXPECT_NE(unexpected[0].find("no vision_config"), std::string::npos) << unexpected[0];
}

TEST(Inspect, ScanFindsNaNAndInfOnlyWhenAsked) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor& t) {
    if (t.spec.name == "model.layers.3.mlp.up_proj.weight") {
      float nan = std::nanf(""), inf = INFINITY;
      std::memcpy(t.bytes.data() + 8, &nan, 4);
      std::memcpy(t.bytes.data() + 12, &inf, 4);
    }
    return true;
  });
  auto quick = inspect_hf(dir / "m", {});
  ASSERT_OK(quick);
  EXPECT_TRUE(quick->problems.empty());
  ThreadPool pool(2);
  auto scanned = inspect_hf(dir / "m", {.scan = true, .pool = &pool});
  ASSERT_OK(scanned);
  auto bad = problems_of_kind(*scanned, "non-finite");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].find("'model.layers.3.mlp.up_proj.weight' has 1 NaN and 1 Inf values"), std::string::npos) << bad[0];
}

TEST(Inspect, TiedHeadThatDiffersFromTheEmbeddingIsAProblem) {
  ScratchDir dir;
  Tensor head{{"lm_head.weight", DType::kF32, {128, 64}}, std::string(128 * 64 * 4, '\0')};
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor&) { return true; }, {head});
  auto r = inspect_hf(dir / "m", {.scan = true});
  ASSERT_OK(r);
  EXPECT_EQ(problems_of_kind(*r, "tied-head").size(), 1u);
}

TEST(Inspect, DuplicateTensorsAcrossShardsAreReported) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor&) { return true; }, {}, 200'000);
  // Put a copy of a tensor from shard 1 into a new shard that the index also names.
  auto set = SafetensorsSet::open_dir(dir / "m");
  ASSERT_OK(set);
  ASSERT_TRUE(set->sharded());
  const auto* norm = set->find("model.norm.weight");
  std::string bytes(reinterpret_cast<const char*>(set->data(*norm).data()), norm->info->nbytes());
  std::string header = R"({"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},)"
                       R"("extra.weight":{"dtype":"F32","shape":[1],"data_offsets":[256,260]}})";
  testing::write_bytes(dir / "m" / "model-extra.safetensors", testing::safetensors_bytes(header, bytes + std::string(4, '\0')));
  auto index = nlohmann::json::parse(testing::read_bytes(dir / "m" / "model.safetensors.index.json"));
  index["weight_map"]["extra.weight"] = "model-extra.safetensors";
  testing::write_bytes(dir / "m" / "model.safetensors.index.json", index.dump());
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  EXPECT_EQ(problems_of_kind(*r, "duplicate").size(), 1u) << inspect_report_text(*r);
  EXPECT_EQ(problems_of_kind(*r, "unexpected").size(), 1u);
}

TEST(Inspect, OlderEseriesUploadsWithSharedKvAreFine) {
  ScratchDir dir;
  gemma4::SynthOptions o;
  o.preset = "tiny-e4b";
  o.out = dir / "m";
  o.with_shared_kv = true;
  ASSERT_OK(gemma4::synth_checkpoint(o));
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  EXPECT_TRUE(r->problems.empty()) << inspect_report_text(*r);
  EXPECT_EQ(r->redundant_shared_kv, 2u * 3u) << "k_proj, k_norm, v_proj on layers 4 and 5";
}

TEST(InspectCli, ExitCodesAndOneLineErrors) {
  ScratchDir dir;
  std::string out;
  EXPECT_EQ(testing::run_g4convert("inspect " + testdata("tiny-31b").string(), &out), 0) << out;
  EXPECT_NE(out.find("variant     tiny-31b"), std::string::npos) << out;

  EXPECT_EQ(testing::run_g4convert("inspect --json " + testdata("tiny-26b-a4b").string(), &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["structure"], "26b-a4b");
  EXPECT_EQ(j["layers"][2]["k_eq_v"], true);

  copy_checkpoint(testdata("tiny-31b"), dir / "missing", [](Tensor& t) { return t.spec.name.find("layers.0.") == std::string::npos; });
  EXPECT_EQ(testing::run_g4convert("inspect " + (dir / "missing").string(), &out), 1) << out;

  fs::create_directories(dir / "corrupt");
  fs::copy_file(testdata("tiny-31b") / "config.json", dir / "corrupt" / "config.json");
  std::string good = testing::read_bytes(testdata("tiny-31b") / "model.safetensors");
  testing::write_bytes(dir / "corrupt" / "model.safetensors", good.substr(0, good.size() / 2));
  // A truncated file is a problem of the input (exit 1), listed tensor by tensor, not an error (issue 9).
  EXPECT_EQ(testing::run_g4convert("inspect " + (dir / "corrupt").string(), &out), 1) << out;
  EXPECT_NE(out.find("[safetensors] " + (dir / "corrupt" / "model.safetensors").string() + ": tensor '"), std::string::npos) << out;
  EXPECT_NE(out.find("data section (truncated?)"), std::string::npos) << out;

  testing::write_bytes(dir / "corrupt" / "config.json", "{\"model_type\": \"gemma4_text\", \"hidden_size\": -3}");
  EXPECT_EQ(testing::run_g4convert("inspect " + (dir / "corrupt").string(), &out), 2);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("config.json: hidden_size: must be positive"), std::string::npos) << out;
}

// Rewrites the header of a safetensors file through `edit`, keeping its data section minus `cut` trailing bytes.
void edit_header(const fs::path& file, const std::function<void(nlohmann::json&)>& edit, size_t cut = 0) {
  const std::string bytes = testing::read_bytes(file);
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, len));
  edit(header);
  const std::string data = bytes.substr(8 + len);
  testing::write_bytes(file, testing::safetensors_bytes(header.dump(), data.substr(0, data.size() - cut)));
}

TEST(Inspect, StructuralSafetensorsProblemsAreAllListedAndTheRestIsStillChecked) {
  ScratchDir dir;
  const std::string dropped = "model.language_model.layers.2.self_attn.k_proj.weight";
  copy_checkpoint(testdata("tiny-31b"), dir / "m", [&](Tensor& t) { return t.spec.name != dropped; });
  const fs::path file = dir / "m" / "model.safetensors";
  const std::string unknown = "model.language_model.layers.0.mlp.up_proj.weight";
  const std::string resized = "model.language_model.layers.1.mlp.down_proj.weight";
  std::string last;
  uint64_t last_begin = 0;
  edit_header(file, [&](nlohmann::json& h) {
    h[unknown]["dtype"] = "Q4_K";
    h[resized]["shape"][0] = h[resized]["shape"][0].get<int64_t>() * 2;
    for (const auto& [name, e] : h.items())
      if (name != "__metadata__" && e["data_offsets"][0].get<uint64_t>() >= last_begin) last = name, last_begin = e["data_offsets"][0];
  }, /*cut=*/2);
  auto r = inspect_hf(dir / "m", {.scan = true});
  ASSERT_OK(r);
  const auto structural = problems_of_kind(*r, "safetensors");
  ASSERT_EQ(structural.size(), 3u) << inspect_report_text(*r);
  for (const std::string& p : structural) EXPECT_EQ(p.rfind(file.string() + ": tensor '", 0), 0u) << p;
  EXPECT_NE(structural[0].find("'" + unknown + "': unknown dtype 'Q4_K'"), std::string::npos) << structural[0];
  EXPECT_NE(structural[1].find("'" + resized + "': byte size"), std::string::npos) << structural[1];
  EXPECT_NE(structural[2].find("'" + last + "': bytes ["), std::string::npos) << structural[2];
  EXPECT_NE(structural[2].find("(truncated?)"), std::string::npos) << structural[2];
  const auto missing = problems_of_kind(*r, "missing");
  ASSERT_EQ(missing.size(), 1u) << "unreadable tensors are not also reported missing: " << inspect_report_text(*r);
  EXPECT_NE(missing[0].find(dropped), std::string::npos);
  EXPECT_TRUE(r->scanned) << "the readable tensors are still scanned";

  std::string out;
  EXPECT_EQ(testing::run_g4convert("inspect " + (dir / "m").string(), &out), 1) << out;
  EXPECT_NE(out.find("unknown dtype 'Q4_K'"), std::string::npos) << out;
}

TEST(Inspect, OffsetsThatOverlapOrLeaveGapsAreProblemsWithoutScan) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor&) { return true; });
  std::string first;
  edit_header(dir / "m" / "model.safetensors", [&](nlohmann::json& h) {
    for (const auto& [name, e] : h.items())
      if (name != "__metadata__" && e["data_offsets"][0] == 0) first = name;
    auto& e = h[first]["data_offsets"];
    e[0] = e[0].get<uint64_t>() + 4;  // leaves a 4-byte gap before it and overlaps the next tensor by 4 bytes
    e[1] = e[1].get<uint64_t>() + 4;
  });
  auto r = inspect_hf(dir / "m", {});
  ASSERT_OK(r);
  const auto structural = problems_of_kind(*r, "safetensors");
  ASSERT_EQ(structural.size(), 2u) << inspect_report_text(*r);
  EXPECT_NE(structural[0].find("'" + first + "': gap of 4 bytes"), std::string::npos) << structural[0];
  EXPECT_NE(structural[1].find("overlap tensor '" + first + "'"), std::string::npos) << structural[1];
  EXPECT_EQ(r->problems.size(), 2u) << "both tensors are still readable and checked: " << inspect_report_text(*r);
}

TEST(Inspect, UnreadableAndMissingShardsAreProblemsAndTheOtherShardsAreChecked) {
  ScratchDir dir;
  copy_checkpoint(testdata("tiny-e2b"), dir / "m", [](Tensor&) { return true; }, {}, 100'000);
  auto index = nlohmann::json::parse(testing::read_bytes(dir / "m" / "model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) shards.insert(shard.get<std::string>());
  ASSERT_GE(shards.size(), 3u);
  const fs::path broken = dir / "m" / *shards.begin(), gone = dir / "m" / *std::next(shards.begin());
  std::string bytes = testing::read_bytes(broken);
  bytes.replace(0, 8, std::string(8, '\xff'));  // a header length past any limit
  testing::write_bytes(broken, bytes);
  fs::remove(gone);
  auto r = inspect_hf(dir / "m", {.scan = true});
  ASSERT_OK(r);
  const auto structural = problems_of_kind(*r, "safetensors");
  ASSERT_EQ(structural.size(), 2u) << inspect_report_text(*r);
  EXPECT_NE(structural[0].find(broken.string() + ": header length"), std::string::npos) << structural[0];
  EXPECT_EQ(structural[1], gone.string() + ": shard named by model.safetensors.index.json is missing");
  EXPECT_EQ(r->problems.size(), 2u) << "the tensors of those shards are not also missing: " << inspect_report_text(*r);
  EXPECT_EQ(r->files, shards.size() - 2);
}

TEST(SynthCli, WritesAnInspectableCheckpointAndRefusesToOverwrite) {
  ScratchDir dir;
  std::string out;
  const std::string target = (dir / "m").string();
  ASSERT_EQ(testing::run_g4convert("synth --preset tiny-e4b --out " + target + " --seed 3 --form conditional --json", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["variant"], "tiny-e4b");
  EXPECT_EQ(testing::run_g4convert("inspect " + target + " --scan", &out), 0) << out;
  EXPECT_EQ(testing::run_g4convert("synth --preset tiny-e4b --out " + target, &out), 2);
  EXPECT_NE(out.find("already exists (pass --force"), std::string::npos) << out;
  EXPECT_EQ(testing::run_g4convert("synth --preset tiny-e4b --out " + target + " --force --quiet", &out), 0) << out;
  EXPECT_TRUE(out.empty()) << out;
}

}  // namespace
}  // namespace g4

namespace g4 {
namespace {

TEST(InspectMcore, ConvertedTinyCheckpointsHaveNoProblemsAndAreRecognised) {
  testing::ScratchDir dir;
  for (const char* name : {"tiny-e2b", "tiny-26b-a4b"}) {
    convert::Hf2McoreOptions o;
    o.hf = testing::source_dir() / "testdata" / name;
    o.out = dir / name;
    ASSERT_OK(convert::hf2mcore(o));
    EXPECT_FALSE(is_hf_checkpoint(dir / name));
    auto r = inspect_mcore(dir / name, {true, nullptr});
    ASSERT_OK(r);
    EXPECT_EQ(r->format, "megatron");
    EXPECT_EQ(r->written_by, "g4convert");
    EXPECT_EQ(r->structure, std::string(name).substr(5));
    EXPECT_TRUE(r->problems.empty()) << r->problems[0].message;
    EXPECT_TRUE(r->scanned);
    EXPECT_EQ(r->layer_keys, std::string(name) == "tiny-e2b" ? "per-layer" : "stacked");
  }
}

TEST(InspectMcore, TowerCheckpointsWithClippedLinearsAreCleanOnBothSidesAndKeepTheirScalarBoundsZeroD) {
  testing::ScratchDir dir;
  for (const char* name : {"tiny-e4b-vla", "tiny-26b-a4b-vl"}) {
    auto hf = inspect_hf(testing::source_dir() / "testdata" / name, {true, nullptr});
    ASSERT_OK(hf);
    EXPECT_TRUE(hf->problems.empty()) << name << ": " << inspect_report_text(*hf);
    EXPECT_GT(hf->tower_tensors, 0u);
    convert::Hf2McoreOptions o;
    o.hf = testing::source_dir() / "testdata" / name;
    o.out = dir / name;
    ASSERT_OK(convert::hf2mcore(o));
    auto r = inspect_mcore(dir / name, {true, nullptr});
    ASSERT_OK(r);
    EXPECT_TRUE(r->problems.empty()) << name << ": " << r->problems[0].message;
    EXPECT_TRUE(r->scanned);
    EXPECT_EQ(r->tower_tensors, hf->tower_tensors) << name;
    auto ckpt = dcp::Checkpoint::open(dir / name);
    ASSERT_OK(ckpt);
    const auto* bound = (*ckpt)->find("vision_tower.encoder.layers.0.self_attn.q_proj.input_max");
    ASSERT_NE(bound, nullptr) << name;
    EXPECT_TRUE(bound->shape.empty()) << shape_to_string(bound->shape);
  }
}

TEST(InspectMcore, ReportsKeysAndShapesThatDisagreeWithTheConfig) {
  testing::ScratchDir dir;
  convert::Hf2McoreOptions o;
  o.hf = testing::source_dir() / "testdata" / "tiny-e4b";
  o.out = dir / "m";
  ASSERT_OK(convert::hf2mcore(o));
  auto r = inspect_mcore(dir / "m", {false, nullptr}, testing::source_dir() / "testdata" / "tiny-31b" / "config.json");
  ASSERT_OK(r);
  std::set<std::string> kinds;
  for (const auto& p : r->problems) kinds.insert(p.kind);
  EXPECT_TRUE(kinds.count("shape") || kinds.count("missing")) << r->problems.size();
  EXPECT_TRUE(kinds.count("unexpected"));  // E4B's PLE tensors are not part of a 31B mapping
}

TEST(InspectMcore, StorageRecordsPastTheEndOfTheirFileAreProblemsWithoutScan) {
  testing::ScratchDir dir;
  convert::Hf2McoreOptions o;
  o.hf = testing::source_dir() / "testdata" / "tiny-31b";
  o.out = dir / "m";
  ASSERT_OK(convert::hf2mcore(o));
  for (const auto& e : fs::directory_iterator(dir / "m" / "iter_0000000"))
    if (e.path().extension() == ".distcp") fs::resize_file(e.path(), fs::file_size(e.path()) - 1);  // the last record of each
  auto r = inspect_mcore(dir / "m", {});
  ASSERT_OK(r);
  size_t outside = 0;
  for (const auto& p : r->problems)
    if (p.message.find("outside its .distcp file") != std::string::npos ||
        p.message.find("outside their .distcp file (truncated?), first __") != std::string::npos)
      ++outside;
  EXPECT_GT(outside, 0u) << inspect_report_text(*r);
  EXPECT_FALSE(r->scanned);
}

}  // namespace
}  // namespace g4
