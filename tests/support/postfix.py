"""A private Postfix instance on loopback for tests: a real MTA that only ever delivers into local Maildirs.

Nothing here touches the machine's own Postfix: the instance has its own config, queue and data
directories under a fresh temporary directory, listens on 127.0.0.1 only, on two unused ports
(``port`` offers SMTPUTF8, ``ascii_port`` does not), and cannot send anything off the machine
(``default_transport = error``, ``relay_transport = error``, unauthorised destinations refused at
RCPT). Every address in :data:`DOMAINS` is a mailbox, ``ADDRESS/`` under ``mailbox_base``, except
local parts starting with ``unknown``, which get ``550 5.1.1``. STARTTLS is offered with a
certificate for 127.0.0.1 issued by a private trustme CA (``ca_path``). Postfix logs to the file
``maillog``.

Use::

    with Postfix.create() as relay:      # raises PostfixUnavailable when it cannot be had
        ...  # point mailer at relay.host / relay.port, trust relay.ca_path
        relay.wait_for_mail({"anna@shop.example": 1})

Postfix delivers asynchronously after it answered 250; :meth:`Postfix.wait_for_mail` and
:meth:`Postfix.wait_until_idle` wait, bounded, until it is done. The module has no pytest
dependency; the fixture lives in the test module.
"""

from __future__ import annotations

import collections
import email.parser
import os
import pwd
import re
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import answers, free_port

__all__ = ["CRASH_PREFIX", "DOMAINS", "Postfix", "PostfixUnavailable"]

#: The mail domains the relay delivers for. ``.example`` is reserved (RFC 2606) and, unlike
#: ``.test``, accepted by email-validator; the xn-- label is ``bücher`` in ASCII form.
DOMAINS = ("shop.example", "xn--bcher-kva.example")

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) or "/usr/sbin/postconf"

#: Recipients whose local part starts with this are looked up in the policy server, which kills the
#: relay at the RCPT of an address armed with :meth:`Postfix.crash_at`.
CRASH_PREFIX = "crash-"

#: A guard against hangs, not a speed expectation.
WAIT_SECONDS = 30.0

_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

# Every service runs unchrooted ("n" in the 5th column) so that no copy of /etc files is needed
# in the queue directory; the two smtpd listeners differ only in whether they offer SMTPUTF8.
_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
127.0.0.1:{ascii_port} inet n - n - - smtpd -o smtputf8_enable=no
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

# Every address of the test domains is a mailbox except local parts starting with "unknown": those
# are "User unknown" (550 5.1.1). virtual(8) allows no per-address substitution in a regexp result,
# so all mailboxes share one Maildir and the Delivered-To header virtual(8) adds tells them apart.
_MAILBOXES = """\
if !/^unknown/
/@/ inbox/
endif
"""


class PostfixUnavailable(RuntimeError):
    """Postfix is not installed, or cannot be started by this user; the message says which."""


