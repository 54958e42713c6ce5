// Reading torch_dist checkpoints (issues 9 and 13): every rank (0-d, [1], empty dims included) and chunking reads
// back exactly; chunks that overlap, leave a hole or lie outside the tensor are refused naming the checkpoint and
// key; a config that describes fewer layers or another model than the checkpoint holds is an error naming the
// key and shapes, never a truncated model or a signal (vocabulary padding: padded_vocab_test.cc).
#include <fstream>
#include <numeric>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_edit.h"
#include "convert/hf2mcore.h"
#include "convert/mcore2hf.h"
#include "runtime/dcp/checkpoint.h"
#include "convert/roundtrip.h"
#include "forward/forward_input.h"
#include "inspect/hf_inspect.h"
#include "mcore_edit.h"
#include "runtime/dcp/dcp_writer.h"
#include "test_support.h"
#include "verify/verify.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

// A chunking of one tensor: every chunk's offsets and sizes.
struct Chunking {
  std::vector<std::vector<int64_t>> offsets;
  std::vector<Shape> sizes;
};

// Splits `shape` into `parts[d]` near-equal pieces along each dim d (1 = unsplit).
Chunking grid(const Shape& shape, const std::vector<int64_t>& parts) {
  Chunking c{{{}}, {{}}};
  for (size_t d = 0; d < shape.size(); ++d) {
    Chunking next;
    const int64_t n = std::min<int64_t>(parts[d], std::max<int64_t>(shape[d], 1));
    for (size_t k = 0; k < c.offsets.size(); ++k)
      for (int64_t p = 0; p < n; ++p) {
        const int64_t lo = shape[d] * p / n, hi = shape[d] * (p + 1) / n;
        auto off = c.offsets[k];
        auto size = c.sizes[k];
        off.push_back(lo);
        size.push_back(hi - lo);
        next.offsets.push_back(off);
        next.sizes.push_back(size);
      }
    c = next;
  }
  return c;
}

// Element k (global row-major) holds k + 1 as int32, so placement errors and zero-filled holes both show.
dcp::TensorToWrite tensor_with_chunks(const std::string& fqn, const Shape& shape, const Chunking& c) {
  dcp::TensorToWrite t{fqn, DType::kI32, shape, {}};
  for (size_t k = 0; k < c.offsets.size(); ++k) {
    const auto off = c.offsets[k];
    const Shape sizes = c.sizes[k];
    t.chunks.push_back({off, sizes, [shape, off, sizes](uint64_t offset, std::span<std::byte> out) {
                          for (size_t b = 0; b < out.size(); b += 4) {
                            uint64_t local = (offset + b) / 4, global = 0, inner = 1;
                            std::vector<int64_t> pos(sizes.size());
                            for (size_t d = sizes.size(); d-- > 0;) pos[d] = static_cast<int64_t>(local % sizes[d]), local /= sizes[d];
                            for (size_t d = sizes.size(); d-- > 0;) global += (pos[d] + off[d]) * inner, inner *= shape[d];
                            const int32_t v = static_cast<int32_t>(global + 1);
                            std::memcpy(out.data() + b, &v, 4);
                          }
                          return Status();
                        }});
  }
  return t;
}

std::vector<int32_t> expected_values(uint64_t first, uint64_t count) {
  std::vector<int32_t> v(count);
  std::iota(v.begin(), v.end(), static_cast<int32_t>(first + 1));
  return v;
}

std::vector<int32_t> slab_values(const dcp::Slab& slab) {
  std::vector<int32_t> v(slab.size / 4);
  slab.copy(0, std::as_writable_bytes(std::span(v)));
  return v;
}

struct Case {
  Shape shape;
  std::vector<int64_t> parts;  // chunks per dim
};

std::string case_name(const Case& c) { return shape_to_string(c.shape) + " split " + shape_to_string(c.parts); }

