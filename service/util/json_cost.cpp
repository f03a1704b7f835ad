#include "service/util/json_cost.hpp"

#include <algorithm>

namespace sluice {
namespace {

using json = nlohmann::json;

// The capacity a std::string holds inside its own object (libstdc++).
constexpr std::size_t kSmallString = 15;

// One member of an object: a red-black tree node (colour and three links,
// padded to four pointers) holding the (key, value) pair.
constexpr std::size_t kMapNodeBytes =
    4 * sizeof(void*) + sizeof(json::object_t::value_type);

}  // namespace

std::size_t MallocChunkBytes(std::size_t n) {
  if (n == 0) return 0;
  // glibc: request2size = (n + SIZE_SZ + MALLOC_ALIGN_MASK) &
  // ~MALLOC_ALIGN_MASK, at least MINSIZE.
  constexpr std::size_t kHeader = sizeof(std::size_t);
  constexpr std::size_t kAlign = 2 * sizeof(std::size_t);
  constexpr std::size_t kMin = 4 * sizeof(std::size_t);
  return std::max(kMin, (n + kHeader + kAlign - 1) & ~(kAlign - 1));
}

std::size_t StringHeapBytes(const std::string& s) {
  return s.capacity() > kSmallString ? MallocChunkBytes(s.capacity() + 1) : 0;
}

std::size_t JsonHeapBytes(const json& value) {
  switch (value.type()) {
    case json::value_t::string: {
      const auto& s = value.get_ref<const json::string_t&>();
      return MallocChunkBytes(sizeof(json::string_t)) + StringHeapBytes(s);
    }
    case json::value_t::array: {
      const auto& a = value.get_ref<const json::array_t&>();
      std::size_t n = MallocChunkBytes(sizeof(json::array_t)) +
                      MallocChunkBytes(a.capacity() * sizeof(json));
      for (const json& e : a) n += JsonHeapBytes(e);
      return n;
    }
    case json::value_t::object: {
      const auto& o = value.get_ref<const json::object_t&>();
      std::size_t n = MallocChunkBytes(sizeof(json::object_t));
      for (const auto& [key, e] : o) {
        n += MallocChunkBytes(kMapNodeBytes) + StringHeapBytes(key) +
             JsonHeapBytes(e);
      }
      return n;
    }
    case json::value_t::binary: {
      const auto& b = value.get_ref<const json::binary_t&>();
      return MallocChunkBytes(sizeof(json::binary_t)) +
             MallocChunkBytes(b.capacity());
    }
    default:  // null, boolean, numbers, discarded: held in the node
      return 0;
  }
}

}  // namespace sluice
