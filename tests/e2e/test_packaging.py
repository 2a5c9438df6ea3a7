"""The service files in packaging/: systemd accepts the units, and the default
configuration documents every key with its real default."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, require_bins

PACKAGING = os.path.join(os.path.dirname(__file__), "..", "..", "packaging")


@pytest.mark.parametrize("unit", ["trackd.service", "trackd-user.service"])
def test_systemd_accepts_the_unit(tmp_path, unit):
    require_bins()
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed on this machine")
    text = open(os.path.join(PACKAGING, "systemd", unit)).read()
    # Point ExecStart at the binary just built: verify checks that it exists.
    text = text.replace("/usr/bin/trackd", os.path.abspath(BIN["trackd"]))
    path = tmp_path / unit
    path.write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_default_config_documents_every_key_with_its_default(tmp_path):
    require_bins()
    env = dict(os.environ)
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("XDG_STATE_HOME", None)
    if os.geteuid() != 0:
        pytest.skip("the system defaults are printed for root only")
    effective = subprocess.run([BIN["trackd"], "--check-config"], capture_output=True,
                               text=True, check=True, env=env).stdout
    shipped = open(os.path.join(PACKAGING, "trackd.yaml")).read()
    # The shipped file with its key lines uncommented must be a valid config whose
    # effective values are exactly the defaults.
    cfg = tmp_path / "uncommented.yaml"
    lines = []
    for line in shipped.splitlines():
        m = re.match(r"^# ( *)([a-z_]+:.*)$", line)
        if m:
            lines.append(m.group(1) + m.group(2))
    cfg.write_text("\n".join(lines) + "\n")
    again = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr + "\n" + cfg.read_text()
    assert again.stdout == effective
    # And every key the agent knows is in the shipped file.
    known = sorted(l.split(":")[0] for l in again.stdout.splitlines() if not l.startswith("#"))
    shipped_keys = sorted(l.split(":")[0] for l in cfg.read_text().splitlines())
    assert known == shipped_keys, "packaging/trackd.yaml and the agent's keys differ"



# ---- the Debian packages (scripts/package.sh, cmake/Packaging.cmake) -------------
#
# The packages are built once per session, extracted with `dpkg -x` into one
# scratch root, and everything after that runs from the scratch root: the
# packaged agent and trackctl, a program built against the packaged headers and
# pkg-config / CMake files, the packaged Python package.

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE_NAMES = ["libtrackd", "libtrackd-dev", "python3-trackd", "trackd"]


def _out(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout


def _project_version():
    text = open(os.path.join(REPO, "CMakeLists.txt")).read()
    return re.search(r"project\(trackd VERSION ([0-9.]+)", text).group(1)


def _depends(deb):
    """{package name: version constraint or ""} of the Depends field; an
    alternative "a | b" is kept whole as its key."""
    field = _out("dpkg-deb", "-f", deb, "Depends").strip()
    deps = {}
    for part in field.split(","):
        part = part.strip()
        if "|" in part:
            deps[part] = ""
            continue
        m = re.match(r"^([a-z0-9.+-]+)(?::any)?\s*(?:\((.*)\))?$", part)
        assert m, f"unparsable Depends entry {part!r} in {field!r}"
        deps[m.group(1)] = (m.group(2) or "").replace(" ", "")
    return deps


def _owner_package(soname_prefix, binary):
    """The Debian package holding the shared library `binary` loads whose
    name starts with soname_prefix (dpkg -S on the file the loader resolves)."""
    for line in _out("ldd", binary).splitlines():
        m = re.match(r"^\s*(\S+) => (/\S+)", line)
        if not m or not re.match(re.escape(soname_prefix) + r"[.-]", m.group(1)):
            continue
        paths = {m.group(2), os.path.realpath(m.group(2))}
        # Merged /usr: dpkg knows each file under one of its two names.
        paths |= {p[4:] if p.startswith("/usr/") else "/usr" + p for p in set(paths)}
        for path in sorted(paths):
            r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.split(":")[0]
        raise AssertionError(f"no package owns {sorted(paths)}")
    raise AssertionError(f"{binary} does not load {soname_prefix}")


@pytest.fixture(scope="session")
def debs(tmp_path_factory):
    """{package name: .deb path}, built by scripts/package.sh."""
    for tool in ("dpkg-deb", "dpkg-shlibdeps", "cpack", "file"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing (scripts/setup-deps.sh installs it)")
    out = tmp_path_factory.mktemp("debs")
    # ctest passes a build dir kept between runs (incremental); else a fresh one.
    build = os.environ.get("TRACKD_PACKAGE_BUILD_DIR") or str(
        tmp_path_factory.mktemp("package-build"))
    r = subprocess.run([os.path.join(REPO, "scripts", "package.sh"), str(out), build],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    paths = r.stdout.split()
    by_name = {_out("dpkg-deb", "-f", p, "Package").strip(): p for p in paths}
    assert sorted(by_name) == PACKAGE_NAMES, paths
    return by_name


@pytest.fixture(scope="session")
def root(debs, tmp_path_factory):
    """A scratch root holding every package, extracted as dpkg -i would unpack it."""
    root = tmp_path_factory.mktemp("root")
    for deb in debs.values():
        subprocess.run(["dpkg", "-x", deb, str(root)], check=True)
    return root


@pytest.fixture(scope="session")
def multiarch():
    return _out("dpkg-architecture", "-qDEB_HOST_MULTIARCH").strip()


def _root_env(root, multiarch, **extra):
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr" / "lib" / multiarch), **extra)
    env.pop("TRACKD_LIB", None)
    return env


def test_packages_have_their_names_versions_and_depends(debs, root, multiarch):
    version = _project_version()
    arch = _out("dpkg", "--print-architecture").strip()
    for name, deb in debs.items():
        assert _out("dpkg-deb", "-f", deb, "Version").strip() == version
        assert _out("dpkg-deb", "-f", deb, "Architecture").strip() == (
            "all" if name == "python3-trackd" else arch), name
    agent_bin = str(root / "usr" / "bin" / "trackd")
    lib = str(root / "usr" / "lib" / multiarch / "libtrackd.so.0")
    pkg = {so: _owner_package(so, agent_bin)
           for so in ("libnng", "libprotobuf-c", "libcurl", "libyaml", "libjson-c")}

    # Depends come from the shared libraries the ELF files load (dpkg-shlibdeps),
    # with a minimum version; our own packages are pinned to this version.
    agent = _depends(debs["trackd"])
    for so, p in pkg.items():
        assert p in agent, f"trackd: no Depends on {p} ({so}): {agent}"
    # (The minimum versions are what each library's shlibs/symbols file says; libc6's
    # is always there.)
    assert agent["libc6"].startswith(">=")
    assert agent["libtrackd"] == f"={version}"
    assert "systemd | adduser" in agent

    libdeps = _depends(debs["libtrackd"])
    assert pkg["libnng"] in libdeps and pkg["libprotobuf-c"] in libdeps, libdeps
    # The client library loads no HTTP, YAML or JSON code: only the agent does.
    assert pkg["libcurl"] not in libdeps and pkg["libyaml"] not in libdeps, libdeps
    assert pkg["libjson-c"] not in libdeps, libdeps
    assert _out("ldd", lib).count("libcurl") == 0

    assert _depends(debs["libtrackd-dev"]) == {"libtrackd": f"={version}"}
    py = _depends(debs["python3-trackd"])
    assert py["libtrackd"] == f"={version}" and "python3" in py, py
    assert "python3-yaml" in py, py  # config files are read with PyYAML


def test_control_files_conffiles_shlibs_and_maintainer_scripts(debs, tmp_path):
    version = _project_version()
    control = {}
    for name, deb in debs.items():
        d = tmp_path / name
        subprocess.run(["dpkg-deb", "-e", deb, str(d)], check=True)
        control[name] = d
    agent = control["trackd"]
    assert (agent / "conffiles").read_text().split() == ["/etc/trackd/trackd.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        path = agent / script
        assert os.access(path, os.X_OK), script
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, script
    # Whoever links libtrackd.so.0 gets "libtrackd (>= this version)".
    assert (control["libtrackd"] / "shlibs").read_text().strip() == \
        f"libtrackd 0 libtrackd (>= {version})"
    assert "ldconfig" in (control["libtrackd"] / "postinst").read_text()
    for name in ("libtrackd-dev", "python3-trackd", "libtrackd"):
        assert not (control[name] / "conffiles").exists(), name


def _files(root):
    """Every file and symlink under root, as absolute paths of the target system."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.add("/" + os.path.relpath(os.path.join(dirpath, n), root))
    return found


