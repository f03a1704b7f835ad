# sluice_set_warnings(<target> [<target>...])
#
# Applies sluice's warning set to each target's own sources (PRIVATE, so it
# never leaks to consumers). With SLUICE_WERROR=ON (the `dev` preset) warnings
# are errors. Call it for every test, benchmark, example and service target.
#
# With clang (the asan and tsan presets) it also turns on -Wthread-safety,
# which checks the SLUICE_GUARDED_BY / SLUICE_REQUIRES annotations against
# the locks taken through sluice::Mutex (patterns/include/sluice/patterns/
# mutex.hpp), and, with SLUICE_WERROR_THREAD_SAFETY=ON (the default), makes
# its findings errors whatever SLUICE_WERROR says: a lock-discipline mistake
# fails the build. (-Wthread-safety-beta and -negative are not used.)
include_guard(GLOBAL)

option(SLUICE_WERROR_THREAD_SAFETY
  "clang: -Wthread-safety findings are errors (also without SLUICE_WERROR)" ON)

function(sluice_set_warnings)
  foreach(target IN LISTS ARGN)
    if(NOT TARGET ${target})
      message(FATAL_ERROR "sluice_set_warnings: '${target}' is not a target")
    endif()
    if(MSVC)
      target_compile_options(${target} PRIVATE /W4 /permissive-)
      if(SLUICE_WERROR)
        target_compile_options(${target} PRIVATE /WX)
      endif()
    else()
      target_compile_options(${target} PRIVATE
        -Wall
        -Wextra
        -Wpedantic
        -Wshadow
        -Wnon-virtual-dtor
        -Wold-style-cast
        -Woverloaded-virtual
        -Wnull-dereference)
      if(SLUICE_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
      endif()
      if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
        target_compile_options(${target} PRIVATE -Wthread-safety)
        if(SLUICE_WERROR_THREAD_SAFETY)
          target_compile_options(${target} PRIVATE -Werror=thread-safety)
        endif()
      endif()
    endif()
  endforeach()
endfunction()
