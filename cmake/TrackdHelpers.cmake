# Helpers that keep every target of ours built the same way.
#
# trackd_warnings(target): the house warning set, errors included. Generated code
# (proto/) does not use it.
function(trackd_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wshadow
    -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter)
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
endfunction()

# trackd_module(name SOURCES … DEPS …): one agent module = one static library that
# links only the modules it may call, so a wrong dependency is a link error.
function(trackd_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${M_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${M_DEPS})
  trackd_warnings(${name})
endfunction()

# trackd_unit_test(name SOURCES … DEPS …): a test executable beside the module it
# tests, registered with ctest.
function(trackd_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT TRACKD_TESTS)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_DEPS})
  trackd_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT})
endfunction()