def test_package_contents(debs, tmp_path, multiarch):
    lib = f"/usr/lib/{multiarch}"
    py = "/usr/lib/python3/dist-packages/trackd"
    # Every module of the package, subpackages (trackd/wandb) included.
    pkg_dir = os.path.join(REPO, "client-shim/python/trackd")
    py_sources = sorted(os.path.relpath(os.path.join(d, f), pkg_dir)
                        for d, _, files in os.walk(pkg_dir) for f in files
                        if f.endswith(".py"))
    expected = {
        "trackd": {
            "/usr/bin/trackd", "/usr/bin/trackctl",
            "/lib/systemd/system/trackd.service", "/usr/lib/systemd/user/trackd-user.service",
            "/usr/lib/sysusers.d/trackd.conf", "/usr/lib/tmpfiles.d/trackd.conf",
            "/etc/trackd/trackd.yaml", "/usr/share/doc/trackd/README.md",
            "/usr/share/man/man8/trackd.8.gz", "/usr/share/man/man1/trackctl.1.gz"},
        "libtrackd": {f"{lib}/libtrackd.so.0", f"{lib}/libtrackd.so.{_project_version()}"},
        "libtrackd-dev": {
            "/usr/include/trackd/trackd.h", f"{lib}/libtrackd.so", f"{lib}/pkgconfig/trackd.pc",
            f"{lib}/cmake/trackd/trackdConfig.cmake",
            f"{lib}/cmake/trackd/trackdConfigVersion.cmake",
            f"{lib}/cmake/trackd/trackdTargets.cmake",
            f"{lib}/cmake/trackd/trackdTargets-relwithdebinfo.cmake"},
        "python3-trackd": {f"{py}/{f}" for f in py_sources} | {f"{py}/_install.py"},
    }
    for name, deb in debs.items():
        one = tmp_path / name
        subprocess.run(["dpkg", "-x", deb, str(one)], check=True)
        assert _files(one) == expected[name], name
    # The shipped files are the sources, unchanged.
    r = tmp_path / "trackd"
    for shipped, source in [
            ("etc/trackd/trackd.yaml", "packaging/trackd.yaml"),
            ("lib/systemd/system/trackd.service", "packaging/systemd/trackd.service"),
            ("usr/lib/systemd/user/trackd-user.service", "packaging/systemd/trackd-user.service"),
            ("usr/lib/sysusers.d/trackd.conf", "packaging/systemd/trackd.sysusers"),
            ("usr/lib/tmpfiles.d/trackd.conf", "packaging/systemd/trackd.tmpfiles")]:
        assert (r / shipped).read_bytes() == open(os.path.join(REPO, source), "rb").read(), shipped
    assert (tmp_path / "libtrackd-dev/usr/include/trackd/trackd.h").read_bytes() == \
        open(os.path.join(REPO, "client-shim/include/trackd/trackd.h"), "rb").read()
    # Symlinks: the SONAME link in the runtime package, the dev link in -dev.
    assert os.readlink(tmp_path / f"libtrackd{lib}/libtrackd.so.0") == \
        f"libtrackd.so.{_project_version()}"
    assert os.readlink(tmp_path / f"libtrackd-dev{lib}/libtrackd.so") == "libtrackd.so.0"


