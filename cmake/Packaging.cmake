# Debian packages, one per install component (Install.cmake): `cpack -G DEB` in a
# build configured with -DCMAKE_INSTALL_PREFIX=/usr (scripts/package.sh does it).
#
#   trackd          agent, trackctl, units, sysusers/tmpfiles, /etc/trackd/trackd.yaml
#                   (conffile), man pages, maintainer scripts (packaging/debian/trackd)
#   libtrackd       the shared library (shlibs file: users depend on >= this version)
#   libtrackd-dev   headers, libtrackd.so, trackd.pc, the CMake package
#   python3-trackd  the Python package (Architecture: all; it loads libtrackd by ctypes,
#                   which checks the struct layout, so it needs the same version)
#
# Depends of the packages holding ELF files come from dpkg-shlibdeps (libc6,
# libnng1, libmicrohttpd12, libprotobuf-c1, libcurl4, libyaml-0-2, libjson-c5,
# …); the dependencies between our own packages are pinned to the exact version.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "Packaging: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}, not /usr: "
                 "the .deb files would install there (scripts/package.sh sets /usr)")
endif()

set(TRACKD_PACKAGE_CONTACT "trackd maintainers <root@localhost>" CACHE STRING
  "Maintainer field of the Debian packages")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME trackd)
set(CPACK_PACKAGE_VENDOR trackd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${TRACKD_PACKAGE_CONTACT}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Some destinations are absolute (/etc/trackd, /lib/systemd/system): stage
# through DESTDIR so they land in the package, never on this machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL agent lib dev python)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "file:///usr/share/doc/trackd/README.md")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# trackctl links libtrackd.so.0 from this build: let dpkg-shlibdeps find it (its
# dependency is the component dependency below, not something dpkg knows yet).
get_target_property(_trackd_lib_dir trackd BINARY_DIR)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${_trackd_lib_dir})
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(_deb ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME trackd)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_AGENT_DEPENDS lib)
set(CPACK_COMPONENT_AGENT_DESCRIPTION
  "machine-local experiment tracker (W&B-style runs): agent and trackctl
trackd takes run records (config, metrics per step, summary, console output,
final state) from training processes over a Unix socket and makes them durable
in a checksummed transaction log before acknowledging them; sinks keep a local
run store and can upload runs to a Weights & Biases backend. This package holds
the agent, run as the systemd service trackd.service (user trackd; members of
group trackd may log), and trackctl, which queries it.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  "${_deb}/trackd/conffiles;${_deb}/trackd/postinst;${_deb}/trackd/prerm;${_deb}/trackd/postrm")
# postinst creates the user with systemd-sysusers, or adduser where that is absent.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "systemd | adduser")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libtrackd)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
# Only libtrackd holds a shared object, so only it gets a shlibs file.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_COMPONENT_LIB_DESCRIPTION
  "client library of trackd, the machine-local experiment tracker
libtrackd records W&B-style runs (init, log, finish) from C programs: td_log
buffers the row and returns; a sender thread ships batches to the trackd agent
and resends them until they are acknowledged.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtrackd-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "client library of trackd: development files
Headers (trackd/trackd.h), the pkg-config file trackd.pc and the CMake package
(find_package(trackd), target trackd::trackd) for building against libtrackd.")

set(CPACK_DEBIAN_PYTHON_PACKAGE_NAME python3-trackd)
set(CPACK_DEBIAN_PYTHON_PACKAGE_SECTION python)
set(CPACK_DEBIAN_PYTHON_PACKAGE_ARCHITECTURE all)
set(CPACK_COMPONENT_PYTHON_DEPENDS lib)
# python3-yaml: config files given to trackd.init are read with PyYAML.
set(CPACK_DEBIAN_PYTHON_PACKAGE_DEPENDS "python3 (>= 3.9), python3-yaml")
set(CPACK_DEBIAN_PYTHON_PACKAGE_CONTROL_EXTRA "${_deb}/python3-trackd/postinst;${_deb}/python3-trackd/prerm")
set(CPACK_COMPONENT_PYTHON_DESCRIPTION
  "Python client of trackd, the machine-local experiment tracker
The trackd module: trackd.init / run.log / run.finish as in wandb, and
trackd.Api to read runs back, pure Python over libtrackd (ctypes).")

include(CPack)
