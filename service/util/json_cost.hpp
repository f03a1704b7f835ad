// Defines sluice::JsonHeapBytes and friends: what a value really costs in
// memory once parsed, the one estimate every byte bound on items and results
// uses (jobs.max_retained_bytes, jobs.max_job_result_bytes, the results page
// budget). A value's serialized size says little about it: `[[[…1…]]]`, 201
// bytes of text nested 100 deep, is 100 heap-allocated vectors, about 8 KB.
//
// The model is nlohmann::json on libstdc++ and glibc's malloc (Debian 12,
// x86-64 and arm64), from the types' real sizes and capacities:
//   - every allocation of n bytes takes a chunk of max(32, n + 8 rounded up
//     to 16) bytes (glibc's request2size), which is what RSS pays;
//   - a string value allocates its std::string object, plus a buffer of
//     capacity + 1 bytes once it is longer than the in-object 15 bytes;
//   - an array allocates its std::vector object and capacity() elements of
//     sizeof(json);
//   - an object allocates its std::map and, per member, one tree node (four
//     pointers' worth of links and colour, the key's std::string and the
//     json) plus the key's buffer when it is longer than 15 bytes;
//   - numbers, booleans and null allocate nothing.
// Checked against glibc's own accounting (mallinfo2) in
// tests/unit/service/json_cost_test.cpp.
#ifndef SLUICE_SERVICE_UTIL_JSON_COST_HPP_
#define SLUICE_SERVICE_UTIL_JSON_COST_HPP_

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace sluice {

// The heap chunk glibc's malloc takes for a request of `n` bytes (0 for 0).
std::size_t MallocChunkBytes(std::size_t n);

// Heap bytes a std::string owns beyond its own object (0 while the text fits
// the small-string buffer).
std::size_t StringHeapBytes(const std::string& s);

// Heap bytes `value` owns beyond its own sizeof(nlohmann::json) node:
// everything it allocated, its children included. Pure; O(size of value);
// recursion as deep as the value (parsed input is at most kMaxJsonDepth).
std::size_t JsonHeapBytes(const nlohmann::json& value);

// What holding `value` costs in all: its node plus JsonHeapBytes.
inline std::size_t JsonCost(const nlohmann::json& value) {
  return sizeof(nlohmann::json) + JsonHeapBytes(value);
}

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_JSON_COST_HPP_