def test_packaged_binaries_run_from_the_scratch_root(root, multiarch):
    env = _root_env(root, multiarch)
    agent, ctl = str(root / "usr/bin/trackd"), str(root / "usr/bin/trackctl")
    assert _out(agent, "--version", env=env).strip() == f"trackd {_project_version()}"
    assert _out(agent, "--help", env=env).startswith("Usage: trackd")
    assert "trackctl status" in _out(ctl, "--help", env=env)
    # trackctl loads the packaged libtrackd, not the build tree's.
    loaded = [l for l in _out("ldd", ctl, env=env).splitlines() if "libtrackd" in l]
    assert len(loaded) == 1 and str(root) in loaded[0], loaded
    soname = _out("readelf", "-d", str(root / f"usr/lib/{multiarch}/libtrackd.so.0"))
    assert "Library soname: [libtrackd.so.0]" in soname


def _help_options(text):
    return sorted(set(re.findall(r"^\s+(--[a-z][a-z-]*)", text, re.M)))


def test_man_pages_cover_every_option_and_command(root, multiarch):
    """The man pages follow --help: every option of trackd and every command of
    trackctl it lists is described there."""
    import gzip
    env = _root_env(root, multiarch)
    agent_roff = gzip.open(root / "usr/share/man/man8/trackd.8.gz", "rt").read()
    agent_man = agent_roff.replace("\\-", "-")
    options = _help_options(_out(str(root / "usr/bin/trackd"), "--help", env=env)
                            .split("Configuration file keys")[0])
    assert len(options) >= 6, options
    for opt in options:
        assert re.search(rf"^\.(B|BI|BR) {re.escape(opt)}\b", agent_man, re.M), \
            f"trackd(8) does not describe {opt}"
    ctl_roff = gzip.open(root / "usr/share/man/man1/trackctl.1.gz", "rt").read()
    ctl_man = ctl_roff.replace("\\-", "-")
    # The lower-case words after "trackctl": "status", …, "spool flush".
    commands = re.findall(r"^  trackctl ([a-z]+(?: [a-z]+)*)",
                          _out(str(root / "usr/bin/trackctl"), "--help", env=env), re.M)
    assert len(commands) >= 9, commands
    for cmd in commands:
        assert re.search(rf"^\.B {re.escape(cmd)}\b", ctl_man, re.M), \
            f"trackctl(1) does not describe {cmd!r}"
    groff = shutil.which("groff")
    if groff:
        for page in (agent_roff, ctl_roff):
            r = subprocess.run([groff, "-man", "-ww", "-z"], input=page, capture_output=True,
                               text=True)
            assert r.returncode == 0 and r.stderr == "", r.stderr


