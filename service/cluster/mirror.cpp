// Showing a job on any replica: a Mirror follows the job's log (its outcome
// messages, then the seal) with an ordered consumer and fills a jobs::Job,
// so status, result pages, the WebSocket stream and ?wait= work as in a
// single process. The mirror table keeps one per job this replica was asked
// about, and drops finished ones unused for a minute.
#include <charconv>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

constexpr auto kMirrorIdle = std::chrono::seconds(60);
constexpr std::size_t kMaxMirrors = 512;

void OnMirrorMsg(natsConnection*, natsSubscription*, natsMsg* msg,
                 void* closure) {
  NatsPtr<natsMsg> owned(msg);
  (*static_cast<std::shared_ptr<Mirror>*>(closure))->OnMessage(msg);
}

void OnMirrorComplete(void* closure) {
  delete static_cast<std::shared_ptr<Mirror>*>(closure);
}

}  // namespace

Mirror::Mirror(const JobRecord& record, std::uint64_t max_result_bytes,
               std::function<void(const std::string&)> on_complete,
               std::unique_ptr<processors::Aggregator> fold)
    : job_(std::make_shared<jobs::Job>(
          record.id, record.pipeline, record.in, FromUnixMs(record.created_ms),
          jobs::ResultLimits{max_result_bytes, nullptr})),
      on_complete_(std::move(on_complete)),
      in_(record.in),
      open_(record.open),
      ordered_(record.ordered),
      fold_(std::move(fold)),
      fold_reads_values_(fold_ != nullptr && fold_->ReadsValues()),
      max_result_bytes_(max_result_bytes),
      seen_(record.in, false),
      accepted_(record.in),
      last_used_(std::chrono::steady_clock::now()) {}

Mirror::~Mirror() = default;

Result<void> Mirror::Follow(jsCtx* js, const Names& names) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Ordered = true;
  const std::string stream = names.results_stream();
  so.Stream = stream.c_str();
  const std::string subject = names.results_subject(job_->id());
  auto* closure = new std::shared_ptr<Mirror>(shared_from_this());
  natsSubscription* sub = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_Subscribe(&sub, js, subject.c_str(), OnMirrorMsg, closure,
                              nullptr, &so, &code);
  if (s != NATS_OK) {
    delete closure;
    return Error{"cluster", NatsError("follow " + job_->id(), s, code)};
  }
  natsSubscription_SetOnCompleteCB(sub, OnMirrorComplete, closure);
  {
    MutexLock lock(&mu_);
    last_heard_ = std::chrono::steady_clock::now();
  }
  {
    MutexLock lock(&sub_mu_);
    if (!retired_) {
      sub_ = sub;
      return {};
    }
  }
  // Retired while subscribing (replaced, or pruned): nobody would stop it.
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return Error{"cluster", "the mirror of " + job_->id() + " was retired"};
}

Result<void> Mirror::Refollow(jsCtx* js, const Names& names) {
  Stop();
  {
    MutexLock lock(&mu_);
    messages_ = 0;  // the log is read again from its start
  }
  return Follow(js, names);
}

void Mirror::Retire() {
  {
    MutexLock lock(&sub_mu_);
    retired_ = true;
  }
  Stop();
}

void Mirror::Stop() {
  natsSubscription* sub = nullptr;
  {
    MutexLock lock(&sub_mu_);
    std::swap(sub, sub_);
  }
  if (sub == nullptr) return;
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
}

std::chrono::steady_clock::duration Mirror::quiet_for() const {
  MutexLock lock(&mu_);
  return std::chrono::steady_clock::now() - last_heard_;
}

bool Mirror::following() const {
  MutexLock lock(&sub_mu_);
  return sub_ != nullptr;
}

std::uint64_t Mirror::seen() const {
  MutexLock lock(&mu_);
  return seen_count_;
}

void Mirror::NoteIn(std::uint64_t in) {
  MutexLock lock(&mu_);
  NoteInLocked(in);
}

void Mirror::NoteInLocked(std::uint64_t in) {
  if (in <= accepted_) return;
  job_->AddAccepted(in - accepted_);
  accepted_ = in;
}

std::chrono::steady_clock::time_point Mirror::last_used() const {
  MutexLock lock(&mu_);
  return last_used_;
}

void Mirror::Touch() {
  MutexLock lock(&mu_);
  last_used_ = std::chrono::steady_clock::now();
}

