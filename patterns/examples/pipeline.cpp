// Pipeline: stages connected by channels, each with its own workers and buffer.
//
// Mirrors the seeds' pipeline pattern for stream processing: a lazy generator
// feeds a chain of map, filter and split stages, and nothing is held in memory
// beyond the stage buffers. The last stage scores words on 4 workers yet is
// ordered, so the words still come out in the order the proverbs were read.

#include "sluice/patterns/pipeline.hpp"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sluice/patterns/generator.hpp"

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kProverbs[] = {
    "Don't communicate by sharing memory, share memory by communicating.",
    "Concurrency is not parallelism.",
    "Channels orchestrate; mutexes serialize.",
    "The bigger the interface, the weaker the abstraction.",
    "Make the zero value useful.",
    "interface{} says nothing.",
    "Gofmt's style is no one's favorite, yet gofmt is everyone's favorite.",
    "A little copying is better than a little dependency.",
    "Syscall must always be guarded with build tags.",
    "Cgo must always be guarded with build tags.",
    "Cgo is not Go.",
    "With the unsafe package there are no guarantees.",
    "Clear is better than clever.",
    "Reflection is never clear.",
    "Errors are values.",
    "Don't just check errors, handle them gracefully.",
    "Design the architecture, name the components, document the details.",
    "Documentation is for users.",
    "Don't panic.",
};
constexpr int kProverbCount = sizeof(kProverbs) / sizeof(kProverbs[0]);

struct Line {
  int number = 0;
  std::string text;
};

struct Word {
  int line = 0;
  int position = 0;
  std::string text;
};

struct Scored {
  Word word;
  int points = 0;
};

Line Normalize(Line line) {
  for (char& c : line.text) {
    const auto u = static_cast<unsigned char>(c);
    c = (std::isalpha(u) || c == '\'') ? static_cast<char>(std::tolower(u))
                                       : ' ';
  }
  return line;
}

std::vector<Word> SplitWords(const Line& line) {
  std::vector<Word> words;
  std::string current;
  for (const char c : line.text + ' ') {
    if (c != ' ') {
      current += c;
    } else if (!current.empty()) {
      words.push_back(Word{.line = line.number,
                           .position = static_cast<int>(words.size()),
                           .text = current});
      current.clear();
    }
  }
  return words;
}

// Letters are scored as in Scrabble; the sleep, whose length varies with the
// word, stands in for real per-item work and makes the 4 workers finish out of
// order, which the ordered stage then undoes.
Scored Score(Word word) {
  static constexpr int kPoints[26] = {1, 3, 3, 2,  1, 4, 2, 4, 1, 8, 5, 1, 3,
                                      1, 1, 3, 10, 1, 1, 1, 1, 4, 4, 8, 4, 10};
  std::this_thread::sleep_for(milliseconds(1 + word.text.size() % 3));
  int points = 0;
  for (const char c : word.text) {
    if (c >= 'a' && c <= 'z') points += kPoints[c - 'a'];
  }
  return Scored{.word = std::move(word), .points = points};
}

// The source reads the proverbs lazily: at most capacity + 1 = 5 are read
// ahead of the first stage, however long the input.
sluice::Generator<Line> ReadProverbs() {
  return sluice::generate(
      [next = 0]() mutable -> std::optional<Line> {
        if (next == kProverbCount) return std::nullopt;
        const int n = next++;
        return Line{.number = n, .text = kProverbs[n]};
      },
      4);
}

}  // namespace

int main() {
  const auto start = Clock::now();
  std::atomic<int> kept{0};

  // Every stage starts at once and runs concurrently with the others. The
  // cheap stages keep the defaults (1 worker, a buffer of 64), which also
  // keeps the source's order: an ordered stage preserves the order it
  // receives, so nothing before it may reorder.
  auto pipeline =
      sluice::Pipeline<Line>::from(ReadProverbs())
          .map(Normalize)
          .filter([&kept](const Line& line) {
            const bool keep = SplitWords(line).size() >= 5;
            if (keep) ++kept;
            return keep;
          })
          .split(SplitWords, {.workers = 1, .buffer = 128})
          .map(Score, {.workers = 4, .buffer = 128, .ordered = true});

  int words = 0;
  int total = 0;
  bool in_order = true;
  int first_line = -1;
  int last_line = -1;
  int last_position = -1;
  std::string first_proverb;
  Scored best;
  for (const Scored& s : pipeline) {
    const Word& w = s.word;
    // Word by word, (line, position) must continue where the last one left
    // off: anything else would mean the ordered stage let items overtake.
    const bool next_in_line =
        w.line == last_line && w.position == last_position + 1;
    const bool starts_later_line = w.line > last_line && w.position == 0;
    in_order = in_order && (next_in_line || starts_later_line);
    if (first_line < 0) first_line = w.line;
    if (w.line == first_line) {
      first_proverb += (first_proverb.empty() ? "" : " ") + w.text;
    }
    last_line = w.line;
    last_position = w.position;
    ++words;
    total += s.points;
    if (s.points > best.points) best = s;
  }
  const auto elapsed =
      std::chrono::duration_cast<milliseconds>(Clock::now() - start);

  std::cout << "sluice pipeline: proverbs -> normalize -> filter -> split -> "
               "score (4 workers, ordered)\n"
            << "  " << kProverbCount << " proverbs read, " << kept.load()
            << " kept, " << kProverbCount - kept.load()
            << " filtered out (fewer than 5 words)\n"
            << "  " << words
            << " words, in input order: " << (in_order ? "yes" : "NO")
            << ", stage errors: " << pipeline.errors() << "\n"
            << "  first proverb out: \"" << first_proverb << "\"\n"
            << "  best word: \"" << best.word.text << "\" (" << best.points
            << " points)\n"
            << "total: " << total << " Scrabble points in " << elapsed.count()
            << " ms\n";
  return in_order ? 0 : 1;
}