# A client of the installed library, built outside this source tree.
CONSUMER_C = r"""
#include <stdio.h>
#include <trackd/trackd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	td_run_options opts;
	td_run *run;
	td_run_options_init(&opts);
	opts.project = argv[1];
	opts.run_id = argv[2];
	opts.print_footer = false;
	int rc = td_init(&opts, &run);
	if (rc != TD_OK) {
		fprintf(stderr, "td_init: %s: %s\n", td_strerror(rc), td_last_error());
		return 1;
	}
	for (int step = 0; step < 5; step++) {
		td_item row[] = {TD_F("loss", 1.0 / (step + 1)), TD_I("epoch", step)};
		if ((rc = td_log(run, row, 2, step, true)) != TD_OK) {
			fprintf(stderr, "td_log: %s\n", td_strerror(rc));
			return 1;
		}
	}
	td_finish_report rep;
	rc = td_finish(run, 0, 30000, &rep);
	printf("%d %llu %llu\n", rc, (unsigned long long)rep.records_logged,
	       (unsigned long long)rep.records_acked);
	return rc == TD_OK && rep.records_acked == rep.records_logged ? 0 : 1;
}
"""


@pytest.fixture
def packaged_agent(tmp_path, root, multiarch, monkeypatch):
    """A real agent started from the scratch root's /usr/bin/trackd (the
    harness's trackctl calls use the packaged trackctl too)."""
    require_bins()
    import conftest
    monkeypatch.setenv("LD_LIBRARY_PATH", str(root / "usr" / "lib" / multiarch))
    monkeypatch.delenv("TRACKD_LIB", raising=False)
    monkeypatch.setitem(conftest.BIN, "trackd", str(root / "usr/bin/trackd"))
    monkeypatch.setitem(conftest.BIN, "trackctl", str(root / "usr/bin/trackctl"))
    a = conftest.Agent(tmp_path)
    a.start()
    yield a
    a.stop()


