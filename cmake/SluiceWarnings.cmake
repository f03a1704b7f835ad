# sluice_set_warnings(<target> [<target>...])
#
# Applies sluice's warning set to each target's own sources (PRIVATE, so it
# never leaks to consumers). With SLUICE_WERROR=ON (the `dev` preset) warnings
# are errors. Call it for every test, benchmark, example and service target.
include_guard(GLOBAL)

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
    endif()
  endforeach()
endfunction()
