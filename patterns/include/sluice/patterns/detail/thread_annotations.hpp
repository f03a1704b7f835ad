// Thread-safety annotations: abseil's GUARDED_BY vocabulary as macros.
//
// Under clang they expand to the attributes `-Wthread-safety` checks; under
// other compilers they expand to nothing and serve as documentation of which
// lock protects which field. The analysis only follows locks whose type
// carries them: sluice::Mutex and sluice::MutexLock
// (sluice/patterns/mutex.hpp), not std::mutex.
#ifndef SLUICE_PATTERNS_DETAIL_THREAD_ANNOTATIONS_HPP_
#define SLUICE_PATTERNS_DETAIL_THREAD_ANNOTATIONS_HPP_

#if defined(__clang__)
#define SLUICE_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SLUICE_THREAD_ANNOTATION(x)
#endif

#define SLUICE_CAPABILITY(x) SLUICE_THREAD_ANNOTATION(capability(x))
#define SLUICE_SCOPED_CAPABILITY SLUICE_THREAD_ANNOTATION(scoped_lockable)
#define SLUICE_GUARDED_BY(x) SLUICE_THREAD_ANNOTATION(guarded_by(x))
#define SLUICE_PT_GUARDED_BY(x) SLUICE_THREAD_ANNOTATION(pt_guarded_by(x))
#define SLUICE_ACQUIRE(...) \
  SLUICE_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define SLUICE_RELEASE(...) \
  SLUICE_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define SLUICE_TRY_ACQUIRE(...) \
  SLUICE_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define SLUICE_ASSERT_CAPABILITY(x) \
  SLUICE_THREAD_ANNOTATION(assert_capability(x))
#define SLUICE_REQUIRES(...) \
  SLUICE_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define SLUICE_EXCLUDES(...) \
  SLUICE_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define SLUICE_NO_THREAD_SAFETY_ANALYSIS \
  SLUICE_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // SLUICE_PATTERNS_DETAIL_THREAD_ANNOTATIONS_HPP_