@dataclass
class Postfix:
    """One private Postfix instance (see the module docstring); build it with :meth:`create`."""

    root: Path
    port: int
    ascii_port: int
    ca_path: Path
    host: str = "127.0.0.1"
    _policy: _PolicyServer = field(init=False)
    _control: threading.Lock = field(init=False, default_factory=threading.Lock)  # the policy thread kills it

    def __post_init__(self) -> None:
        self._policy = _PolicyServer(self)

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls) -> Postfix:
        """Configure and start an instance; the caller owns it (:meth:`close` stops it, removes its files).

        Raises :class:`PostfixUnavailable` when Postfix cannot be had here (not installed, not root,
        no postfix user), and ``RuntimeError`` when it is there but this configuration fails.
        """
        if not Path(POSTFIX).exists():
            raise PostfixUnavailable("postfix is not installed (Debian: apt-get install postfix; .ci/run does it)")
        if os.geteuid() != 0:
            raise PostfixUnavailable("postfix's master must be started by root; these tests run as another user")
        try:
            owner = pwd.getpwnam("postfix")
        except KeyError:
            raise PostfixUnavailable("there is no 'postfix' user (the Debian package creates it)") from None
        # Not under pytest's tmp_path: that sits below a 0700 directory, and virtual(8) writes the
        # Maildirs as an unprivileged user that must be able to reach them.
        root = Path(tempfile.mkdtemp(prefix="mailer-postfix-"))
        root.chmod(0o755)
        relay = cls(root=root, port=free_port(), ascii_port=free_port(), ca_path=root / "ca.pem")
        try:
            relay._configure(owner)
            relay.start()
        except BaseException:
            relay.close()
            raise
        return relay

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def mailbox_base(self) -> Path:
        return self.root / "mail"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    def _configure(self, owner: pwd.struct_passwd) -> None:
        import trustme  # imported lazily: it pulls in cryptography

        etc, queue, data, mail = self.config_dir, self.root / "queue", self.root / "data", self.mailbox_base
        for directory in (etc, queue, data, mail):
            directory.mkdir(mode=0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        os.chown(data, owner.pw_uid, owner.pw_gid)

        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert = ca.issue_cert(self.host, "localhost")
        cert.cert_chain_pems[0].write_to_path(str(etc / "cert.pem"))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(etc / "cert.pem"), append=True)
        cert.private_key_pem.write_to_path(str(etc / "key.pem"))
        (etc / "key.pem").chmod(0o600)

        (etc / "mailboxes.regexp").write_text(_MAILBOXES, encoding="utf-8")
        (etc / "crash.regexp").write_text(f"/^{CRASH_PREFIX}/ crash_relay\n", encoding="utf-8")
        (etc / "master.cf").write_text(_MASTER_CF.format(port=self.port, ascii_port=self.ascii_port))
        settings = {
            "compatibility_level": "3.6",
            "config_directory": etc,
            "queue_directory": queue,
            "data_directory": data,
            "mail_owner": owner.pw_name,
            "setgid_group": "postdrop",
            "myhostname": "mx.shop.example",
            "mydomain": "shop.example",
            "myorigin": "shop.example",
            "mydestination": "",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            # Nothing leaves the machine: only the test domains are accepted, everything else is
            # refused at RCPT, and any message that still needed a remote hop would bounce.
            "smtpd_relay_restrictions": "reject_unauth_destination",
            # INFO logs every RCPT with its helo=<...> and to=<...>, which Postfix otherwise only logs
            # for rejections; the second rule sends armed recipients to the policy server (crash_at).
            "smtpd_restriction_classes": "crash_relay",
            "crash_relay": f"check_policy_service inet:{self.host}:{self._policy.port}",
            "smtpd_recipient_restrictions": (
                f"check_client_access static:INFO, check_recipient_access regexp:{etc / 'crash.regexp'}"
            ),
            "smtpd_policy_service_default_action": "DUNNO",
            "default_transport": "error:this test relay delivers to local Maildirs only",
            "relay_transport": "error:this test relay delivers to local Maildirs only",
            "virtual_mailbox_domains": ", ".join(DOMAINS),
            "virtual_mailbox_maps": f"regexp:{etc / 'mailboxes.regexp'}",
            "virtual_mailbox_base": mail,
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "virtual_minimum_uid": str(min(nobody.pw_uid, 100)),
            "smtputf8_enable": "yes",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": etc / "cert.pem",
            "smtpd_tls_key_file": etc / "key.pem",
            "smtpd_tls_loglevel": "1",
            "smtp_tls_security_level": "none",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.root,
            "biff": "no",
            # Mail Postfix itself had to defer (e.g. cut off by a stop) is tried again within seconds.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
        }
        lines = [f"{key} = {value}" for key, value in settings.items()]
        (etc / "main.cf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Creates the queue's subdirectories with the owners and modes Postfix insists on.
        self._postfix("set-permissions")
        self._postfix("check")

    def start(self) -> None:
        """Start the instance and wait until both ports answer."""
        with self._control:
            self._postfix("start")
        deadline = time.monotonic() + WAIT_SECONDS
        for port in (self.port, self.ascii_port):
            while not answers(self.host, port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postfix started but 127.0.0.1:{port} never answered; see {self.maillog}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the instance and wait until its ports refuse connections (idempotent)."""
        with self._control:
            if self.running:
                # postfix-script kills the master with force after 5 s and may then exit non-zero:
                # what counts is that nothing runs afterwards, checked below and by the port probe.
                subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"], capture_output=True)
                if self.running:
                    raise RuntimeError(f"postfix -c {self.config_dir} stop left it running; see {self.maillog}")
        deadline = time.monotonic() + WAIT_SECONDS
        while answers(self.host, self.port) or answers(self.host, self.ascii_port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not stop within {WAIT_SECONDS}s; see {self.maillog}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the master process lives. Not `postfix status`: it counts a killed master left as
        a zombie (nobody reaps it where the test runner is not an init process) as running."""
        try:
            pid = int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return False
        return state not in ("Z", "X")

    def close(self) -> None:
        """Stop the instance (if it runs) and remove all its files."""
        try:
            if (self.config_dir / "main.cf").exists():
                self.stop()
        finally:
            self._policy.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def reset(self) -> None:
        """Make the instance ready for the next test: running, with no crash armed."""
        self._policy.armed.clear()
        if not self.running:
            self.start()

    def crash_at(self, address: str) -> None:
        """Kill the whole relay when a client sends ``RCPT TO:<address>``, once, before answering it.

        ``address`` must start with :data:`CRASH_PREFIX`. The client sees its connection drop in the
        middle of that transaction and every later connection refused: a relay going down mid-pass,
        at the point the test chose. Messages accepted before stay in Postfix's queue until :meth:`start`.
        """
        if not address.startswith(CRASH_PREFIX):
            raise ValueError(f"{address!r}: only addresses starting with {CRASH_PREFIX!r} reach the policy server")
        self._policy.armed.add(address.lower())

    def crash(self) -> None:
        """SIGKILL every process of the instance at once (the master's process group), as a power cut would.

        Unlike ``postfix stop`` this cannot wait on the smtpd that is waiting for the policy server:
        everything is gone when it returns, so a client's next connection is refused.
        """
        with self._control:
            pid = int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
            os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + WAIT_SECONDS
            while self.running or answers(self.host, self.port) or answers(self.host, self.ascii_port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postfix still runs {WAIT_SECONDS}s after SIGKILL; see {self.maillog}")
                time.sleep(0.05)

    def _postfix(self, command: str) -> None:
        done = subprocess.run([POSTFIX, "-c", str(self.config_dir), command], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {(done.stderr or done.stdout).strip()}")

    # -- observations -------------------------------------------------------------------------

    @property
    def maildir(self) -> Path:
        """The one Maildir every mailbox shares (see ``_MAILBOXES``)."""
        return self.mailbox_base / "inbox"

    def delivered(self) -> list[tuple[str, Path]]:
        """Every delivered message as (its Delivered-To address, lower-cased; its file), oldest name first."""
        files = sorted(
            p for sub in ("new", "cur") if (self.maildir / sub).is_dir() for p in (self.maildir / sub).iterdir()
        )
        return [(_delivered_to(path), path) for path in files]

    def mailbox(self, address: str) -> list[Path]:
        """The files of the messages delivered to ``address``."""
        return [path for to, path in self.delivered() if to == address.lower()]

    def counts(self) -> dict[str, int]:
        """How many messages each address received, for every address that received any."""
        return dict(collections.Counter(to for to, _ in self.delivered()))

    def handed_over(self) -> dict[str, int]:
        """How many distinct messages each address was handed, counted by Postfix's queue id.

        A power cut (:meth:`crash`) can catch virtual(8) after it wrote a message into the Maildir but
        before the queue file was removed; Postfix then delivers that queue file again after
        :meth:`start` (its delivery is at-least-once). Both files carry the same queue id, so this
        counts what a client submitted, not how often Postfix wrote it down.
        """
        seen = {(to, _queue_id(path)) for to, path in self.delivered()}
        return dict(collections.Counter(to for to, _ in seen))

    def queued(self) -> int:
        """How many messages are still in Postfix's queue (not yet delivered nor bounced)."""
        queue = self.root / "queue"
        return sum(1 for name in _QUEUES if (queue / name).is_dir() for p in (queue / name).rglob("*") if p.is_file())

    def log(self) -> str:
        """Everything Postfix logged so far."""
        try:
            return self.maillog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_until_idle(self, timeout: float = WAIT_SECONDS) -> None:
        """Block until Postfix's queue is empty: everything it accepted is delivered or bounced."""
        self._wait(lambda: self.queued() == 0, timeout, lambda: f"{self.queued()} message(s) still queued")

    def wait_for_mail(self, expected: Mapping[str, int], timeout: float = WAIT_SECONDS) -> dict[str, int]:
        """Block until each address in ``expected`` holds at least that many messages and the queue is empty.

        Returns :meth:`counts` of every mailbox, so the caller can check that nothing more arrived.
        """

        def done() -> bool:
            counts = self.counts()
            return self.queued() == 0 and all(counts.get(a.lower(), 0) >= n for a, n in expected.items())

        def describe() -> str:
            counts = self.counts()
            have = {a: counts.get(a.lower(), 0) for a in expected}
            return f"expected {dict(expected)}, have {have}, {self.queued()} still queued"

        self._wait(done, timeout, describe)
        return self.counts()

    def _wait(self, predicate: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"postfix: {describe()} after {timeout}s; log:\n{self.log()[-3000:]}")
            time.sleep(0.1)


class _PolicyServer(socketserver.ThreadingTCPServer):
    """A Postfix policy delegation server (SMTPD_POLICY_README) that kills the relay for armed recipients."""

    daemon_threads = True

    def __init__(self, relay: Postfix) -> None:
        super().__init__(("127.0.0.1", 0), _PolicyHandler)
        self.relay = relay
        self.armed: set[str] = set()
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, name="postfix-policy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _PolicyHandler(socketserver.StreamRequestHandler):
    server: _PolicyServer

    def handle(self) -> None:
        # One connection carries many requests: name=value lines, each request ended by an empty line.
        request: dict[str, str] = {}
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                name, _, value = line.partition("=")
                request[name] = value
                continue
            recipient = request.get("recipient", "").lower()
            request = {}
            if recipient in self.server.armed:
                self.server.armed.discard(recipient)
                # This kills the smtpd waiting for the answer too: the client's session drops here.
                self.server.relay.crash()
                return
            self.wfile.write(b"action=DUNNO\n\n")


def _delivered_to(path: Path) -> str:
    """The address in the Delivered-To header virtual(8) put first in the file (raw bytes, UTF-8)."""
    with path.open("rb") as handle:
        for line in handle:
            if line.lower().startswith(b"delivered-to:"):
                return line.split(b":", 1)[1].strip().decode("utf-8").lower()
            if not line.strip():
                break
    raise AssertionError(f"{path}: no Delivered-To header; was it delivered by this relay's virtual(8)?")


def _queue_id(path: Path) -> str:
    """The queue id in the Received header this relay's smtpd put on top of the message."""
    with path.open("rb") as handle:
        received = email.parser.BytesHeaderParser().parse(handle).get("Received", "")
    found = re.search(r"\(Postfix\)\s+with\s+\S+\s+id\s+(\w+)", str(received))
    if found is None:
        raise AssertionError(f"{path}: no Postfix queue id in its Received header {received!r}")
    return found.group(1)


