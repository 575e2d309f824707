"""The HTTP API under /api/v1 against a real `mailer serve` process, its effects read back from the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.cli import cli
from mailer.contacts import erasure
from mailer.service import apikeys
from mailer.store.tables import ApiKey, Customer, ErasedAddress, Interaction
from tests.support.served import Reply, Served

JSON = "application/json"


@pytest.fixture
def served(project: Path) -> Iterator[Served]:
    server = Served(project)
    yield server
    assert server.stop() == 0


@pytest.fixture
def key(engine: Engine) -> str:
    return apikeys.create(engine, "shop")


def call(served: Served, method: str, path: str, key: str | None, body: object = None, raw: bytes | None = None,
         content_type: str = JSON) -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return served.request(method, f"/api/v1{path}", data, content_type if data is not None else None, headers)


def errors(reply: Reply) -> list[dict[str, object]]:
    assert reply.headers["Content-Type"].startswith(JSON), reply.body
    found: list[dict[str, object]] = json.loads(reply.body)["errors"]
    return found


def customer(engine: Engine, external_id: str) -> Customer | None:
    with Session(engine) as session:
        return session.execute(select(Customer).where(col(Customer.external_id) == external_id)).scalar_one_or_none()


@pytest.mark.slow
def test_put_creates_then_updates_only_when_values_change_and_get_shows_it(
    served: Served, engine: Engine, key: str
) -> None:
    ann = {"email": "ann@example.com", "first_name": "Ann", "tags": ["vip", "early"], "shoe_size": 42}
    created = call(served, "PUT", "/customers/api-1", key, ann)
    assert (created.status, json.loads(created.body)["result"]) == (201, "created")
    again = call(served, "PUT", "/customers/api-1", key, ann)
    assert (again.status, json.loads(again.body)["result"]) == (200, "unchanged")
    stored = customer(engine, "api-1")
    assert stored is not None
    stamp = stored.updated_at

    changed = call(served, "PUT", "/customers/api-1", key, {"email": "ann@example.com", "last_name": "Lee"})
    assert (changed.status, json.loads(changed.body)["result"]) == (200, "updated")
    stored = customer(engine, "api-1")
    assert stored is not None
    # A PUT changes the fields it names and leaves the rest, as a CSV without those columns does.
    assert (stored.first_name, stored.last_name, stored.tags) == ("Ann", "Lee", ["early", "vip"])
    assert stored.attributes == {"shoe_size": "42"}
    assert stored.updated_at > stamp

    shown = call(served, "GET", "/customers/api-1", key)
    assert shown.status == 200
    held = json.loads(shown.body)
    assert (held["email"], held["last_name"], held["attributes"]) == ("ann@example.com", "Lee", {"shoe_size": "42"})
    assert held["opt_out"]["unsubscribed_at"] is None and held["send_log"] == []
    missing = call(served, "GET", "/customers/nobody", key)
    assert missing.status == 404 and errors(missing)[0]["field"] == "external_id"


@pytest.mark.slow
def test_a_bad_field_is_named_and_nothing_is_written(served: Served, engine: Engine, key: str) -> None:
    bad = call(served, "PUT", "/customers/api-2", key, {"email": "ann@", "first_name": "Ann"})
    assert bad.status == 422
    assert [e["field"] for e in errors(bad)] == ["email"]
    assert "valid email" in str(errors(bad)[0]["problem"])
    no_email = call(served, "PUT", "/customers/api-2", key, {"first_name": "Ann"})
    assert no_email.status == 422 and errors(no_email)[0]["field"] == "email"
    wrong_type = call(served, "PUT", "/customers/api-2", key, {"email": "a@example.com", "first_name": {"x": 1}})
    assert wrong_type.status == 422 and errors(wrong_type)[0]["field"] == "first_name"
    clash = call(served, "PUT", "/customers/api-2", key, {"email": "a@example.com", "external_id": "other"})
    assert clash.status == 422 and errors(clash)[0]["field"] == "external_id"
    assert customer(engine, "api-2") is None


@pytest.mark.slow
def test_interactions_are_idempotent_by_reference(served: Served, engine: Engine, key: str) -> None:
    assert call(served, "PUT", "/customers/api-3", key, {"email": "bo@example.com"}).status == 201
    orders = [
        {"external_id": "api-3", "kind": "order", "occurred_at": "2026-11-20T10:00:00Z", "amount": 19.99,
         "reference": "o-1"},
        {"external_id": "api-3", "kind": "order", "occurred_at": "2026-11-21T10:00:00Z", "amount": "5.01",
         "reference": "o-2"},
    ]
    first = call(served, "POST", "/interactions", key, orders)
    assert (first.status, json.loads(first.body)) == (200, {"added": 2, "unchanged": 0})
    repeated = call(served, "POST", "/interactions", key, orders)
    assert (repeated.status, json.loads(repeated.body)) == (200, {"added": 0, "unchanged": 2})
    single = call(served, "POST", "/interactions", key, orders[0])
    assert json.loads(single.body) == {"added": 0, "unchanged": 1}

    unreferenced = {**orders[0], "reference": "", "occurred_at": "2026-11-22T10:00:00Z"}
    unknown = {**orders[0], "external_id": "nobody", "reference": "o-9"}
    refused = call(served, "POST", "/interactions", key, [orders[0], unreferenced, unknown])
    assert refused.status == 422
    assert [(e["item"], e["field"]) for e in errors(refused)] == [(2, "reference"), (3, "external_id")]

    stored = customer(engine, "api-3")
    assert stored is not None
    assert (stored.order_count, str(stored.lifetime_spend), stored.interaction_count) == (2, "25.00", 2)
    with Session(engine) as session:
        count = len(session.execute(select(Interaction).where(col(Interaction.customer_id) == stored.id)).all())
    assert count == 2


@pytest.mark.slow
def test_wrong_and_revoked_keys_are_refused(project: Path, served: Served, engine: Engine, key: str) -> None:
    body = {"email": "cy@example.com"}
    none = call(served, "PUT", "/customers/api-4", None, body)
    challenge = {name.lower(): value for name, value in none.headers.items()}["www-authenticate"]
    assert none.status == 401 and challenge.startswith("Bearer")
    assert errors(none)[0]["field"] == "Authorization"
    assert call(served, "PUT", "/customers/api-4", key + "x", body).status == 401
    assert call(served, "PUT", "/customers/api-4", "mk_made-up", body).status == 401

    revoked = CliRunner().invoke(cli, ["--config", str(project), "api-key", "revoke", "shop"])
    assert revoked.exit_code == 0, revoked.output
    refused = call(served, "PUT", "/customers/api-4", key, body)
    assert refused.status == 403 and "revoked" in str(errors(refused)[0]["problem"])
    assert customer(engine, "api-4") is None


@pytest.mark.slow
def test_malformed_oversized_and_non_json_bodies(served: Served, engine: Engine, key: str) -> None:
    broken = call(served, "PUT", "/customers/api-5", key, raw=b'{"email": ')
    assert broken.status == 400 and errors(broken)[0]["field"] == "body"
    not_object = call(served, "PUT", "/customers/api-5", key, ["a@example.com"])
    assert not_object.status == 422 and errors(not_object)[0]["field"] == "body"
    form = call(served, "PUT", "/customers/api-5", key, raw=b"email=a@example.com",
                content_type="application/x-www-form-urlencoded")
    assert form.status == 415
    big = json.dumps({"email": "a@example.com", "note": "x" * (1024 * 1024)}).encode()
    oversized = call(served, "PUT", "/customers/api-5", key, raw=big)
    assert oversized.status == 413 and errors(oversized)[0]["field"] == "body"
    assert customer(engine, "api-5") is None


def test_keys_are_kept_hashed_listed_and_revoked_by_name(project: Path, engine: Engine) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["--config", str(project), "api-key", "create", "crm"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("mk_") and len(key) > 40
    with Session(engine) as session:
        stored = session.execute(select(ApiKey)).scalar_one()
    assert stored.key_hash == apikeys.digest(key) and key not in stored.key_hash
    assert apikeys.check(engine, key)[0] is apikeys.Verdict.GOOD

    twice = runner.invoke(cli, ["--config", str(project), "api-key", "create", "crm"])
    assert twice.exit_code != 0 and "exists already" in twice.output
    listed = runner.invoke(cli, ["--config", str(project), "api-key", "list", "--format", "json"])
    assert [(k["name"], k["state"]) for k in json.loads(listed.output)] == [("crm", "active")]
    assert key not in listed.output

    assert runner.invoke(cli, ["--config", str(project), "api-key", "revoke", "crm"]).exit_code == 0
    assert apikeys.check(engine, key)[0] is apikeys.Verdict.REVOKED
    unknown = runner.invoke(cli, ["--config", str(project), "api-key", "revoke", "nope"])
    assert unknown.exit_code != 0 and "no API key named 'nope'" in unknown.output
    bad_name = runner.invoke(cli, ["--config", str(project), "api-key", "create", "two words"])
    assert bad_name.exit_code != 0 and "key name" in bad_name.output


@pytest.mark.slow
def test_delete_erases_and_a_later_import_of_the_address_is_suppressed(
    project: Path, served: Served, engine: Engine, key: str, tmp_path: Path
) -> None:
    dee = {"email": "Dee@Example.com", "first_name": "Dee", "birthday": "1990-04-02", "vip_level": "gold"}
    assert call(served, "PUT", "/customers/api-6", key, dee).status == 201
    order = {"external_id": "api-6", "kind": "order", "occurred_at": "2026-11-20T10:00:00Z", "reference": "o-6"}
    assert call(served, "POST", "/interactions", key, order).status == 200

    erased = call(served, "DELETE", "/customers/api-6", key)
    assert (erased.status, json.loads(erased.body)["result"]) == (200, "erased")
    again = call(served, "DELETE", "/customers/api-6", key)
    assert json.loads(again.body)["result"] == "already erased"
    assert call(served, "DELETE", "/customers/nobody", key).status == 404

    stored = customer(engine, "api-6")
    assert stored is not None
    assert (stored.email, stored.first_name, stored.birthday, stored.attributes) == ("", None, None, {})
    assert stored.suppressed_at is not None and stored.order_count == 0
    with Session(engine) as session:
        assert session.execute(select(Interaction).where(col(Interaction.customer_id) == stored.id)).first() is None
        kept = set(session.execute(select(ErasedAddress.address_hash)).scalars())
    assert kept == {hashlib.sha256(b"dee@example.com").hexdigest()}

    # The address comes back under another id, in another case: a suppressed customer, never mailed.
    csv_file = tmp_path / "again.csv"
    csv_file.write_text("external_id,email,first_name\nnew-6,dee@EXAMPLE.com,Dee\n", encoding="utf-8")
    imported = CliRunner().invoke(cli, ["--config", str(project), "import", "customers", str(csv_file)])
    assert imported.exit_code == 0, imported.output
    assert "erased before" in imported.output
    back = customer(engine, "new-6")
    assert back is not None and back.suppressed_at is not None and back.suppressed_reason == erasure.ERASED_REASON
    put_back = call(served, "PUT", "/customers/new-7", key, {"email": "DEE@example.com"})
    assert put_back.status == 201
    shown = json.loads(call(served, "GET", "/customers/new-7", key).body)
    assert shown["opt_out"]["suppressed_reason"] == erasure.ERASED_REASON


def test_mailer_forget_erases_by_external_id(project: Path, engine: Engine, tmp_path: Path) -> None:
    csv_file = tmp_path / "one.csv"
    csv_file.write_text("external_id,email,last_name\nc-1,eve@example.com,Adams\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(project), "import", "customers", str(csv_file)]).exit_code == 0
    result = runner.invoke(cli, ["--config", str(project), "forget", "c-1", "no-such-id"])
    assert result.exit_code == 1
    assert "c-1: erased" in result.stdout and "no-such-id: no such customer" in result.stderr
    gone = customer(engine, "c-1")
    assert gone is not None and gone.email == "" and gone.suppressed_reason == erasure.ERASED_REASON


@pytest.mark.slow
def test_the_openapi_document_describes_every_route_without_a_key(served: Served) -> None:
    reply = served.request("GET", "/api/v1/openapi.json")
    assert reply.status == 200
    document = json.loads(reply.body)
    assert document["openapi"].startswith("3.")
    routes = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes - {("/customers/{external_id}", "parameters")} == {
        ("/customers/{external_id}", "put"), ("/customers/{external_id}", "get"),
        ("/customers/{external_id}", "delete"), ("/interactions", "post"),
    }
    assert document["components"]["schemas"]["Customer"]["required"] == ["email"]
