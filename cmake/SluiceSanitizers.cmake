# Applies SLUICE_SANITIZE to every target in the build (compile and link):
#   ""        nothing
#   address   AddressSanitizer + UndefinedBehaviorSanitizer (UB is fatal)
#   thread    ThreadSanitizer
# Included from the root CMakeLists.txt before any add_subdirectory().
include_guard(GLOBAL)

if(SLUICE_SANITIZE STREQUAL "")
  return()
elseif(SLUICE_SANITIZE STREQUAL "address")
  set(_sluice_san_flags
    -fsanitize=address,undefined
    -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # clang 14's -fsanitize=function (part of `undefined`; GCC has no such
    # check) cannot compile coroutines: "Cannot represent a difference
    # across sections". Every other UBSan check stays on.
    list(APPEND _sluice_san_flags -fno-sanitize=function)
  endif()
elseif(SLUICE_SANITIZE STREQUAL "thread")
  set(_sluice_san_flags
    -fsanitize=thread
    -fno-omit-frame-pointer)
  # Asio orders some handler hand-offs with std::atomic_thread_fence, which
  # ThreadSanitizer does not model (GCC warns: -Wtsan). Its null fenced block
  # leaves that ordering to the locks and atomics TSan does see.
  add_compile_definitions(BOOST_ASIO_DISABLE_FENCED_BLOCK)
else()
  message(FATAL_ERROR
    "SLUICE_SANITIZE must be empty, 'address' or 'thread' (got '${SLUICE_SANITIZE}')")
endif()

if(MSVC)
  message(FATAL_ERROR "SLUICE_SANITIZE is supported with GCC and Clang only")
endif()

message(STATUS "sluice: building with sanitizer '${SLUICE_SANITIZE}': ${_sluice_san_flags}")
add_compile_options(${_sluice_san_flags})
add_link_options(${_sluice_san_flags})
unset(_sluice_san_flags)
