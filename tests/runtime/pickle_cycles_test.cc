// The pickle reader builds acyclic values with exact depths: a value is never modified once nested in another,
// so self-references (which used to be accepted and leak as shared_ptr cycles, and to send recursive walkers
// into endless recursion) and nesting deepened behind a parent's back are refused.
#include <string>

#include "runtime/dcp/dcp_metadata.h"
#include "runtime/torch/pickle_reader.h"
#include "runtime/torch/torch_save.h"
#include "test_support.h"

namespace g4::torch {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }
PickleOptions allow_all() { return {[](const std::string&) { return true; }}; }

std::string load_error(const std::string& pickle) {
  auto r = pickle_loads(bytes_of(pickle), allow_all(), "cyclic.pkl");
  return r.ok() ? "(accepted)" : r.status().message();
}

// A literal with embedded NULs, without counting its length by hand.
template <size_t N>
std::string raw(const char (&s)[N]) { return std::string(s, N - 1); }

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

TEST(PickleCycles, AListAppendedToItselfIsRefused) {
  // [] MEMOIZE, BINGET 0, APPEND: l.append(l)
  EXPECT_EQ(load_error(raw("\x80\x02]q\x00h\x00" "a.")),
            "cyclic.pkl: pickle puts a container inside itself (self-referencing values are not supported)");
}

TEST(PickleCycles, ADictHoldingItselfIsRefused) {
  // {} MEMOIZE, 'k', BINGET 0, SETITEM: d['k'] = d
  EXPECT_NE(load_error(raw("\x80\x02}q\x00X\x01\x00\x00\x00kh\x00s.")).find("inside itself"), std::string::npos);
}

TEST(PickleCycles, ACycleThroughTwoListsIsRefused) {
  // a = [], b = [], b.append(a), a.append(b): the second append modifies `a`, already nested in `b`.
  EXPECT_NE(load_error(raw("\x80\x02]q\x00]q\x01h\x00" "aa.")).find("APPEND modifies a value already nested"),
            std::string::npos);
}

TEST(PickleCycles, AnObjectWhoseStateHoldsItselfIsRefused) {
  // obj = C.__new__(C); MEMOIZE; state = {'s': obj}; BUILD(obj, state)
  const std::string p = raw("\x80\x02" "c__main__\nC\n)\x81q\x00}X\x01\x00\x00\x00sh\x00s" "b.");
  EXPECT_NE(load_error(p).find("BUILD modifies a value already nested"), std::string::npos) << load_error(p);
}

TEST(PickleCycles, DeepeningANestedValueThroughTheMemoIsRefused) {
  // L0 = []; then, 300 times: L(k) = [], L(k-1).append(L(k)), push L(k) again from the memo. Every list but the
  // last is modified after it was nested, which used to leave stale depths: a 300-deep value accepted under
  // a 200-level bound. A MARK ... TUPLE gathers what the stack keeps so that the pickle ends cleanly.
  std::string p = raw("\x80\x02(]r") + u32(0);
  for (uint32_t k = 1; k <= 300; ++k) p += "]r" + u32(k) + "aj" + u32(k);
  p += "t.";
  EXPECT_NE(load_error(p).find("APPEND modifies a value already nested"), std::string::npos) << load_error(p);
}

TEST(PickleCycles, SharingAValueWithoutModifyingItIsFine) {
  // l = []; s = 'x'; t = (s, s); l.extend([t, t]): a DAG, as torch.save writes for shared objects.
  auto r = pickle_loads(bytes_of(raw("\x80\x02]q\x02(X\x01\x00\x00\x00xq\x00h\x00\x86q\x01h\x01" "e.")), allow_all(), "shared.pkl");
  ASSERT_OK(r);
  ASSERT_EQ((*r)->items.size(), 2u);
  EXPECT_EQ((*r)->items[0], (*r)->items[1]);
  EXPECT_EQ((*r)->depth, 3u);
}

TEST(PickleCycles, TheFuzzSeedsThatReferToThemselvesAreRefused) {
  const auto corpus = testing::source_dir() / "fuzz" / "corpus";
  const std::string pt = testing::read_bytes(corpus / "torch_file" / "regression-self-reference.pt");
  auto t = parse_torch_bytes(bytes_of(pt), "self.pt");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("inside itself"), std::string::npos) << t.status().message();
  const std::string md = testing::read_bytes(corpus / "dcp_metadata" / "regression-self-reference.metadata");
  auto m = dcp::parse_metadata(bytes_of(md), "self/.metadata");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message().rfind("self/.metadata: pickle BUILD modifies a value already nested", 0), 0u)
      << m.status().message();
}

}  // namespace
}  // namespace g4::torch