def _assert_run_arrived(agent, run_id, rows):
    """The run is finished in the agent's run store, with exactly these rows."""
    agent.wait_for(lambda: agent.run_state(run_id) == "finished", what=f"{run_id} finished")
    lines = agent.query("history", run=run_id)["lines"]
    # (_runtime and _timestamp are the agent's, W&B-style: not compared.)
    assert [{k: v for k, v in l.items() if k not in ("_runtime", "_timestamp")}
            for l in lines] == rows


def _run_consumer(exe, root, multiarch, agent, run_id):
    env = _root_env(root, multiarch, TRACKD_SOCKET=agent.url)
    loaded = [l for l in _out("ldd", exe, env=env).splitlines() if "libtrackd" in l]
    assert len(loaded) == 1 and str(root) in loaded[0], loaded
    r = subprocess.run([exe, "pkgtest", run_id], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rc, logged, acked = map(int, r.stdout.split())
    assert rc == 0 and logged >= 5 and acked == logged, r.stdout
    _assert_run_arrived(agent, run_id, [{"_step": s, "loss": 1.0 / (s + 1), "epoch": s}
                                        for s in range(5)])


def test_external_program_builds_with_pkg_config(root, multiarch, tmp_path, packaged_agent):
    src = tmp_path / "consumer.c"
    src.write_text(CONSUMER_C)
    # PKG_CONFIG_LIBDIR replaces the default search path: only the root's .pc counts.
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(root / "usr/lib" / multiarch / "pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=str(root), PKG_CONFIG_PATH="",
               PKG_CONFIG_ALLOW_SYSTEM_CFLAGS="1", PKG_CONFIG_ALLOW_SYSTEM_LIBS="1")
    assert _out("pkg-config", "--modversion", "trackd", env=env).strip() == _project_version()
    cflags = _out("pkg-config", "--cflags", "trackd", env=env).split()
    libs = _out("pkg-config", "--libs", "trackd", env=env).split()
    assert f"-I{root}/usr/include" in cflags, cflags
    assert f"-L{root}/usr/lib/{multiarch}" in libs and "-ltrackd" in libs, libs
    exe = str(tmp_path / "consumer")
    subprocess.run(["cc", "-Wall", "-Werror", "-o", exe, str(src), *cflags, *libs], check=True)
    _run_consumer(exe, root, multiarch, packaged_agent, "pkgconfig-run")


def test_external_program_builds_with_cmake_find_package(root, multiarch, tmp_path,
                                                        packaged_agent):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "consumer.c").write_text(CONSUMER_C)
    cmakelists = """cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(trackd @WANT@ REQUIRED)
add_executable(consumer consumer.c)
target_link_libraries(consumer PRIVATE trackd::trackd)
"""
    version = _project_version()
    major, minor, _ = version.split(".")

    def configure(want, build):
        (proj / "CMakeLists.txt").write_text(cmakelists.replace("@WANT@", want))
        return subprocess.run(["cmake", "-S", str(proj), "-B", str(build),
                               f"-DCMAKE_PREFIX_PATH={root}/usr"],
                              capture_output=True, text=True)

    # A newer minor release than the packaged one is refused (SameMinorVersion).
    newer = configure(f"{major}.{int(minor) + 1}", tmp_path / "build-newer")
    assert newer.returncode != 0 and "trackd" in newer.stderr, newer.stdout + newer.stderr
    build = tmp_path / "build"
    r = configure(f"{major}.{minor}", build)
    assert r.returncode == 0, r.stdout + r.stderr
    cache = (build / "CMakeCache.txt").read_text()
    assert f"trackd_DIR:PATH={root}/usr/lib/{multiarch}/cmake/trackd" in cache
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    _run_consumer(str(build / "consumer"), root, multiarch, packaged_agent, "cmake-run")


