"""Tests of the test SMTP server itself, driven by plain smtplib clients."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.smtpserver import (
    Action,
    SmtpServer,
    parse_action,
    read_delivery_log,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SENDER = "shop@mailer.test"
RCPT = "ann@example.test"
# Generous guard for blocking calls; never an expectation about speed.
GUARD = 10.0


def make_message(to: str = RCPT, subject: str = "Thank you, Ann", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Merci pour votre fidélité — 10 years with us!\n")
    return msg


def send(server: SmtpServer, to: str | list[str] = RCPT, **kwargs: str) -> dict[str, object]:
    """One plain-SMTP delivery; returns smtplib's refused-recipients dict."""
    rcpts = [to] if isinstance(to, str) else to
    with smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
        return dict(client.send_message(make_message(rcpts[0], **kwargs), SENDER, rcpts))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


def trusting(server: SmtpServer) -> ssl.SSLContext:
    assert server.ca_path is not None
    return ssl.create_default_context(cafile=server.ca_path)


# ----------------------------------------------------------------------------- plain


def test_plain_delivery_is_recorded_and_parseable(server: SmtpServer) -> None:
    assert server.port > 0
    assert send(server, Message_ID="<m1@mailer.test>") == {}
    server.wait_for(1)

    assert server.count == 1
    [msg] = server.messages
    assert msg.mail_from == SENDER
    assert msg.rcpt_tos == (RCPT,)
    assert msg.tls is False and msg.login is None
    parsed = msg.parsed()
    assert parsed["Subject"] == "Thank you, Ann"
    assert parsed["Message-ID"] == "<m1@mailer.test>"
    body = parsed.get_body()
    assert body is not None
    assert "fidélité" in body.get_content()
    assert server.by_recipient() == {RCPT: [msg]}
    assert server.attempts(RCPT.upper()) == 1


def test_wait_for_times_out_with_a_clear_message(server: SmtpServer) -> None:
    with pytest.raises(TimeoutError, match="expected 1 message"):
        server.wait_for(1, timeout=0.01)


def test_reset_forgets_messages_and_installs_a_new_script(server: SmtpServer) -> None:
    send(server)
    server.reset({RCPT: ["rcpt:550 5.1.1 gone"]})
    assert server.count == 0 and server.messages == [] and server.attempts(RCPT) == 0
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(server)


# ----------------------------------------------------------------------------- TLS + AUTH


def test_starttls_with_trusted_ca_and_correct_credentials() -> None:
    with SmtpServer(tls="starttls", auth=("mailer", "s3cret")) as server:
        with smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert not client.has_extn("auth"), "AUTH must not be offered before STARTTLS"
            client.starttls(context=trusting(server))
            client.ehlo()
            assert client.has_extn("auth")
            code, _ = client.login("mailer", "s3cret")
            assert code == 235
            client.send_message(make_message())
        [msg] = server.messages
        assert msg.tls is True
        assert msg.login == "mailer"


def test_auth_with_wrong_password_is_refused_with_535() -> None:
    with SmtpServer(tls="starttls", auth=("mailer", "s3cret")) as server:
        with smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
            client.starttls(context=trusting(server))
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                client.login("mailer", "wrong")
            assert err.value.smtp_code == 535
        assert server.count == 0


def test_mail_without_auth_is_refused_with_530() -> None:
    with (
        SmtpServer(tls="starttls", auth=("mailer", "s3cret")) as server,
        smtplib.SMTP(server.host, server.port, timeout=GUARD) as client,
    ):
        client.starttls(context=trusting(server))
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.send_message(make_message())
        assert err.value.smtp_code == 530


def test_starttls_is_required_before_mail_by_default() -> None:
    with (
        SmtpServer(tls="starttls") as server,
        smtplib.SMTP(server.host, server.port, timeout=GUARD) as client,
    ):
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.send_message(make_message())
        assert err.value.smtp_code == 530


