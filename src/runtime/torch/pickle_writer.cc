#include "runtime/torch/pickle_writer.h"

#include <bit>
#include <cstring>

#include "runtime/status.h"

namespace g4::torch {
namespace {

class Writer {
 public:
  std::string out;

  void u8(uint8_t v) { out.push_back(static_cast<char>(v)); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) u8(static_cast<uint8_t>(v >> (8 * k)));
  }
  void text(const std::string& s) { out += s; }

  void str(const std::string& s) {  // BINUNICODE
    u8('X');
    le(s.size(), 4);
    text(s);
  }

  void integer(int64_t v) {
    if (v >= 0 && v < 256) { u8('K'); u8(static_cast<uint8_t>(v)); return; }
    if (v >= 0 && v < 65536) { u8('M'); le(static_cast<uint64_t>(v), 2); return; }
    if (v >= INT32_MIN && v <= INT32_MAX) { u8('J'); le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4); return; }
    // LONG1: minimal little-endian two's complement.
    std::string bytes;
    uint64_t u = static_cast<uint64_t>(v);
    for (int k = 0; k < 8; ++k) bytes.push_back(static_cast<char>(u >> (8 * k)));
    while (bytes.size() > 1) {
      uint8_t last = static_cast<uint8_t>(bytes.back()), prev = static_cast<uint8_t>(bytes[bytes.size() - 2]);
      if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) bytes.pop_back();
      else break;
    }
    u8(0x8a);
    u8(static_cast<uint8_t>(bytes.size()));
    text(bytes);
  }

  void write(const PyValue& v) {
    using K = PyValue::Kind;
    switch (v.kind) {
      case K::kNone: u8('N'); return;
      case K::kBool: u8(v.b ? 0x88 : 0x89); return;
      case K::kInt: integer(v.i); return;
      case K::kFloat: {
        u8('G');
        uint64_t bits = std::bit_cast<uint64_t>(v.f);
        for (int k = 7; k >= 0; --k) u8(static_cast<uint8_t>(bits >> (8 * k)));  // big-endian
        return;
      }
      case K::kStr: str(v.s); return;
      case K::kBytes: {
        // Protocol 2 has no bytes opcode torch allows: _codecs.encode(latin-1 text, 'latin1').
        text("c_codecs\nencode\n");
        std::string latin1;
        for (unsigned char c : v.s) {
          if (c < 0x80) latin1.push_back(static_cast<char>(c));
          else latin1.push_back(static_cast<char>(0xc0 | (c >> 6))), latin1.push_back(static_cast<char>(0x80 | (c & 0x3f)));
        }
        str(latin1);
        str("latin1");
        u8(0x86);
        u8('R');
        return;
      }
      case K::kTuple:
        if (v.items.empty()) { u8(')'); return; }
        if (v.items.size() <= 3) {
          for (const auto& item : v.items) write(*item);
          u8(static_cast<uint8_t>(0x84 + v.items.size()));  // TUPLE1..3
          return;
        }
        u8('(');
        for (const auto& item : v.items) write(*item);
        u8('t');
        return;
      case K::kList:
        u8(']');
        if (v.items.empty()) return;
        u8('(');
        for (const auto& item : v.items) write(*item);
        u8('e');
        return;
      case K::kDict:
        u8('}');
        for (size_t k = 0; k < v.items.size(); k += 2000) {  // SETITEMS in batches of 1000, as Python does
          u8('(');
          for (size_t j = k; j < std::min(v.items.size(), k + 2000); ++j) write(*v.items[j]);
          u8('u');
        }
        return;
      case K::kGlobal: {
        u8('c');
        text(v.s);  // "module\nname"
        u8('\n');
        return;
      }
      case K::kCall:
        write(*v.items[0]);
        write(*v.items[1]);
        u8('R');
        return;
      case K::kObject:
        write(*v.items[0]);
        write(*v.items[1]);
        u8(0x81);  // NEWOBJ
        if (!v.items[2]->is(K::kNone)) {
          write(*v.items[2]);
          u8('b');  // BUILD
        }
        return;
      case K::kPersistentId:
        write(*v.items[0]);
        u8('Q');
        return;
    }
  }
};

}  // namespace

std::string pickle_dumps(const PyValue& root) {
  Writer w;
  w.u8(0x80);
  w.u8(2);
  w.write(root);
  w.u8('.');
  return std::move(w.out);
}

}  // namespace g4::torch