def test_installed_python_package_loads_the_installed_library(root, multiarch, tmp_path,
                                                               packaged_agent):
    script = r"""
import sys, trackd
from trackd import _lib
run = trackd.init(project="pkgtest", id="python-run", console=False)
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)})
run.finish()
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libtrackd" in l]
print(trackd.__file__)
print("\n".join(sorted(set(maps))))
"""
    env = dict(os.environ, PYTHONPATH=str(root / "usr/lib/python3/dist-packages"),
               TRACKD_SOCKET=packaged_agent.url)
    # Nothing points at a library: the package must find its own.
    for var in ("TRACKD_LIB", "LD_LIBRARY_PATH", "LD_PRELOAD"):
        env.pop(var, None)
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    module, *libs = r.stdout.split()
    assert module == str(root / "usr/lib/python3/dist-packages/trackd/__init__.py")
    assert libs == [str(root / f"usr/lib/{multiarch}/libtrackd.so.{_project_version()}")], libs
    _assert_run_arrived(packaged_agent, "python-run",
                        [{"_step": s, "loss": 1.0 / (s + 1)} for s in range(5)])


# dpkg -i / -r / -P for real, in a throw-away copy of this machine: an overlay of
# / (the changes go to a temporary upper dir) in a private mount namespace,
# entered with chroot. No systemd runs there (as in a container or a chroot),
# so the maintainer scripts take their guarded paths: the unit is enabled by
# deb-systemd-helper, not started. The installed agent is then started by hand
# as user trackd, and a run is logged to it through the installed Python package.
DPKG_SESSION = r"""
set -eu
d=$1; variant=$2
m=$d/merged
mkdir -p $d/upper $d/work $m
mount -t overlay overlay -o lowerdir=/,upperdir=$d/upper,workdir=$d/work $m
mount -t proc proc $m/proc
mount --rbind /dev $m/dev
mount -t tmpfs tmpfs $m/run
mount -t tmpfs tmpfs $m/tmp
cp -r $d/debs $m/tmp/debs
# No client here may start a private agent of its own (trackctl and the library
# do when no agent answers, e.g. while the machine's agent is still starting):
# detached, it would outlive the session and keep its mount namespace alive.
ch() { chroot $m env TRACKD_NO_AUTOSTART=1 "$@"; }
say() { echo "@@ $*"; }
if [ "$variant" = adduser ]; then
    # A machine without systemd's tools: postinst falls back to adduser.
    ch rm -f /usr/bin/systemd-sysusers /usr/bin/systemd-tmpfiles
fi
# (man-db's trigger rebuilds its whole index: minutes here, nothing tested.)
ch rm -f /var/lib/man-db/auto-update
ch sh -c 'dpkg -i /tmp/debs/*.deb' >&2
say user=$(ch getent passwd trackd | cut -d: -f1,6,7)
say group=$(ch getent group trackd | cut -d: -f1)
say statedir=$(ch stat -c '%U:%G:%a' /var/lib/trackd)
say conffiles=$(ch dpkg-query -W -f='${Conffiles}' trackd | awk '{print $1}')
say enabled=$(ch readlink /etc/systemd/system/multi-user.target.wants/trackd.service || echo none)
say status=$(ch dpkg-query -W -f='${db:Status-Abbrev}' trackd libtrackd libtrackd-dev python3-trackd | tr -d ' ')
# The service's user runs the installed agent as trackd.service would: the
# environment systemd gives it (HOME from passwd, no XDG_* variables), the shipped
# configuration as it is, the runtime dir systemd would create.
ch install -d -m 0750 -o trackd -g trackd /run/trackd
# (chroot itself, not the ch function: $! must be the agent's pid, as
# chroot, env and setpriv each exec the next.)
chroot $m env -i HOME=/var/lib/trackd PATH=/usr/bin:/bin setpriv --reuid trackd --regid trackd \
    --init-groups /usr/bin/trackd --config /etc/trackd/trackd.yaml >$d/agent.log 2>&1 &
agent=$!
# Whatever happens below, the agent does not outlive the session.
trap 'kill -TERM $agent 2>/dev/null || true' EXIT
i=0
until ch /usr/bin/trackctl status >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 600 ] || { cat $d/agent.log >&2; exit 1; }; sleep 0.05
done
say socket=$(ch stat -c '%U:%G:%a' /run/trackd/trackd.sock)
ch env -u TRACKD_LIB -u LD_LIBRARY_PATH -u PYTHONPATH /usr/bin/python3 -c '
import trackd, trackd._lib as l
with trackd.init(project="dpkg", id="dpkg-run", console=False) as run:
    for i in range(3):
        run.log({"x": i})
print("@@ pylib=" + l.lib()._name)
'
# The local sink applies the finished run shortly after the client's ack.
runs() {
    ch /usr/bin/trackctl runs --json | /usr/bin/python3 -c '
import json, sys
print(",".join(r["id"] + ":" + r["state"] for r in json.load(sys.stdin)["runs"]))'
}
i=0
until [ "$(runs)" = dpkg-run:finished ] || [ $i -ge 600 ]; do i=$((i + 1)); sleep 0.05; done
say runs=$(runs)
kill -TERM $agent
wait $agent || true
# Nothing the session started is left: a process whose root is the overlay.
left=
for p in /proc/[0-9]*; do
    [ "$(readlink $p/root 2>/dev/null)" = "$m" ] || continue
    left="$left ${p#/proc/}:$(tr '\0' ' ' <$p/cmdline)"
    kill -KILL ${p#/proc/} 2>/dev/null || true
done
say leftover=${left:-none}
ch dpkg -r trackd >&2
say removed_config=$(ch test -f /etc/trackd/trackd.yaml && echo kept || echo gone)
say removed_state=$(ch test -d /var/lib/trackd && echo kept || echo gone)
ch dpkg -P trackd >&2
say purged_config=$(ch test -e /etc/trackd && echo kept || echo gone)
say purged_state=$(ch test -e /var/lib/trackd && echo kept || echo gone)
ch dpkg -P python3-trackd libtrackd-dev libtrackd >&2
say python_left=$(ch test -e /usr/lib/python3/dist-packages/trackd && echo kept || echo gone)
say lib_left=$(ch ls /usr/lib/$(ch dpkg-architecture -qDEB_HOST_MULTIARCH) | grep -c libtrackd || true)
"""