void Mirror::OnMessage(natsMsg* msg) {
  const std::string_view data(
      natsMsg_GetData(msg) == nullptr ? "" : natsMsg_GetData(msg),
      static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  {
    MutexLock lock(&mu_);
    ++messages_;
    last_heard_ = std::chrono::steady_clock::now();
  }
  if (job_->finished()) return;  // anything after the seal is not the job's
  const char* seal = nullptr;
  if (natsMsgHeader_Get(msg, kSealHeader, &seal) == NATS_OK) {
    ApplySeal(data);
    return;
  }
  const char* seqs_text = nullptr;
  if (natsMsgHeader_Get(msg, kSeqsHeader, &seqs_text) != NATS_OK) return;
  std::optional<std::vector<std::uint64_t>> seqs = DecodeSeqs(seqs_text);
  std::optional<std::vector<jobs::ResultRecord>> records = DecodeOutcome(data);
  if (!seqs || !records) return;
  bool complete = false;
  {
    MutexLock lock(&mu_);
    AddOutcomes(*seqs, *records);
    complete = !open_ && seen_count_ == in_;
  }
  // The outcomes of a batch that finished its job alone carry the seal.
  const char* final_record = nullptr;
  if (natsMsgHeader_Get(msg, kFinalHeader, &final_record) == NATS_OK) {
    ApplySeal(final_record);
    complete = true;  // the sealer copies the seal into the job's record
  }
  if (complete && on_complete_) on_complete_(job_->id());
}

namespace {

// True when `records` come grouped in the order of `seqs` (as Publish
// writes them), each with a seq of its place.
bool InSeqsOrder(const std::vector<std::uint64_t>& seqs,
                 const std::vector<jobs::ResultRecord>& records) {
  std::size_t j = 0;
  for (std::uint64_t seq : seqs) {
    while (j < records.size() && records[j].seq == seq) ++j;
  }
  return j == records.size();
}

// `records` regrouped in the order of `seqs`; records of a seq not in
// `seqs` are dropped.
void GroupBySeqs(const std::vector<std::uint64_t>& seqs,
                 std::vector<jobs::ResultRecord>& records) {
  std::map<std::uint64_t, std::vector<jobs::ResultRecord>> by_seq;
  for (jobs::ResultRecord& r : records) by_seq[r.seq].push_back(std::move(r));
  records.clear();
  for (std::uint64_t seq : seqs) {
    auto it = by_seq.find(seq);
    if (it == by_seq.end()) continue;
    for (jobs::ResultRecord& r : it->second) records.push_back(std::move(r));
    by_seq.erase(it);
  }
}

}  // namespace

// One outcome message: each of `seqs` with its records (none: filtered).
// A seq seen before (a redelivered item's second outcome) is skipped, so
// every reader counts the first one in the log, the same everywhere. An
// unordered job gets the message's new records in one append.
void Mirror::AddOutcomes(const std::vector<std::uint64_t>& seqs,
                         std::vector<jobs::ResultRecord>& records) {
  // An open stream's seqs are below what its feed stored; a bound keeps a
  // corrupt header from sizing seen_.
  constexpr std::uint64_t kMaxSeq = std::uint64_t{1} << 36;
  if (!InSeqsOrder(seqs, records)) GroupBySeqs(seqs, records);
  const std::uint64_t seen_before = seen_count_;
  std::vector<jobs::ResultRecord> fresh;
  std::uint64_t filtered = 0;
  std::size_t j = 0;
  for (std::uint64_t seq : seqs) {
    const std::size_t first = j;
    while (j < records.size() && records[j].seq == seq) ++j;
    if (seq >= (open_ ? kMaxSeq : in_)) continue;
    if (seq >= seen_.size()) seen_.resize(seq + 1, false);
    if (seen_[seq]) continue;
    seen_[seq] = true;
    ++seen_count_;
    if (open_) NoteInLocked(seen_count_);  // an outcome's item was stored
    auto begin =
        std::make_move_iterator(records.begin() + static_cast<long>(first));
    auto end = std::make_move_iterator(records.begin() + static_cast<long>(j));
    if (ordered_) {
      HoldInOrder(seq, std::vector<jobs::ResultRecord>(begin, end),
                  first == j ? 1 : 0, 0);
    } else {
      fresh.insert(fresh.end(), begin, end);
      if (first == j) ++filtered;
    }
  }
  if (seen_before == 0 && seen_count_ > 0) job_->MarkRunning();
  if (ordered_) {
    ReleaseInOrder();
  } else if (seen_count_ > seen_before) {
    if (fold_) {
      CountFresh(fresh, filtered);
    } else {
      job_->Append(fresh, filtered, 0);
    }
    job_->NoteCompleted(seen_count_);
  }
}

void Mirror::CountFresh(const std::vector<jobs::ResultRecord>& records,
                        std::uint64_t filtered) {
  std::uint64_t out = 0, errors = 0, cancelled = 0;
  for (const jobs::ResultRecord& r : records) {
    // The counts a full mirror would show: records past the job's result
    // cap count cancelled, and are not folded.
    const std::size_t cost = jobs::RecordCost(r);
    if (over_cap_ || counted_bytes_ + cost > max_result_bytes_) {
      over_cap_ = true;
      ++cancelled;
      continue;
    }
    counted_bytes_ += cost;
    if (r.is_error) {
      ++errors;
      continue;
    }
    ++out;
    // Values stay text: parsed only for an aggregate that looks at them.
    fold_->Add(fold_reads_values_ ? jobs::ValueOf(r) : nlohmann::json());
  }
  job_->AddCounts(out, errors, filtered, cancelled);
}

nlohmann::json Mirror::folded_aggregate() const {
  MutexLock lock(&mu_);
  return fold_ ? fold_->Result() : nlohmann::json();
}

std::uint64_t Mirror::messages() const {
  MutexLock lock(&mu_);
  return messages_;
}

void Mirror::HoldInOrder(std::uint64_t seq,
                         std::vector<jobs::ResultRecord> records,
                         std::uint64_t filtered, std::uint64_t cancelled) {
  held_[seq] = Held{std::move(records), filtered, cancelled};
}

void Mirror::ReleaseInOrder() {
  while (!held_.empty() && held_.begin()->first == next_) {
    Held& h = held_.begin()->second;
    job_->Append(h.records, h.filtered, h.cancelled);
    held_.erase(held_.begin());
    ++next_;
  }
  job_->NoteCompleted(next_);
}

void Mirror::ApplySeal(std::string_view data) {
  std::optional<JobRecord> sealed = JobRecord::Parse(data);
  if (!sealed) return;
  {
    MutexLock lock(&mu_);
    // An ordered job's outcomes still held (a cancelled job's gaps) are
    // released in seq order: they are part of its log.
    while (!held_.empty()) {
      Held& h = held_.begin()->second;
      job_->Append(h.records, h.filtered, h.cancelled);
      held_.erase(held_.begin());
    }
  }
  job_->Restore(sealed->summary());
}

std::shared_ptr<Mirror> ClusterImpl::MirrorOf(const JobRecord& record,
                                              bool keep_results) {
  std::shared_ptr<Mirror> mirror;
  std::shared_ptr<Mirror> replaced;  // a counting one, stopped below
  {
    MutexLock lock(&mirrors_mu_);
    auto it = mirrors_.find(record.id);
    if (it != mirrors_.end() &&
        (it->second->keeps_results() || !keep_results)) {
      it->second->Touch();
      return it->second;
    }
    if (it != mirrors_.end()) replaced = it->second;
    std::unique_ptr<processors::Aggregator> fold;
    if (!keep_results) {
      fold = AggregatorFor(record.pipeline);
      if (!fold) keep_results = true;  // an unknown pipeline: nothing to fold
    }
    mirror = std::make_shared<Mirror>(
        record, config_.jobs.max_job_result_bytes,
        [this](const std::string& id) { OnMirrorComplete(id); },
        std::move(fold));
    mirrors_[record.id] = mirror;
  }
  if (replaced) replaced->Retire();
  if (auto r = mirror->Follow(js_.get(), names_); !r.ok()) {
    MutexLock lock(&mirrors_mu_);
    auto it = mirrors_.find(record.id);
    // Only ours: a reader may have replaced it meanwhile.
    if (it != mirrors_.end() && it->second == mirror) mirrors_.erase(it);
    return mirror;  // shows the record's state; a later Find tries again
  }
  return mirror;
}

std::shared_ptr<Mirror> ClusterImpl::SealingMirrorOf(const JobRecord& record) {
  return MirrorOf(record, /*keep_results=*/record.ordered);
}

// After a reconnect: NATS may have restarted, and a mirror's consumer with
// it, so every unfinished mirror reads its log again (seqs it has are
// skipped). With `only_lost`, only those whose last follow failed: a
// mirror left without a consumer would never see its job end, so the
// maintenance loop retries them until one succeeds.
void ClusterImpl::RefollowMirrors(bool only_lost) {
  std::vector<std::shared_ptr<Mirror>> mirrors;
  {
    MutexLock lock(&mirrors_mu_);
    for (auto& [id, m] : mirrors_) {
      if (!m->sealed() && (!only_lost || !m->following())) {
        mirrors.push_back(m);
      }
    }
  }
  for (auto& m : mirrors) {
    if (auto r = m->Refollow(js_.get(), names_); !r.ok()) {
      Log(r.error().message + " (tried again shortly)");
    }
  }
}

std::shared_ptr<Mirror> ClusterImpl::ExistingMirror(std::string_view id) {
  MutexLock lock(&mirrors_mu_);
  auto it = mirrors_.find(id);
  return it == mirrors_.end() ? nullptr : it->second;
}

void ClusterImpl::OnMirrorComplete(const std::string& id) {
  {
    MutexLock lock(&touched_mu_);
    touched_.insert(id);
  }
  MutexLock lock(&wake_mu_);
  wake_ = true;
  wake_cv_.SignalAll();
}

void ClusterImpl::PruneMirrors() {
  std::vector<std::shared_ptr<Mirror>> dropped;
  {
    MutexLock lock(&mirrors_mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = mirrors_.begin(); it != mirrors_.end();) {
      // Idle: nobody asked for it lately and no reader (a stream) holds its
      // job. A counting mirror is made for sealing, not for readers: it
      // stays until its job is sealed.
      const bool counting_unsealed =
          !it->second->keeps_results() && !it->second->sealed();
      const bool idle = now - it->second->last_used() > kMirrorIdle &&
                        it->second->job().use_count() == 1 &&
                        !counting_unsealed;
      const bool over = mirrors_.size() > kMaxMirrors;
      // A running job's mirror goes too when nobody asked for it lately:
      // the next Find (or the sealer) follows the log again from its start.
      if (idle || (over && it->second->sealed())) {
        dropped.push_back(it->second);
        it = mirrors_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& m : dropped) m->Retire();
}

}  // namespace sluice::cluster
