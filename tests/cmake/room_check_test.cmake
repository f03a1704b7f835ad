# Checks cmake/SluiceRooms.cmake, the layering rules of service/, in script
# mode:
#   cmake -DCASE=<case> -DSOURCE=<repo> -DWORK=<scratch dir> -P room_check_test.cmake
# Cases:
#   repository   the real rooms, as service/CMakeLists.txt declares them:
#                prints "layering ok" (it also catches an include added since
#                the last configure)
#   undeclared   a room including a room it does not declare: fails
#   cycle        a room depending on one declared after it: fails
#   clean        a room including only what it declares: prints "layering ok"
cmake_minimum_required(VERSION 3.25)  # the policies of the build (IN_LIST)
include("${SOURCE}/cmake/SluiceRooms.cmake")

function(write_room dir file text)
  file(MAKE_DIRECTORY "${dir}")
  file(WRITE "${dir}/${file}" "${text}")
endfunction()

if(CASE STREQUAL "repository")
  file(READ "${SOURCE}/service/CMakeLists.txt" lists)
  string(REGEX MATCHALL "\nsluice_room\\([^)]*\\)" calls "${lists}")
  set(declared "")
  foreach(call IN LISTS calls)
    string(REGEX REPLACE "[\n ]+" ";" words "${call}")
    list(FILTER words EXCLUDE REGEX "^$")
    list(GET words 0 first)
    string(REGEX REPLACE "^sluice_room\\(" "" name "${first}")
    set(depends "")
    set(in_depends FALSE)
    foreach(word IN LISTS words)
      string(REGEX MATCH "\\)$" last "${word}")
      string(REGEX REPLACE "\\)$" "" word "${word}")
      if(word STREQUAL "DEPENDS")
        set(in_depends TRUE)
      elseif(word MATCHES "^(LIBS|SOURCES)$")
        set(in_depends FALSE)
      elseif(in_depends AND NOT word STREQUAL "")
        list(APPEND depends "${word}")
      endif()
      if(last)
        break()
      endif()
    endforeach()
    sluice_check_room(${name} "${SOURCE}/service/${name}"
      DECLARED ${declared} DEPENDS ${depends})
    list(APPEND declared ${name})
  endforeach()
  list(LENGTH declared rooms)
  if(rooms LESS 5)
    message(FATAL_ERROR "found only ${rooms} rooms in service/CMakeLists.txt")
  endif()
elseif(CASE STREQUAL "undeclared")
  write_room("${WORK}/b" "b.hpp" "// b\n")
  write_room("${WORK}/a" "a.cpp" "#include \"service/b/b.hpp\"\n")
  sluice_check_room(b "${WORK}/b" DECLARED "" DEPENDS "")
  sluice_check_room(a "${WORK}/a" DECLARED b DEPENDS "")
elseif(CASE STREQUAL "cycle")
  write_room("${WORK}/a" "a.cpp" "#include \"service/b/b.hpp\"\n")
  sluice_check_room(a "${WORK}/a" DECLARED "" DEPENDS b)
elseif(CASE STREQUAL "clean")
  write_room("${WORK}/b" "b.hpp" "// b\n")
  write_room("${WORK}/a" "a.cpp"
    "#include \"service/a/a.hpp\"\n#include \"service/b/b.hpp\"\n")
  sluice_check_room(b "${WORK}/b" DECLARED "" DEPENDS "")
  sluice_check_room(a "${WORK}/a" DECLARED b DEPENDS b)
else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
message(STATUS "layering ok")