TEST(McoreRead, EveryRankAndChunkingReadsBackExactlyWholeAndPerStackedPosition) {
  const std::vector<Case> cases = {
      {{}, {}},                 // 0-d (a tower's clip bound)
      {{1}, {1}},               // one element
      {{7}, {1}}, {{7}, {3}},   // 1-D whole and split
      {{0}, {1}},               // empty
      {{4, 3}, {1, 1}}, {{4, 3}, {4, 1}}, {{4, 3}, {2, 3}}, {{4, 3}, {1, 2}},
      {{2, 0, 3}, {2, 1, 1}},   // an empty dim in the middle
      {{3, 4, 5}, {1, 1, 1}}, {{3, 4, 5}, {3, 1, 1}}, {{3, 4, 5}, {3, 2, 1}}, {{3, 4, 5}, {1, 1, 2}}, {{3, 4, 5}, {3, 2, 2}},
      {{2, 3, 4, 5}, {1, 1, 1, 1}}, {{2, 3, 4, 5}, {2, 3, 1, 1}}, {{2, 3, 4, 5}, {2, 1, 2, 1}}, {{2, 3, 4, 5}, {1, 2, 1, 3}},
      {{1, 1, 1, 1}, {1, 1, 1, 1}},
  };
  ScratchDir dir;
  std::vector<dcp::TensorToWrite> tensors;
  for (size_t k = 0; k < cases.size(); ++k) tensors.push_back(tensor_with_chunks("t" + std::to_string(k), cases[k].shape, grid(cases[k].shape, cases[k].parts)));
  ASSERT_OK(dcp::write_dcp(dir.path(), tensors, {}, {2, nullptr, nullptr}));
  auto ckpt = dcp::Checkpoint::open(dir.path());
  ASSERT_OK(ckpt);
  for (size_t k = 0; k < cases.size(); ++k) {
    const Shape& shape = cases[k].shape;
    const std::string key = "t" + std::to_string(k);
    SCOPED_TRACE(case_name(cases[k]));
    const uint64_t numel = checked_numel(shape).value();
    auto whole = (*ckpt)->read_slab(key, {}, {}, shape);
    ASSERT_OK(whole);
    EXPECT_EQ((*whole)->size, numel * 4);
    EXPECT_EQ(slab_values(**whole), expected_values(0, numel));
    // Chunks that span every dim after the parameter's first are read as views, without a copy.
    bool trailing_whole = true;
    for (size_t d = 1; d < shape.size(); ++d) trailing_whole &= cases[k].parts[d] == 1 || shape[d] <= 1;
    if (trailing_whole) {
      EXPECT_TRUE((*whole)->owned.empty());
    }
    // One and two leading dims as stacked axes (a layer; a layer's expert).
    for (size_t lead = 1; lead <= std::min<size_t>(2, shape.size()); ++lead) {
      const std::vector<int64_t> axes(shape.begin(), shape.begin() + static_cast<std::ptrdiff_t>(lead));
      const Shape own(shape.begin() + static_cast<std::ptrdiff_t>(lead), shape.end());
      const uint64_t per = checked_numel(own).value();
      const uint64_t positions = checked_numel(axes).value();
      for (uint64_t p = 0; p < positions; ++p) {
        std::vector<int64_t> index(lead);
        for (size_t d = lead, q = p; d-- > 0;) index[d] = static_cast<int64_t>(q % axes[d]), q /= axes[d];
        auto slab = (*ckpt)->read_slab(key, index, axes, own);
        ASSERT_OK(slab);
        EXPECT_EQ(slab_values(**slab), expected_values(p * per, per)) << shape_to_string(index);
      }
    }
  }
}

