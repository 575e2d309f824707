"""A private Dovecot IMAP server on loopback for tests: its own config, mail and sockets in a temp dir.

Nothing here touches the machine's own Dovecot (none needs to run): the instance's config, base
directory, log and Maildirs live under a fresh temporary directory, it listens on 127.0.0.1 only,
on two unused ports: ``port`` speaks IMAP with STARTTLS, ``tls_port`` implicit TLS. Both present a
certificate for 127.0.0.1 issued by a private trustme CA (``ca_path``), so the client's verified-TLS
path is what gets tested, and no password is accepted before TLS. One user, :data:`USER` with
:data:`PASSWORD`, in a passwd-file passdb; its mail is in ``<root>/home/<user>/Maildir``.

Use::

    with Dovecot.create() as imap:      # raises DovecotUnavailable when it cannot be had
        ...  # point mailer at imap.host / imap.tls_port, trust imap.ca_path

The module has no pytest dependency; the fixture lives in the test module.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import answers, free_port

__all__ = ["PASSWORD", "USER", "Dovecot", "DovecotUnavailable"]

DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "correct horse battery staple"

_SHIPPED_DH = "/usr/share/dovecot/dh.pem"

#: A guard against hangs, not a speed expectation.
WAIT_SECONDS = 30.0

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_dh = <{root}/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed, or cannot be started by this user; the message says which."""


@dataclass
class Dovecot:
    """One private Dovecot instance (see the module docstring); build it with :meth:`create`."""

    root: Path
    port: int
    tls_port: int
    ca_path: Path
    host: str = "127.0.0.1"
    capabilities: str = ""  # the IMAP capabilities announced after login; "" = Dovecot's own (MOVE, UIDPLUS, …)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @classmethod
    def create(cls, capabilities: str = "") -> Dovecot:
        """Configure and start an instance; the caller owns it (:meth:`close` stops it, removes its files).

        Raises :class:`DovecotUnavailable` when Dovecot cannot be had here (not installed, not root, no
        dovecot/dovenull users), and ``RuntimeError`` when it is there but this configuration fails.
        """
        if not Path(DOVECOT).exists():
            raise DovecotUnavailable(
                "dovecot is not installed (Debian: apt-get install dovecot-imapd; .ci/run does it)"
            )
        if os.geteuid() != 0:
            raise DovecotUnavailable("dovecot's master must be started by root; these tests run as another user")
        for user in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise DovecotUnavailable(f"there is no {user!r} user (the Debian package creates it)") from None
        # Not under pytest's tmp_path: that sits below a 0700 directory the mail user cannot reach.
        root = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
        root.chmod(0o755)
        server = cls(
            root=root, port=free_port(), tls_port=free_port(), ca_path=root / "ca.pem", capabilities=capabilities
        )
        try:
            server._configure()
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def maildir(self) -> Path:
        """The test user's Maildir (INBOX; other folders are ``.Name`` inside it)."""
        return self.root / "home" / USER / "Maildir"

    def _configure(self) -> None:
        import trustme  # imported lazily: it pulls in cryptography

        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert = ca.issue_cert(self.host, "localhost")
        cert.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(self.root / "cert.pem"), append=True)
        cert.private_key_pem.write_to_path(str(self.root / "key.pem"))
        (self.root / "key.pem").chmod(0o600)
        # Dovecot 2.3 wants DH parameters; the package ships a set (making one takes seconds).
        if Path(_SHIPPED_DH).exists():
            shutil.copy(_SHIPPED_DH, self.root / "dh.pem")
        else:
            _make_dh(self.root / "dh.pem")

        mail_user = pwd.getpwnam("nobody")
        for directory in ("run", "state", "home"):
            (self.root / directory).mkdir(mode=0o755)
        home = self.root / "home" / USER
        home.mkdir(mode=0o700)
        os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", encoding="utf-8")
        (self.root / "passwd").chmod(0o600)
        internal = pwd.getpwnam("dovecot")  # the auth process reads the passdb as this user
        os.chown(self.root / "passwd", internal.pw_uid, internal.pw_gid)
        self.config.write_text(
            _CONFIG.format(
                root=self.root, host=self.host, port=self.port, tls_port=self.tls_port,
                internal_user="dovecot", login_user="dovenull", uid=mail_user.pw_uid, gid=mail_user.pw_gid,
            ),
            encoding="utf-8",
        )
        if self.capabilities:
            with self.config.open("a", encoding="utf-8") as config:
                config.write(f"imap_capability = {self.capabilities}\n")

    def start(self) -> None:
        """Start the instance in the foreground of a child process and wait until both ports answer."""
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + WAIT_SECONDS
        for port in (self.port, self.tls_port):
            while not answers(self.host, port):
                if self._process.poll() is not None:
                    output = self._process.stdout.read().decode("utf-8", "replace") if self._process.stdout else ""
                    raise RuntimeError(f"dovecot exited at start: {output.strip()}\n{self.log()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot started but {self.host}:{port} never answered; log:\n{self.log()}")
                time.sleep(0.05)

    def close(self) -> None:
        """Stop the instance (if it runs) and remove all its files."""
        try:
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.terminate()  # the master stops its children and removes its sockets
                try:
                    process.wait(timeout=WAIT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process is not None and process.stdout is not None:
                process.stdout.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """Everything Dovecot logged so far."""
        try:
            return (self.root / "dovecot.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def _make_dh(path: Path) -> None:
    subprocess.run(["openssl", "dhparam", "-out", str(path), "2048"], check=True, capture_output=True)


