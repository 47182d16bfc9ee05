# Run at every build (cmake -P): writes OUT with the current git commit, "-dirty" when the tree has
# uncommitted changes, so outputs name the code that really made them. OUT is rewritten only when
# the text changes, so nothing recompiles needlessly.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY "${SRC}" OUTPUT_VARIABLE c
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT c)
  set(c "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY "${SRC}" RESULT_VARIABLE dirty ERROR_QUIET)
  if(dirty EQUAL 1)
    set(c "${c}-dirty")
  endif()
endif()
set(text "// Generated at build time by cmake/git_commit.cmake; do not edit.\n#pragma once\n#define REWIND_GIT_COMMIT \"${c}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