def test_default_verification_refuses_the_self_signed_certificate() -> None:
    with SmtpServer(tls="starttls") as server:
        with (
            smtplib.SMTP(server.host, server.port, timeout=GUARD) as client,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client.starttls(context=ssl.create_default_context())
        assert server.count == 0


def test_untrusted_certificate_is_refused_even_when_trusting_ca_path() -> None:
    with (
        SmtpServer(tls="implicit", untrusted=True) as server,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        smtplib.SMTP_SSL(server.host, server.port, timeout=GUARD, context=trusting(server))


def test_certificate_for_another_hostname_is_refused() -> None:
    with (
        SmtpServer(tls="starttls", cert_hostnames=["elsewhere.test"]) as server,
        smtplib.SMTP(server.host, server.port, timeout=GUARD) as client,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        client.starttls(context=trusting(server))


def test_implicit_tls_with_auth() -> None:
    with SmtpServer(tls="implicit", auth=("mailer", "s3cret")) as server:
        with smtplib.SMTP_SSL(
            server.host, server.port, timeout=GUARD, context=trusting(server)
        ) as client:
            client.login("mailer", "s3cret")
            client.send_message(make_message())
        [msg] = server.messages
        assert msg.tls is True and msg.login == "mailer"


def test_plaintext_server_with_auth_offers_auth_in_clear() -> None:
    # Lets a test show that the client refuses to send a password unencrypted.
    with (
        SmtpServer(auth=("mailer", "s3cret")) as server,
        smtplib.SMTP(server.host, server.port, timeout=GUARD) as client,
    ):
        client.ehlo()
        assert client.has_extn("auth")
        assert not client.has_extn("starttls")


# ----------------------------------------------------------------------------- faults

REPLY_FAULTS = [
    "421 4.7.0 try later",
    "451 4.3.0 local error",
    "452 4.2.2 mailbox full",
    "550 5.1.1 user unknown",
    "554 5.7.1 rejected",
]


@pytest.mark.parametrize("reply", REPLY_FAULTS)
def test_scripted_reply_at_rcpt(reply: str) -> None:
    with SmtpServer(script={RCPT: [f"rcpt:{reply}"]}) as server:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            send(server)
        code, text = reply.split(" ", 1)
        assert err.value.recipients == {RCPT: (int(code), text.encode())}
        assert server.count == 0
        assert server.attempts(RCPT) == 1


@pytest.mark.parametrize("reply", REPLY_FAULTS)
def test_scripted_reply_at_data(reply: str) -> None:
    with SmtpServer(script={RCPT: [f"data:{reply}"]}) as server:
        with pytest.raises(smtplib.SMTPDataError) as err:
            send(server)
        code, text = reply.split(" ", 1)
        assert (err.value.smtp_code, err.value.smtp_error) == (int(code), text.encode())
        assert server.count == 0


def test_data_is_the_default_phase() -> None:
    with (
        SmtpServer(script={RCPT: ["451 4.3.0 later"]}) as server,
        pytest.raises(smtplib.SMTPDataError),
    ):
        send(server)


def test_421_closes_the_connection_but_other_failures_do_not() -> None:
    with SmtpServer(script={RCPT: ["451 4.3.0 later", "421 4.7.0 bye", "ok"]}) as server:
        with smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
            client.ehlo()
            for expected in (451, 421):
                client.mail(SENDER)
                client.rcpt(RCPT)
                # data() itself does not close on 421 (sendmail() would).
                code, _ = client.data(make_message().as_bytes())
                assert code == expected
                if expected == 451:
                    assert client.rset()[0] == 250  # connection still usable
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.noop()
        assert server.count == 0


@pytest.mark.parametrize("action", ["drop", "data:drop", "rcpt:drop"])
def test_drop_disconnects_without_recording(action: str) -> None:
    with SmtpServer(script={RCPT: [action]}) as server:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(server)
        assert server.count == 0
        send(server)  # the server itself is fine
        assert server.count == 1


def test_drop_mid_data_over_starttls() -> None:
    with SmtpServer(tls="starttls", script={RCPT: ["drop"]}) as server:
        with smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
            client.starttls(context=trusting(server))
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.send_message(make_message())
        assert server.count == 0


def test_lost_reply_records_the_message_but_the_client_sees_a_disconnect() -> None:
    with SmtpServer(script={RCPT: ["lost-reply"]}) as server:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(server)
        assert server.count == 1


def test_stall_times_out_the_client_while_other_connections_are_served() -> None:
    with SmtpServer(script={"slow@example.test": ["stall:60"]}) as server:
        outcome: list[BaseException] = []

        def stalled_client() -> None:
            try:
                with smtplib.SMTP(server.host, server.port, timeout=1) as client:
                    client.send_message(make_message("slow@example.test"))
            except BaseException as exc:  # handed to the main thread
                outcome.append(exc)

        thread = threading.Thread(target=stalled_client)
        thread.start()
        try:
            server.wait_until(lambda: server.stalling == 1, GUARD)
            # A 60 s stall that blocked the loop would make this time out.
            send(server, "fast@example.test")
            assert [m.rcpt_tos for m in server.messages] == [("fast@example.test",)]
        finally:
            thread.join(GUARD)
        [exc] = outcome
        # smtplib reports a read timeout as a disconnect, chained to the timeout.
        assert isinstance(exc, smtplib.SMTPServerDisconnected)
        assert isinstance(exc.__context__, TimeoutError)
        # The client's disconnect cancels the stall; nothing was delivered.
        server.wait_until(lambda: server.stalling == 0, GUARD)
        assert server.count == 1


def test_a_delay_holds_every_reply_to_the_final_dot_and_several_connections_wait_at_once() -> None:
    with SmtpServer(delay=60) as server:
        outcomes: list[BaseException] = []

        def client(rcpt: str) -> None:
            try:
                with smtplib.SMTP(server.host, server.port, timeout=GUARD) as smtp:
                    smtp.send_message(make_message(rcpt))
            except BaseException as exc:  # handed to the main thread
                outcomes.append(exc)

        threads = [threading.Thread(target=client, args=(f"r{n}@example.test",)) for n in range(2)]
        for thread in threads:
            thread.start()
        # Both messages wait for their reply at the same time: the delay blocks no other connection.
        server.wait_until(lambda: server.stalling == 2, GUARD)
        assert server.count == 0
        server.stop()  # disconnects both clients; nothing was delivered
        for thread in threads:
            thread.join(GUARD)
        assert len(outcomes) == 2 and server.count == 0


def test_a_short_delay_then_the_message_is_accepted() -> None:
    with SmtpServer(delay=0.05) as server:
        started = time.monotonic()
        send(server)
        assert time.monotonic() - started >= 0.05  # the reply came after the delay, never before
        assert server.count == 1


def test_short_stall_then_success() -> None:
    with SmtpServer(script={RCPT: ["stall:0", "rcpt:stall:0"]}) as server:
        send(server)
        send(server)
        assert server.count == 2


# ----------------------------------------------------------------------------- pipelining


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelining_is_offered_unless_turned_off(pipelining: bool) -> None:
    with SmtpServer(pipelining=pipelining) as server, smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
        client.ehlo("client.test")
        assert client.has_extn("pipelining") is pipelining
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")  # the other offers stay


def test_commands_written_at_once_are_answered_in_turn() -> None:
    with SmtpServer(script={"no@example.test": ["rcpt:550 5.1.1 no such user"]}) as server:
        with socket.create_connection((server.host, server.port), timeout=GUARD) as sock, sock.makefile("rb") as lines:
            sock.sendall(b"EHLO client.test\r\n")
            while not next(lines).startswith(b"250 "):  # the greeting and the EHLO reply
                pass
            sock.sendall(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
            assert [next(lines)[:3] for _ in range(3)] == [b"250", b"250", b"354"]
            sock.sendall(b"Subject: one\r\n\r\nhi\r\n.\r\n")
            assert next(lines)[:3] == b"250"
            sock.sendall(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<no@example.test>\r\nDATA\r\nRSET\r\n".encode())
            assert [next(lines)[:3] for _ in range(4)] == [b"250", b"550", b"503", b"250"]
        assert [m.rcpt_tos for m in server.messages] == [(RCPT,)]


def test_a_mail_action_answers_the_mail_from_of_that_sender() -> None:
    with SmtpServer(script={SENDER: ["mail:451 4.3.0 sender check failed"]}) as server:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            send(server)
        assert (err.value.smtp_code, err.value.smtp_error) == (451, b"4.3.0 sender check failed")
        send(server)  # consumed: the next MAIL FROM is accepted
        [message] = server.messages
        assert (message.mail_from, server.attempts(RCPT)) == (SENDER, 1)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, b"503 Error: need RCPT command"),  # aiosmtpd's own
        ("554 5.5.1 Error: no valid recipients", b"554 5.5.1 Error: no valid recipients"),  # Postfix's words
    ],
)
def test_a_data_without_recipients_gets_503_or_the_reply_it_was_given(setting: str | None, expected: bytes) -> None:
    server = SmtpServer(data_without_recipients=setting)
    with server, smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        assert client.docmd("DATA") == (int(expected[:3]), expected[4:])


def test_a_lax_server_takes_what_follows_a_data_without_recipients_and_records_no_message() -> None:
    server = SmtpServer(data_without_recipients="354 go ahead")
    with server, smtplib.SMTP(server.host, server.port, timeout=GUARD) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        assert client.docmd("DATA") == (354, b"go ahead")
        client.send(b"Subject: lost\r\n\r\nbody\r\n.\r\n")
        assert client.getreply()[0] == 250
        assert client.rset()[0] == 250
        assert server.orphan_data == [b"Subject: lost\r\n\r\nbody\r\n"]
        assert server.count == 0


def test_data_without_recipients_must_be_an_smtp_reply() -> None:
    with pytest.raises(ValueError, match="not an SMTP reply"):
        SmtpServer(data_without_recipients="go ahead")


# ----------------------------------------------------------------------------- scripts


def test_script_is_consumed_one_action_per_attempt() -> None:
    script = {RCPT.upper(): ["data:451 4.3.0 later", "rcpt:550 5.1.1 no such user", "250"]}
    with SmtpServer(script=script) as server:
        with pytest.raises(smtplib.SMTPDataError):
            send(server)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server)
        send(server)  # third attempt: scripted success
        send(server)  # script exhausted: success
        assert server.attempts(RCPT) == 4
        assert server.count == 2
        send(server, "other@example.test")  # unscripted recipients are untouched
        assert server.count == 3


def test_partial_refusal_delivers_to_the_remaining_recipients() -> None:
    bad, good = "bad@example.test", "good@example.test"
    with SmtpServer(script={bad: ["rcpt:550 5.1.1 user unknown"]}) as server:
        refused = send(server, [bad, good])
        assert refused == {bad: (550, b"5.1.1 user unknown")}
        assert server.by_recipient().keys() == {good}


def test_data_actions_of_all_recipients_apply() -> None:
    with SmtpServer(script={"b@example.test": ["452 4.5.3 too many"]}) as server:
        with pytest.raises(smtplib.SMTPDataError) as err:
            send(server, ["a@example.test", "b@example.test"])
        assert err.value.smtp_code == 452


def test_callable_script_and_enqueue() -> None:
    asked: list[str] = []

    def script(rcpt: str) -> list[str] | None:
        asked.append(rcpt)
        return ["rcpt:451 4.7.1 greylisted"] if rcpt.endswith("@grey.test") else None

    with SmtpServer(script=script) as server:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server, "x@grey.test")
        send(server, "x@grey.test")
        send(server, "y@plain.test")
        assert asked == ["x@grey.test", "y@plain.test"]  # once per recipient

        server.enqueue("y@plain.test", "554 5.7.1 spam")
        with pytest.raises(smtplib.SMTPDataError):
            send(server, "y@plain.test")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok", Action("data", "reply", "250 OK")),
        ("250", Action("data", "reply", "250 2.0.0 OK")),
        ("RCPT:550 5.1.1 no such user", Action("rcpt", "reply", "550 5.1.1 no such user")),
        ("451", Action("data", "reply", "451 4.0.0 scripted temporary failure")),
        ("rcpt:drop", Action("rcpt", "drop")),
        ("data:lost-reply", Action("data", "lost-reply")),
        ("stall:1.5", Action("data", "stall", seconds=1.5)),
        ("mail:451 4.3.0 busy", Action("mail", "reply", "451 4.3.0 busy")),
        ("mail:drop", Action("mail", "drop")),
    ],
)
def test_parse_action(text: str, expected: Action) -> None:
    assert parse_action(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "okay",
        "354 go ahead",
        "600 nope",
        "rcpt:lost-reply",
        "mail:hangup",
        "stall:",
        "stall:-1",
        "stall:nan",
        "smtp:250",
        "4511 x",
    ],
)
def test_bad_actions_fail_at_construction(text: str) -> None:
    with pytest.raises(ValueError):
        SmtpServer(script={RCPT: [text]})


