// Fuzz target job_body_fuzz: the job body parser behind POST /v1/jobs (a
// JSON array of items, an object {"pipeline","items","ordered"}, or NDJSON)
// under every content type, through the real Router and a real Engine built
// once per process (jobs actually run; results are retained for a second
// and at most 1 MiB, so memory stays bounded).
//
// Input: byte 0 picks the request, the rest is the body.
//   bits 0-2  Content-Type: application/json, application/x-ndjson,
//             text/plain, none, and variants with parameters and case
//   bits 3-5  ?wait=: none (0-3), 0, 0.5, 300, "soon" (invalid)
//   bit 6     no ?pipeline= (the body's "pipeline" must name it)
// Invariants:
// - the status is 2xx or 4xx, never 5xx (and never 429 here: the admission
//   limit is far above what one input can hold);
// - every response passes fuzz::CheckResponse (4xx: a JSON error body with
//   error.code and error.message);
// - 202 (or 200 after ?wait) only for a body nlohmann accepts (NDJSON: each
//   non-blank line), nested at most kMaxJsonDepth, and "items" is the count
//   of items the reference parse finds;
// - 400 invalid_json carries an integer error.offset <= the body's size,
//   and only for a body the reference rejects or that nests too deep.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "service/util/json_parse.hpp"

namespace {

using nlohmann::json;
using sluice::fuzz::Describe;
namespace bhttp = sluice::http::bhttp;

constexpr std::string_view kConfig = R"(
server: { listen: "127.0.0.1:0" }
jobs: { max_pending_items: 1000000, retention: 1s, max_retained_bytes: 1MiB }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough }, workers: 1, buffer: 64 }
    aggregate: { type: count }
)";

struct ContentType {
  std::string_view header;  // "" = no Content-Type
  bool ndjson;
};
constexpr ContentType kContentTypes[8] = {
    {"application/json", false},
    {"application/x-ndjson", true},
    {"text/plain", false},
    {"", false},
    {"application/json; charset=utf-8", false},
    {"Application/X-NDJSON; charset=UTF-8", true},
    {" application/x-ndjson ;charset=utf-8", true},
    {"application/x-ndjson-seq", false},
};

constexpr std::string_view kWaits[8] = {
    "", "", "", "", "&wait=0", "&wait=0.5", "&wait=300", "&wait=soon"};

// The items the reference parser finds, or nullopt when it refuses the
// body (or the body nests deeper than the service accepts). `deep` is set
// when the only problem is the depth.
struct Reference {
  std::optional<std::size_t> items;  // count, when acceptable
  bool shape_ok = false;             // array, or object with an items array
  bool deep = false;
};

// nlohmann, minus its leniency of ending the input at a NUL byte (JSON has
// no raw NULs).
std::optional<json> ParseReference(std::string_view text, bool* deep) {
  json doc = json::parse(text.begin(), text.end(), nullptr,
                         /*allow_exceptions=*/false);
  if (doc.is_discarded() || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  if (sluice::fuzz::JsonDepth(doc) > sluice::kMaxJsonDepth) {
    *deep = true;
    return std::nullopt;
  }
  return doc;
}

Reference ReferenceParse(std::string_view body, bool ndjson) {
  Reference ref;
  if (ndjson) {
    std::size_t count = 0;
    std::size_t start = 0;
    while (start < body.size()) {
      std::size_t end = body.find('\n', start);
      if (end == std::string_view::npos) end = body.size();
      const std::string_view line = body.substr(start, end - start);
      if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
        if (!ParseReference(line, &ref.deep)) return ref;
        ++count;
      }
      start = end + 1;
    }
    ref.items = count;
    ref.shape_ok = true;
    return ref;
  }
  std::optional<json> doc = ParseReference(body, &ref.deep);
  if (!doc) return ref;
  if (doc->is_array()) {
    ref.items = doc->size();
    ref.shape_ok = true;
  } else if (doc->is_object()) {
    auto items = doc->find("items");
    ref.items = items == doc->end() ? 0 : items->size();
    ref.shape_ok = items != doc->end() && items->is_array();
  } else {
    ref.items = 0;
  }
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  sluice::fuzz::Service& service = sluice::fuzz::GetService(kConfig);
  const std::uint8_t selector = size > 0 ? data[0] : 0;
  const std::string_view body =
      size > 0 ? sluice::fuzz::AsText(data + 1, size - 1) : std::string_view();
  const ContentType& type = kContentTypes[selector & 7];
  const std::string_view wait = kWaits[(selector >> 3) & 7];
  const bool query_pipeline = (selector & 0x40) == 0;

  std::string target = "/v1/jobs?";
  if (query_pipeline) target += "pipeline=echo";
  target += wait;
  sluice::http::Request req{bhttp::verb::post, target, 11};
  req.set(bhttp::field::host, "fuzz");
  if (!type.header.empty()) req.set(bhttp::field::content_type, type.header);
  req.body() = std::string(body);
  req.prepare_payload();

  sluice::http::Reply reply = service.router.Handle(req);
  // A session would wait for the job without blocking; answering at once
  // gives either outcome (the 202, or 200 if the job already finished).
  sluice::http::Response res =
      reply.wait_job ? service.router.CompleteWait(std::move(reply))
                     : std::move(reply.response);
  sluice::fuzz::CheckResponse(res);

  const unsigned status = res.result_int();
  FUZZ_CHECK(status / 100 == 2 || status / 100 == 4, Describe(res));
  FUZZ_CHECK(status != 429, Describe(res));
  const json answer = json::parse(res.body());
  const Reference ref = ReferenceParse(body, type.ndjson);

  if (status / 100 == 2) {
    FUZZ_CHECK(ref.items.has_value() && ref.shape_ok, Describe(res));
    if (status == 202) {
      FUZZ_CHECK(answer.contains("id") && answer["id"].is_string(),
                 Describe(res));
      FUZZ_CHECK(
          answer.value("items", json()) == *ref.items,
          Describe(res) + "\nexpected items: " + std::to_string(*ref.items));
    } else {
      FUZZ_CHECK(status == 200 && !wait.empty(), Describe(res));
      FUZZ_CHECK(answer.contains("state") && answer.contains("items"),
                 Describe(res));
      FUZZ_CHECK(answer["items"].value("in", json()) == *ref.items,
                 Describe(res));
    }
    return 0;
  }

  const std::string code = answer["error"]["code"].get<std::string>();
  if (code == "invalid_json") {
    FUZZ_CHECK(status == 400, Describe(res));
    const json& offset = answer["error"].value("offset", json());
    FUZZ_CHECK(
        offset.is_number_unsigned() && offset.get<std::size_t>() <= body.size(),
        Describe(res) + "\nbody size " + std::to_string(body.size()));
    FUZZ_CHECK(!ref.items.has_value() || ref.deep, Describe(res));
  } else {
    // Refused for another reason: then the body itself was JSON (or every
    // NDJSON line was), or the request was refused before it was parsed.
    FUZZ_CHECK(ref.items.has_value() || code == "invalid_request",
               Describe(res));
  }
  return 0;
}
