"""Running under a service manager: systemd socket activation and inherited
sockets (fd://N), --pid, --umask, and --user/--group after binding."""
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import SERVER_CWD, fetch, free_port, run_gorgon, scaled, server_env, wait_for


class Launched:
    """A server started by some other command line (a service manager)."""

    def __init__(self, argv, tmp_path, **popen):
        self.err = tmp_path / "launched.stderr"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=SERVER_CWD, env=server_env(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, **popen)

    def text(self):
        return self.err.read_bytes().decode("utf-8", "replace")

    def wait_listening(self):
        wait_for(lambda: "Listening at" in self.text() or self.proc.poll() is not None, 30,
                 what="Listening at")
        assert self.proc.poll() is None, self.text()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(scaled(30))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def gorgon_argv(*args):
    return [sys.executable, "-m", "gorgon", "hello:app", "--workers", "2", *args]


@pytest.fixture
def activate():
    """systemd-socket-activate, passing on the environment the server needs
    (it passes on none by itself, as systemd does not)."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (Debian's systemd package; "
                    "scripts/bootstrap installs it)")
    return [tool] + [arg for k, v in server_env().items() for arg in ("-E", "%s=%s" % (k, v))]


def test_systemd_socket_activation_tcp(activate, tmp_path):
    port = free_port()
    s = Launched([*activate, "-l", "127.0.0.1:%d" % port, *gorgon_argv()], tmp_path)
    try:
        # As systemd does, the tool starts the server when the first client
        # connects; that client waits in the socket's queue meanwhile.
        wait_for(lambda: "Listening on" in s.text(), 10, what="the activation socket")
        assert fetch(("127.0.0.1", port), "/", timeout=30).status == 200
        wait_for(lambda: "Listening at" in s.text(), 10, what="Listening at")
        assert re.search(r"Listening at: http://127\.0\.0\.1:%d \(fd://3\)" % port, s.text()), s.text()
        for _ in range(4):
            assert fetch(("127.0.0.1", port), "/").status == 200
        assert s.stop() == 0, s.text()
    finally:
        s.kill()


def test_systemd_socket_activation_unix(activate, tmp_path):
    path = str(tmp_path / "activated.sock")
    s = Launched([*activate, "-l", path, *gorgon_argv()], tmp_path)
    try:
        wait_for(lambda: "Listening on" in s.text(), 10, what="the activation socket")
        assert fetch(path, "/", timeout=30).status == 200
        assert s.stop() == 0, s.text()
        # The socket file is systemd's, not ours: left in place.
        assert os.path.exists(path)
    finally:
        s.kill()


def test_listen_fds_that_is_not_a_number_passes_no_socket(tmp_path):
    """LISTEN_PID names the server but LISTEN_FDS is not a number: no socket
    was passed, and the server listens on its --bind as without them."""
    port = free_port()
    argv = " ".join(shlex.quote(a) for a in gorgon_argv("--bind", "127.0.0.1:%d" % port))
    s = Launched(["sh", "-c", "LISTEN_PID=$$ LISTEN_FDS=three exec " + argv], tmp_path)
    try:
        s.wait_listening()
        assert "Listening at: http://127.0.0.1:%d" % port in s.text(), s.text()
        assert fetch(("127.0.0.1", port), "/").status == 200
        assert s.stop() == 0, s.text()
    finally:
        s.kill()


def test_bind_an_inherited_socket(tmp_path):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    s = Launched(gorgon_argv("--bind", "fd://%d" % fd), tmp_path, pass_fds=(fd,))
    try:
        s.wait_listening()
        assert fetch(("127.0.0.1", port), "/").status == 200
        assert s.stop() == 0, s.text()
        # Ours still listens: the server did not filter or close the socket it was given.
        c = socket.create_connection(("127.0.0.1", port), 2)
        conn, _ = lsock.accept()
        conn.close()
        c.close()
    finally:
        s.kill()
        lsock.close()


def test_bind_fd_that_is_not_a_listening_socket():
    r = run_gorgon("hello:app", "--bind", "fd://0")
    assert r.returncode == 1
    assert b"cannot listen on fd://0: not an open, listening stream socket" in r.stderr, r.stderr


def test_pid_file(server, tmp_path):
    pid_file = tmp_path / "gorgon.pid"
    srv = server("hello:app", "--pid", str(pid_file))
    assert pid_file.read_text() == "%d\n" % srv.pid
    assert srv.stop() == 0
    assert not pid_file.exists()


def test_pid_file_removed_by_someone_else_is_no_error_at_stop(server, tmp_path):
    pid_file = tmp_path / "gorgon.pid"
    srv = server("hello:app", "--pid", str(pid_file))
    pid_file.unlink()
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr_text(), srv.describe()


def test_umask_applies_to_unix_socket_files(server, tmp_path):
    path = str(tmp_path / "masked.sock")
    srv = server("hello:app", "--bind", "unix:" + path, "--umask", "077")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert fetch(path, "/").status == 200
    assert srv.stop() == 0


def test_bad_umask_is_refused():
    r = run_gorgon("hello:app", "--umask", "9x")
    assert r.returncode == 2 and b"--umask: not an octal mask" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_user_and_group_after_binding_a_privileged_port(server, tmp_path):
    import pwd
    nobody = pwd.getpwnam("nobody")
    try:
        probe = subprocess.run([sys.executable, "-c", "import gorgon._gorgon"], cwd="/", env=server_env(),
                               user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                               capture_output=True).returncode
    except OSError:
        probe = -1
    if probe != 0:
        pytest.skip("user nobody cannot read this Python or this checkout (%s); the Debian tier "
                    "runs this test" % sys.executable)
    port = next((p for p in range(900, 1000) if port_free(p)), None)
    if port is None:
        pytest.skip("no free port below 1000")
    sockdir = tempfile.mkdtemp(prefix="gorgon-user-")
    os.chmod(sockdir, 0o777)  # the user must be able to remove its socket at the stop
    path = os.path.join(sockdir, "app.sock")
    srv = server("hello:app", "--bind", "127.0.0.1:%d" % port, "--bind", "unix:" + path,
                 "--user", "nobody")
    with open("/proc/%d/status" % srv.pid) as f:
        ids = dict(line.split(":", 1) for line in f if line.startswith(("Uid", "Gid")))
    assert ids["Uid"].split()[:2] == [str(nobody.pw_uid)] * 2
    assert ids["Gid"].split()[:2] == [str(nobody.pw_gid)] * 2
    assert "running as uid %d, gid %d" % (nobody.pw_uid, nobody.pw_gid) in srv.stderr_text()
    assert os.stat(path).st_uid == nobody.pw_uid
    assert fetch(("127.0.0.1", port), "/").status == 200
    assert fetch(path, "/").status == 200
    assert srv.stop() == 0
    assert not os.path.exists(path)


def test_unknown_user_is_refused():
    r = run_gorgon("hello:app", "--user", "no-such-user-here")
    assert r.returncode == 2 and b"--user/--group: no such user or group" in r.stderr


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.skipif(os.geteuid() != 0, reason="switching group needs root")
def test_group_alone_after_binding(server, tmp_path):
    """--group without --user: the process keeps its user, takes the group (and
    no supplementary groups), and hands unix socket files to that group."""
    import grp
    group = next((g for g in ("nogroup", "nobody", "daemon") if _has_group(g)), None)
    if group is None:
        pytest.skip("no nogroup, nobody or daemon group on this machine")
    gid = grp.getgrnam(group).gr_gid
    path = str(tmp_path / "grp.sock")
    srv = server("hello:app", "--bind", "unix:" + path, "--group", group)
    with open("/proc/%d/status" % srv.pid) as f:
        ids = dict(line.split(":", 1) for line in f if line.startswith(("Uid", "Gid", "Groups")))
    assert ids["Gid"].split()[:2] == [str(gid)] * 2, ids
    assert ids["Uid"].split()[:2] == ["0", "0"], ids
    assert ids["Groups"].split() == [str(gid)], ids
    assert "running as uid 0, gid %d" % gid in srv.stderr_text()
    assert os.stat(path).st_gid == gid
    assert fetch(path, "/").status == 200
    assert srv.stop() == 0


def _has_group(name):
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the listen queue length")
@pytest.mark.parametrize("backlog", [37, 2048])
def test_backlog_sets_the_listen_queue_length(server, backlog):
    """--backlog is the listen() queue length (ss shows it as a listening
    socket's Send-Q); 2048 is the default."""
    args = ("--backlog", str(backlog)) if backlog != 2048 else ()
    srv = server("hello:app", *args)
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % srv.port], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "LISTEN" and int(out[2]) == backlog, out
    assert fetch(srv, "/").status == 200