TEST(McoreRead, AStoredShapeOtherThanTheConfigsIsRefusedNamingKeyAndBothShapesStackedAxisIncluded) {
  ScratchDir dir;
  const Shape shape = {6, 4, 3};
  ASSERT_OK(dcp::write_dcp(dir.path(), {tensor_with_chunks("decoder.layers.x", shape, grid(shape, {6, 1, 1}))}, {}, {}));
  auto ckpt = dcp::Checkpoint::open(dir.path());
  ASSERT_OK(ckpt);
  auto fewer = (*ckpt)->read_slab("decoder.layers.x", {0}, {3}, {4, 3});  // a config with 3 layers
  ASSERT_FALSE(fewer.ok());
  const std::string m = fewer.status().message();
  EXPECT_NE(m.find("'decoder.layers.x' has shape [6, 4, 3], the config implies [3, 4, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find(dir.path().string()), std::string::npos) << m;
  EXPECT_FALSE((*ckpt)->read_slab("decoder.layers.x", {0}, {6}, {4, 2}).ok());  // a smaller row
  EXPECT_FALSE((*ckpt)->read_slab("decoder.layers.x", {}, {}, {4, 3}).ok());    // no stacked axis
}

// Writes [4, 3] in four row chunks, then applies `plant` to .metadata and reads it back.
Status read_planted(const std::function<void(const fs::path&)>& plant, std::string* inspect_problem = nullptr) {
  ScratchDir dir;
  const Shape shape = {4, 3};
  EXPECT_OK(dcp::write_dcp(dir.path(), {tensor_with_chunks("decoder.layers.w", shape, grid(shape, {4, 1}))}, {}, {}));
  plant(dir.path());
  auto ckpt = dcp::Checkpoint::open(dir.path());
  if (!ckpt.ok()) return ckpt.status();  // a chunk outside the tensor: the .metadata does not parse
  if (inspect_problem) *inspect_problem = (*ckpt)->find("decoder.layers.w")->chunk_problem;
  Status whole = (*ckpt)->read_slab("decoder.layers.w", {}, {}, shape).status();
  for (int64_t l = 0; l < 4; ++l)  // every layer, the untouched ones too: the tensor is inconsistent as a whole
    EXPECT_EQ((*ckpt)->read_slab("decoder.layers.w", {l}, {4}, {3}).ok(), whole.ok()) << l;
  return whole;
}

TEST(McoreRead, OverlappingChunksWithAHoleOfTheSameSizeAreRefusedNamingCheckpointAndKey) {
  std::string problem;
  Status s = read_planted([](const fs::path& d) { testing::move_dcp_chunk(d, "decoder.layers.w", {2, 0}, {1, 0}); }, &problem);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(".metadata: 'decoder.layers.w'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("overlap"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  EXPECT_EQ(problem, s.message());
}

TEST(McoreRead, AChunkOutsideTheTensorOrAHoleIsRefused) {
  Status outside = read_planted([](const fs::path& d) { testing::move_dcp_chunk(d, "decoder.layers.w", {3, 0}, {4, 0}); });
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.message().find("lies outside"), std::string::npos) << outside.message();
  // Every row chunk claiming two of the three columns: a hole and no overlap.
  Status hole = read_planted([](const fs::path& d) {
    testing::edit_dcp_metadata(d, [](const torch::PyPtr& v) { return testing::is_torch_size(*v, {1, 3}) ? testing::torch_size({1, 2}) : v; });
  });
  ASSERT_FALSE(hole.ok());
  EXPECT_NE(hole.message().find("the chunks cover 8 of 12 elements"), std::string::npos) << hole.message();
}

// --- Whole checkpoints through every command.

fs::path convert_tiny(const std::string& name, const fs::path& out) {
  Hf2McoreOptions o;
  o.hf = tiny(name);
  o.out = out;
  EXPECT_OK(hf2mcore(o));
  return out / "iter_0000000";
}

TEST(McoreRead, OverlapAndHoleInAConvertedCheckpointFailMcore2hfAndAreAnInspectProblem) {
  ScratchDir dir;
  const fs::path iter = convert_tiny("tiny-31b", dir / "m");
  const std::string key = "language_model.decoder.layers.mlp.linear_fc1.weight";
  testing::move_dcp_chunk(iter, key, {2, 0, 0}, {1, 0, 0});
  std::string out;
  EXPECT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "hf").string(), &out), 2) << out;
  EXPECT_NE(out.find("'" + key + "': chunk"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "hf"));
  auto r = inspect_mcore(dir / "m", {false, nullptr});
  ASSERT_OK(r);
  bool reported = false;
  for (const auto& p : r->problems) reported |= p.kind == "index" && p.message.find(key) != std::string::npos;
  EXPECT_TRUE(reported);
}

// hf_config.json of a converted checkpoint rewritten by `edit` (the text config, either form).
void edit_hf_config(const fs::path& iter, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(iter / kHfConfigFile);
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j.contains("text_config") ? j["text_config"] : j);
  testing::write_bytes(iter / kHfConfigFile, j.dump(2));
}

void keep_first_layers(nlohmann::json& text, int n) {
  text["num_hidden_layers"] = n;
  auto types = text["layer_types"];
  text["layer_types"] = nlohmann::json(std::vector<nlohmann::json>(types.begin(), types.begin() + n));
  if (text.contains("per_layer_config")) {
    nlohmann::json kept = nlohmann::json::object();
    for (const auto& [k, v] : text["per_layer_config"].items())
      if (std::stoi(k) < n) kept[k] = v;
    text["per_layer_config"] = kept;
  }
  if (text.contains("num_kv_shared_layers")) text["num_kv_shared_layers"] = 0;
}

