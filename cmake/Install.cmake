# Install rules: where every shipped file goes, by component (one Debian package
# each, see Packaging.cmake):
#   agent   trackd, trackctl, systemd units, sysusers/tmpfiles, /etc/trackd/trackd.yaml,
#           man pages
#   lib     libtrackd.so.<version> and its SONAME link
#   dev     headers, the libtrackd.so link, trackd.pc, the CMake package (find_package(trackd))
#   python  the `trackd` Python package, which loads the lib component's library
#
# Relative destinations (GNUInstallDirs) follow CMAKE_INSTALL_PREFIX; with the prefix
# /usr on Debian the libdir is multiarch (lib/x86_64-linux-gnu). The few paths that
# sit outside the prefix on a Debian system (/etc, /lib/systemd/system) are absolute
# only when the prefix is /usr, so `cmake --install build --prefix /opt/x` stays
# inside /opt/x.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_trackd_unit_default "/lib/systemd/system")
  set(_trackd_conf_dir "${CMAKE_INSTALL_FULL_SYSCONFDIR}/trackd") # /etc/trackd
else()
  set(_trackd_unit_default "lib/systemd/system")
  set(_trackd_conf_dir "${CMAKE_INSTALL_SYSCONFDIR}/trackd")
endif()
set(TRACKD_SYSTEMD_SYSTEM_UNIT_DIR "${_trackd_unit_default}" CACHE STRING
  "Where trackd.service is installed (Debian 12: /lib/systemd/system)")
set(TRACKD_SYSTEMD_USER_UNIT_DIR "lib/systemd/user" CACHE STRING
  "Where trackd-user.service is installed (relative: under the prefix)")
set(TRACKD_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "Where trackd.conf for systemd-sysusers goes")
set(TRACKD_TMPFILES_DIR "lib/tmpfiles.d" CACHE STRING "Where trackd.conf for systemd-tmpfiles goes")
set(TRACKD_PYTHON_DIR "lib/python3/dist-packages" CACHE STRING
  "Where the trackd Python package goes (Debian's python3 reads lib/python3/dist-packages)")
set(TRACKD_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/trackd")

# ---- agent --------------------------------------------------------------------
# trackctl links libtrackd. Under /usr the loader finds it in the libdir; under any
# other prefix (scripts/install.sh ~/.local) a relative RPATH finds the library
# installed beside it, wherever the prefix is. The Debian packages carry none.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  file(RELATIVE_PATH _trackd_bin_to_lib "/p/${CMAKE_INSTALL_BINDIR}" "/p/${CMAKE_INSTALL_LIBDIR}")
  set_target_properties(trackctl PROPERTIES INSTALL_RPATH "$ORIGIN/${_trackd_bin_to_lib}")
endif()
install(TARGETS trackd_agent trackctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agent)
install(FILES packaging/systemd/trackd.service
  DESTINATION ${TRACKD_SYSTEMD_SYSTEM_UNIT_DIR} COMPONENT agent)
install(FILES packaging/systemd/trackd-user.service
  DESTINATION ${TRACKD_SYSTEMD_USER_UNIT_DIR} COMPONENT agent)
install(FILES packaging/systemd/trackd.sysusers
  DESTINATION ${TRACKD_SYSUSERS_DIR} RENAME trackd.conf COMPONENT agent)
install(FILES packaging/systemd/trackd.tmpfiles
  DESTINATION ${TRACKD_TMPFILES_DIR} RENAME trackd.conf COMPONENT agent)
install(FILES packaging/trackd.yaml
  DESTINATION ${_trackd_conf_dir} COMPONENT agent)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT agent)

# Man pages, compressed as Debian ships them (-n: no name or time stamp in the
# .gz, so the package is reproducible).
find_program(TRACKD_GZIP gzip REQUIRED)
set(_trackd_man_gz)
foreach(page trackd.8 trackctl.1)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  set(gz ${CMAKE_CURRENT_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${gz}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
    COMMAND ${TRACKD_GZIP} -9n -c ${CMAKE_CURRENT_SOURCE_DIR}/packaging/man/${page} > ${gz}
    DEPENDS packaging/man/${page}
    VERBATIM)
  list(APPEND _trackd_man_gz ${gz})
  install(FILES ${gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT agent)
endforeach()
add_custom_target(trackd_man ALL DEPENDS ${_trackd_man_gz})

# ---- lib and dev ----------------------------------------------------------------
install(TARGETS trackd EXPORT trackdTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY client-shim/include/trackd DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  COMPONENT dev FILES_MATCHING PATTERN "*.h")

# The exported targets file finds its prefix from its own location, so the
# installed tree can be moved (or extracted under another root) and still work.
install(EXPORT trackdTargets NAMESPACE trackd:: DESTINATION ${TRACKD_CMAKE_DIR}
  COMPONENT dev)
configure_package_config_file(cmake/trackdConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/trackdConfig.cmake
  INSTALL_DESTINATION ${TRACKD_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same major.minor matches.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/trackdConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/trackdConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/trackdConfigVersion.cmake
  DESTINATION ${TRACKD_CMAKE_DIR} COMPONENT dev)

configure_file(cmake/trackd.pc.in ${CMAKE_CURRENT_BINARY_DIR}/trackd.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/trackd.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# ---- python ---------------------------------------------------------------------
install(DIRECTORY client-shim/python/trackd DESTINATION ${TRACKD_PYTHON_DIR}
  COMPONENT python FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
# The installed package loads the installed library, found relative to itself
# (trackd/_install.py; see trackd/_lib.py), not a build tree's or whatever the
# loader's search path happens to hold first.
foreach(dir TRACKD_PYTHON_DIR CMAKE_INSTALL_LIBDIR)
  if(IS_ABSOLUTE "${${dir}}")
    set(_full_${dir} "${${dir}}")
  else()
    set(_full_${dir} "${CMAKE_INSTALL_PREFIX}/${${dir}}")
  endif()
endforeach()
get_target_property(_trackd_soversion trackd SOVERSION)
file(RELATIVE_PATH TRACKD_PYTHON_LIB_RELPATH "${_full_TRACKD_PYTHON_DIR}/trackd"
  "${_full_CMAKE_INSTALL_LIBDIR}/libtrackd.so.${_trackd_soversion}")
configure_file(cmake/trackd_install.py.in ${CMAKE_CURRENT_BINARY_DIR}/python/_install.py @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/python/_install.py
  DESTINATION ${TRACKD_PYTHON_DIR}/trackd COMPONENT python)