def test_a_bare_string_script_is_rejected() -> None:
    with pytest.raises(TypeError):
        SmtpServer(script={RCPT: "550 5.1.1 gone"})


# ----------------------------------------------------------------------------- sink + log


def test_sink_counts_and_logs_without_keeping_messages(tmp_path: Path) -> None:
    log = tmp_path / "deliveries.jsonl"
    with SmtpServer(sink=True, log_file=log) as server:
        send(server, Message_ID="<1@m.test>", X_Mailer_Occasion="birthday:42:2024")
        send(server, "b@example.test", subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
        assert server.count == 2
        with pytest.raises(RuntimeError):
            _ = server.messages
        # Each line is flushed before the 250: readable while the server runs.
        first, second = read_delivery_log(log)
    assert (first.seq, first.message_id, first.occasion) == (1, "<1@m.test>", "birthday:42:2024")
    assert first.rcpt_tos == (RCPT,) and first.mail_from == SENDER
    assert first.subject == "Thank you, Ann"
    assert (second.seq, second.message_id, second.occasion) == (2, None, None)
    assert second.subject == "Grüße"


def test_read_delivery_log_ignores_an_incomplete_last_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    assert read_delivery_log(log) == []
    log.write_text(
        '{"seq": 1, "message_id": null, "occasion": "o", "mail_from": "a@b",'
        ' "rcpt_tos": ["c@d"], "subject": null}\n{"seq": 2, "mess',
        encoding="utf-8",
    )
    [record] = read_delivery_log(log)
    assert record.occasion == "o"


def test_subprocess_mode_with_ready_file_log_and_sigterm(tmp_path: Path) -> None:
    ready, log = tmp_path / "ready", tmp_path / "log.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.smtpserver",
            "--port",
            "0",
            "--sink",
            "--log-file",
            str(log),
            "--ready-file",
            str(ready),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + GUARD  # a hang guard, not a speed assertion
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.02)
        port = int(ready.read_text())
        with smtplib.SMTP("127.0.0.1", port, timeout=GUARD) as client:
            client.ehlo()
            assert client.has_extn("pipelining")  # the benchmarks' sink offers it, as Postfix does
            for n in (1, 2):
                msg = make_message(Message_ID=f"<{n}@m.test>", X_Mailer_Occasion=f"occ-{n}")
                client.send_message(msg)
        # Flushed per message: visible while the server still runs.
        assert [r.occasion for r in read_delivery_log(log)] == ["occ-1", "occ-2"]

        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=GUARD)
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert [r.message_id for r in read_delivery_log(log)] == ["<1@m.test>", "<2@m.test>"]