TEST(McoreRead, AConfigWithFewerLayersThanTheCheckpointFailsMcore2hfAndForwardNamingKeyAndShapes) {
  for (const char* name : {"tiny-31b", "tiny-e2b"}) {  // stacked layer axes; per-layer keys
    SCOPED_TRACE(name);
    ScratchDir dir;
    const fs::path iter = convert_tiny(name, dir / "m");
    const bool per_layer = std::string(name) == "tiny-e2b";
    edit_hf_config(iter, [&](nlohmann::json& t) {
      if (!per_layer) return keep_first_layers(t, 3);
      // E2B's per-layer keys: 4 layers whose last (full, KV-shared, double-wide) keeps the layout per-layer.
      keep_first_layers(t, 4);
      t["layer_types"][3] = "full_attention";
      t["num_kv_shared_layers"] = 1;
      if (t.contains("per_layer_config") && t["per_layer_config"].contains("1")) t["per_layer_config"]["3"] = t["per_layer_config"]["1"];
    });
    std::string out;
    EXPECT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "hf").string(), &out), 2) << out;
    EXPECT_FALSE(fs::exists(dir / "hf"));
    std::string fwd;
    EXPECT_EQ(testing::run_g4convert("forward --mcore " + (dir / "m").string() + " --ids 2,17,99", &fwd), 2) << fwd;
    if (!per_layer) {
      for (const std::string* o : {&out, &fwd}) {
        EXPECT_NE(o->find("language_model.decoder.layers."), std::string::npos) << *o;
        EXPECT_NE(o->find("the config implies [3, "), std::string::npos) << *o;
        EXPECT_NE(o->find("has shape [6, "), std::string::npos) << *o;
      }
    } else {
      for (const std::string* o : {&out, &fwd}) {
        EXPECT_NE(o->find("'decoder.layers.4."), std::string::npos) << *o;
        EXPECT_NE(o->find("is a layer the config does not have (it has 4 layers)"), std::string::npos) << *o;
      }
    }
  }
}

TEST(McoreRead, VerifyOfCheckpointsOfDifferentStructureIsAnErrorNamingTheFirstDifferingField) {
  ScratchDir dir;
  convert_tiny("tiny-31b", dir / "dense");
  convert_tiny("tiny-e2b", dir / "e2b");
  std::string out;
  EXPECT_EQ(testing::run_g4convert("verify --hf " + tiny("tiny-26b-a4b").string() + " --mcore " + (dir / "dense").string(), &out), 2) << out;
  EXPECT_NE(out.find("enable_moe_block: true (HF) vs false (Megatron)"), std::string::npos) << out;
  EXPECT_EQ(testing::run_g4convert("verify --hf " + tiny("tiny-26b-a4b").string() + " --mcore " + (dir / "e2b").string(), &out), 2) << out;
  EXPECT_NE(out.find("form: conditional (HF) vs causal (Megatron)"), std::string::npos) << out;
}

// tiny-e4b with the audio tower's 0-d clip bounds (what transformers saves for clipped linears) and a
// one-element tensor: every path carries them.
TEST(McoreRead, ZeroDimensionalTowerTensorsSurviveEveryPath) {
  ScratchDir dir;
  std::vector<testing::Tensor> extra;
  auto scalar = [](const std::string& name, Shape shape, float v) {
    testing::Tensor t{{name, DType::kF32, std::move(shape)}, std::string(4, '\0')};
    std::memcpy(t.bytes.data(), &v, 4);
    return t;
  };
  extra.push_back(scalar("model.audio_tower.layers.0.feed_forward1.ffw_layer_1.input_max", {}, 3.5f));
  extra.push_back(scalar("model.audio_tower.layers.0.feed_forward1.ffw_layer_1.input_min", {}, -3.25f));
  extra.push_back(scalar("model.audio_tower.layers.0.feed_forward1.ffw_layer_1.output_max", {1}, 7.0f));
  testing::copy_checkpoint(tiny("tiny-e4b"), dir / "hf", [](testing::Tensor&) { return true; }, extra);
  for (const char* f : {"generation_config.json"})
    if (fs::exists(tiny("tiny-e4b") / f)) fs::copy_file(tiny("tiny-e4b") / f, dir / "hf" / f);
  std::string out;
  ASSERT_EQ(testing::run_g4convert("hf2mcore --hf " + (dir / "hf").string() + " --out " + (dir / "m").string(), &out), 0) << out;
  EXPECT_EQ(testing::run_g4convert("inspect " + (dir / "m").string() + " --scan", &out), 0) << out;
  ASSERT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "back").string(), &out), 0) << out;
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(dir / "hf", dir / "back", report));
  EXPECT_TRUE(report.identical());
  EXPECT_EQ(testing::run_g4convert("roundtrip --hf " + (dir / "hf").string(), &out), 0) << out;
  EXPECT_EQ(testing::run_g4convert("verify --hf " + (dir / "hf").string() + " --mcore " + (dir / "m").string(), &out), 0) << out;
  EXPECT_EQ(testing::run_g4convert("forward --mcore " + (dir / "m").string() + " --ids 2,17,99", &out), 0) << out;
}

}  // namespace
}  // namespace g4::convert
