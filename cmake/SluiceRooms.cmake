# sluice_check_room(<name> <dir> DECLARED <room>... DEPENDS <room>...)
#
# The layering rules of service/ (docs/internal/architecture.md#layering),
# checked at configure time for the room <name> whose sources are in <dir>:
#   1. every room in DEPENDS is in DECLARED (the rooms declared before it),
#      so rooms form a stack and a cycle cannot be written down;
#   2. every `#include "service/<room>/..."` in <dir>/*.cpp and *.hpp names
#      <name> itself or a room in DEPENDS.
# A violation is a FATAL_ERROR naming the file and the rule. Usable in
# script mode (cmake -P), which is how tests/cmake checks it.
include_guard(GLOBAL)

function(sluice_check_room name dir)
  cmake_parse_arguments(ROOM "" "" "DECLARED;DEPENDS" ${ARGN})
  foreach(dep IN LISTS ROOM_DEPENDS)
    if(NOT dep IN_LIST ROOM_DECLARED)
      message(FATAL_ERROR
        "service/${name} depends on service/${dep}, which is not declared "
        "before it in service/CMakeLists.txt: rooms form a stack, and a room "
        "may only use rooms below it (a cycle cannot be declared)")
    endif()
  endforeach()
  file(GLOB files "${dir}/*.cpp" "${dir}/*.hpp")
  foreach(file IN LISTS files)
    file(STRINGS "${file}" includes REGEX "^#include \"service/[a-z_]+/")
    foreach(line IN LISTS includes)
      string(REGEX REPLACE "^#include \"service/([a-z_]+)/.*" "\\1" used
        "${line}")
      if(NOT used STREQUAL name AND NOT used IN_LIST ROOM_DEPENDS)
        get_filename_component(base "${file}" NAME)
        message(FATAL_ERROR
          "service/${name}/${base} includes service/${used}/, but the room "
          "service/${name} does not declare ${used} among its DEPENDS "
          "(service/CMakeLists.txt). Rooms may only use the rooms below them.")
      endif()
    endforeach()
  endforeach()
endfunction()