@pytest.mark.parametrize("variant", ["sysusers", "adduser"])
def test_dpkg_install_remove_purge_in_an_overlay_root(debs, tmp_path, variant):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i into an overlay of / needs root")
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.skip("unshare (util-linux) is not installed")
    probe = tmp_path / "probe"
    for sub in ("upper", "work", "merged"):
        (probe / sub).mkdir(parents=True)
    r = subprocess.run([unshare, "-m", "--propagation", "private", "mount", "-t", "overlay",
                        "overlay", "-o", f"lowerdir=/,upperdir={probe}/upper,"
                        f"workdir={probe}/work", str(probe / "merged")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no overlay mount in a private mount namespace here: {r.stderr.strip()}")
    session = tmp_path / "session"
    (session / "debs").mkdir(parents=True)
    for deb in debs.values():
        shutil.copy(deb, session / "debs")
    r = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", DPKG_SESSION,
                        "sh", str(session), variant], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line[3:].split("=", 1) for line in r.stdout.splitlines()
               if line.startswith("@@ "))
    multiarch = _out("dpkg-architecture", "-qDEB_HOST_MULTIARCH").strip()
    assert got == {
        "user": "trackd:/var/lib/trackd:/usr/sbin/nologin",
        "group": "trackd",
        "statedir": "trackd:trackd:700",
        "conffiles": "/etc/trackd/trackd.yaml",
        "enabled": "/lib/systemd/system/trackd.service",
        "status": "iiiiiiii",
        "socket": "trackd:trackd:660",
        "pylib": f"/usr/lib/{multiarch}/libtrackd.so.0",
        "runs": "dpkg-run:finished",
        "leftover": "none",
        "removed_config": "kept", "removed_state": "kept",
        "purged_config": "gone", "purged_state": "gone",
        "python_left": "gone", "lib_left": "0",
    }, r.stderr[-3000:]
