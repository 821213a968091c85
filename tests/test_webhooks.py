"""Webhooks: the outbox written with a job's end, signed deliveries to a real receiver, retries,
giving up, crash recovery, the private-address guard, and the REST registrations."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor.errors import AddressNotAllowed, ErrorCode, InvalidArguments
from conveyor.events import Mailbox
from conveyor.jobs.models import Delivery, Job, JobStatus, WebhookEvent, now_ms
from conveyor.outbound import check_url, refusal, resolve
from conveyor.runtime import Runtime, open_runtime
from conveyor.schemas import JobView, webhook_payloads
from conveyor.settings import Settings
from conveyor.webhooks import MAX_WEBHOOKS_PER_OWNER
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import error_of, finished, ok, submit
from tests.live_server import LiveServer, live_server
from tests.webhook_receiver import Received, Receiver, webhook_receiver

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

OWNER = "alice"
DELIVERY_ID = re.compile(r"^whd_[0-9a-f]{32}$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def hook_settings(tmp_path: Path, database: str, **overrides: Any) -> Settings:
    """Receivers listen on 127.0.0.1, so private addresses are allowed; retries come fast."""
    values: dict[str, Any] = {
        "webhook_allow_private_addresses": True,
        "webhook_retry_base_seconds": 0.01,
        "webhook_retry_max_seconds": 0.05,
        "webhook_max_attempts": 3,
    }
    return make_settings(tmp_path, db=database, **{**values, **overrides})


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:  # what conftest's runtime and live fixtures open
    return hook_settings(tmp_path, database)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as receiver:
        yield receiver


def verified(request: Received, secret: str) -> bool:
    """What a receiver does: recompute the HMAC of the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["x-conveyor-signature"])


async def settled(outcomes: Mailbox[Delivery], count: int = 1) -> list[Delivery]:
    """The next ``count`` deliveries to settle for good: delivered, or given up."""
    done: list[Delivery] = []
    with anyio.fail_after(10):
        while len(done) < count:
            delivery = await outcomes.next()
            if delivery.status != "pending":
                done.append(delivery)
    return done


async def run_job(runtime: Runtime, tool: str, arguments: dict[str, Any], **options: Any) -> Job:
    job = await runtime.engine.submit(tool, arguments, owner=OWNER, **options)
    with anyio.fail_after(10):
        return await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)


# -- a job's own webhook_url ------------------------------------------------------------------------


async def test_a_job_with_a_webhook_url_is_delivered_once_signed_with_the_server_secret(
    runtime: Runtime, receiver: Receiver
) -> None:
    with runtime.webhooks.outcomes.subscribe() as outcomes:
        job = await run_job(runtime, "demo_add", {"a": 1, "b": 2}, webhook_url=f"{receiver.url}/hook")
        [delivery] = await settled(outcomes)
    [request] = await receiver.received(1)
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-conveyor-event"] == "job.completed"
    assert DELIVERY_ID.match(request.headers["x-conveyor-delivery"])
    assert verified(request, runtime.webhooks.server_secret)
    body = request.json()
    assert body["event"] == "job.completed"
    assert ISO_UTC.match(body["timestamp"])
    assert body["job"] == JobView.of(job)
    assert body["job"]["result"] == {"sum": 3.0}
    assert body["delivery_id"] == request.headers["x-conveyor-delivery"]
    assert delivery.delivery_id == request.headers["x-conveyor-delivery"]
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 1, None)
    assert len(receiver.requests) == 1


async def test_the_server_secret_is_made_once_and_kept_across_restarts(tmp_path: Path, database: str) -> None:
    settings = hook_settings(tmp_path, database)
    async with open_runtime(settings, run_workers=False) as first:
        secret = first.webhooks.server_secret
    async with open_runtime(settings, run_workers=False) as second:
        assert second.webhooks.server_secret == secret
    assert secret.startswith("whsec_")
    configured = hook_settings(tmp_path, database, webhook_secret="s" * 32)
    async with open_runtime(configured, run_workers=False) as third:
        assert third.webhooks.server_secret == "s" * 32


@pytest.mark.slow
async def test_conveyor_webhooks_secret_prints_the_secret_the_server_signs_with(
    tmp_path: Path, database: str
) -> None:
    settings = hook_settings(tmp_path, database)
    async with open_runtime(settings, run_workers=False) as runtime:
        secret = runtime.webhooks.server_secret
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    command = [sys.executable, "-m", "conveyor", "webhooks", "secret", "--db", settings.db]
    with anyio.fail_after(30):
        run = await anyio.run_process(command, cwd=tmp_path, env={**env, "CONVEYOR_ENTRY_POINTS": "false"})
    assert json.loads(run.stdout) == {"webhook_secret": secret}


async def test_every_terminal_status_has_its_event(runtime: Runtime, receiver: Receiver) -> None:
    with runtime.webhooks.outcomes.subscribe() as outcomes:
        await run_job(runtime, "demo_fail", {"message": "no"}, webhook_url=receiver.url)
        await run_job(runtime, "demo_sleep", {"seconds": 5}, webhook_url=receiver.url, timeout_ms=10)
        held = await runtime.engine.submit("testkit_hold", {}, owner=OWNER, webhook_url=receiver.url)
        with anyio.fail_after(5):
            await toolkits.started.wait()
        await runtime.engine.cancel(held.job_id, owner=OWNER)
        await settled(outcomes, 3)
    events = sorted((r.headers["x-conveyor-event"], r.json()["job"]["status"]) for r in receiver.requests)
    assert events == [("job.canceled", "canceled"), ("job.failed", "failed"), ("job.timeout", "timeout")]


# -- retries ----------------------------------------------------------------------------------------


async def test_a_failing_receiver_is_retried_with_the_same_delivery_until_it_succeeds(
    runtime: Runtime, receiver: Receiver
) -> None:
    receiver.answers = [500, 502]
    with runtime.webhooks.outcomes.subscribe() as outcomes:
        job = await run_job(runtime, "demo_echo", {"text": "x"}, webhook_url=receiver.url)
        [delivery] = await settled(outcomes)
    requests = await receiver.received(3)
    assert len({r.headers["x-conveyor-delivery"] for r in requests}) == 1  # one delivery, three tries
    assert len({r.body for r in requests}) == 1
    assert all(verified(r, runtime.webhooks.server_secret) for r in requests)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    [stored] = await runtime.webhooks.store.deliveries_of_job(job.job_id)
    assert stored == delivery


async def test_a_receiver_that_never_succeeds_is_given_up_after_max_attempts(
    runtime: Runtime, receiver: Receiver
) -> None:
    receiver.status = 503
    with runtime.webhooks.outcomes.subscribe() as outcomes:
        await run_job(runtime, "demo_echo", {"text": "x"}, webhook_url=receiver.url)
        [delivery] = await settled(outcomes)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, "HTTP 503")
    assert delivery.next_attempt_at is None
    assert len(receiver.requests) == 3


async def test_an_unreachable_receiver_is_retried_and_its_error_recorded(
    tmp_path: Path, database: str
) -> None:
    async with webhook_receiver() as gone:
        url = gone.url  # a port nobody listens on once the receiver has stopped
    async with open_runtime(hook_settings(tmp_path, database, webhook_max_attempts=2)) as runtime:
        with runtime.webhooks.outcomes.subscribe() as outcomes:
            await run_job(runtime, "demo_echo", {"text": "x"}, webhook_url=url)
            [delivery] = await settled(outcomes)
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("ConnectError")


async def test_no_more_deliveries_are_in_flight_at_once_than_the_concurrency_setting(
    tmp_path: Path, receiver: Receiver, database: str
) -> None:
    receiver.hold = anyio.Event()
    async with open_runtime(hook_settings(tmp_path, database, webhook_concurrency=2)) as runtime:
        with runtime.webhooks.outcomes.subscribe() as outcomes:
            jobs = [
                await run_job(runtime, "demo_echo", {"text": str(n)}, webhook_url=receiver.url)
                for n in range(3)
            ]
            await receiver.received(2)  # both slots taken, and held
            attempts = [
                d.attempts for job in jobs for d in await runtime.webhooks.store.deliveries_of_job(job.job_id)
            ]
            assert sorted(attempts) == [0, 1, 1]  # the third waits for a slot, unclaimed
            receiver.hold.set()
            delivered = await settled(outcomes, 3)
    assert {d.job_id for d in delivered} == {job.job_id for job in jobs}
    assert len(receiver.requests) == 3


# -- durability -------------------------------------------------------------------------------------


async def test_a_delivery_committed_with_the_jobs_end_goes_out_after_a_restart(
    tmp_path: Path, receiver: Receiver, database: str
) -> None:
    settings = hook_settings(tmp_path, database)
    # No workers and no deliverer: the process "dies" right after the terminal write.
    async with open_runtime(settings, run_workers=False) as before:
        job = await before.engine.submit("demo_add", {"a": 1, "b": 2}, owner=OWNER, webhook_url=receiver.url)
        await before.engine.cancel(job.job_id, owner=OWNER)
        [pending] = await before.webhooks.store.deliveries_of_job(job.job_id)
    assert (pending.status, pending.attempts, pending.event) == ("pending", 0, "job.canceled")
    async with open_runtime(settings) as after:
        [request] = await receiver.received(1)
        assert request.headers["x-conveyor-delivery"] == pending.delivery_id
        assert request.json()["job"]["status"] == "canceled"
        assert verified(request, after.webhooks.server_secret)


async def test_an_attempt_cut_short_by_a_crash_is_made_again_when_its_claim_lapses(
    tmp_path: Path, receiver: Receiver, database: str
) -> None:
    settings = hook_settings(tmp_path, database)
    async with open_runtime(settings, run_workers=False) as before:
        job = await before.engine.submit("demo_add", {"a": 1, "b": 2}, owner=OWNER, webhook_url=receiver.url)
        await before.engine.cancel(job.job_id, owner=OWNER)
        # An attempt claimed and never settled, as if the process died mid-request; its claim
        # lapses at once (a real one lasts the timeout and a margin).
        now = now_ms()
        [(claimed, _)] = await before.webhooks.store.claim_deliveries(now=now, claimed_until=now, limit=9)
    async with open_runtime(settings) as after:
        with after.webhooks.outcomes.subscribe() as outcomes:
            [request] = await receiver.received(1)
            [delivery] = await settled(outcomes)
    assert request.headers["x-conveyor-delivery"] == claimed.delivery_id
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


async def test_an_attempt_interrupted_by_shutdown_is_handed_back_uncounted(
    tmp_path: Path, receiver: Receiver, database: str
) -> None:
    settings = hook_settings(tmp_path, database)
    receiver.hold = anyio.Event()
    async with open_runtime(settings) as before:
        job = await run_job(before, "demo_echo", {"text": "x"}, webhook_url=receiver.url)
        await receiver.received(1)  # the attempt is in flight when the runtime closes
    [released] = await _deliveries(settings, job.job_id)
    assert (released.status, released.attempts) == ("pending", 0)
    receiver.hold.set()
    async with open_runtime(settings) as after:
        with after.webhooks.outcomes.subscribe() as outcomes:
            [delivery] = await settled(outcomes)
    assert (delivery.delivery_id, delivery.status, delivery.attempts) == (
        released.delivery_id,
        "delivered",
        1,
    )


async def _deliveries(settings: Settings, job_id: str) -> list[Delivery]:
    async with open_runtime(settings, run_workers=False) as runtime:
        return await runtime.webhooks.store.deliveries_of_job(job_id)


# -- the private-address guard ----------------------------------------------------------------------


async def test_a_delivery_to_a_loopback_address_is_refused_when_private_addresses_are_not_allowed(
    tmp_path: Path, receiver: Receiver, database: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    settings = hook_settings(tmp_path, database, webhook_allow_private_addresses=False)
    async with open_runtime(settings) as runtime:
        with runtime.webhooks.outcomes.subscribe() as outcomes:
            # A name passes the submit-time check; what it resolves to is checked at delivery.
            await run_job(runtime, "demo_echo", {"text": "x"}, webhook_url=f"http://localhost:{port}/")
            [delivery] = await settled(outcomes)
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # a refusal is not retried
    assert delivery.last_error is not None
    assert delivery.last_error.startswith(f"{ErrorCode.FORBIDDEN}: localhost resolves to 127.0.0.1")
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "file:///etc/passwd", "http://", "http://exa mple.com/", "http://h:99999/"],
)
async def test_submit_refuses_a_webhook_url_that_is_not_an_http_url(runtime: Runtime, url: str) -> None:
    with pytest.raises(InvalidArguments) as refused:
        await runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER, webhook_url=url)
    assert refused.value.extra["argument"] == "webhook_url"


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254", "127.1", "0x7f000001"])
async def test_submit_refuses_a_private_ip_literal_unless_allowed(
    tmp_path: Path, host: str, database: str
) -> None:
    url = f"http://{host}:8080/hook"
    async with open_runtime(
        hook_settings(tmp_path, database, webhook_allow_private_addresses=False)
    ) as runtime:
        with pytest.raises(InvalidArguments) as refused:
            await runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER, webhook_url=url)
    assert refused.value.extra["argument"] == "webhook_url"
    check_url(url, argument="webhook_url", allow_private=True)  # allowed, it passes


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "a non-public address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("2002:7f00:1::", "a loopback address"),
        ("64:ff9b::7f00:1", "a loopback address"),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_outbound_http_refuses_every_non_public_address(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


async def test_a_name_is_refused_when_it_resolves_to_a_private_address() -> None:
    with pytest.raises(AddressNotAllowed):
        await resolve("localhost", 80, allow_private=False)
    assert await resolve("localhost", 80, allow_private=True) == ["127.0.0.1"]


# -- REST registrations -----------------------------------------------------------------------------


async def register(live: LiveServer, key: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url} if events is None else {"url": url, "events": events}
    async with live.client(key) as http:
        return ok(await http.post("/webhooks", json=body), 201)


async def test_registered_webhooks_get_only_their_events_and_only_their_owners_jobs(
    live: LiveServer, receiver: Receiver
) -> None:
    alice, bob = await live.new_key(), await live.new_key()
    failures = await register(live, alice, f"{receiver.url}/failures", ["job.failed"])
    everything = await register(live, alice, f"{receiver.url}/everything")
    await register(live, bob, f"{receiver.url}/bob")
    assert everything["events"] == ["job.completed", "job.failed", "job.canceled", "job.timeout"]
    with live.runtime.webhooks.outcomes.subscribe() as outcomes:
        async with live.client(alice) as http:
            completed = await finished(http, await submit(http, "demo_add", {"a": 1, "b": 2}))
            failed = await finished(http, await submit(http, "demo_fail", {"message": "no"}))
        await settled(outcomes, 3)
    got = sorted((r.path, r.json()["event"], r.json()["job"]["job_id"]) for r in receiver.requests)
    assert got == sorted(
        [
            ("/everything", "job.completed", completed["job_id"]),
            ("/everything", "job.failed", failed["job_id"]),
            ("/failures", "job.failed", failed["job_id"]),
        ]
    )
    secrets = {"/everything": everything["secret"], "/failures": failures["secret"]}
    assert all(verified(r, secrets[r.path]) for r in receiver.requests)
    assert not any(verified(r, live.runtime.webhooks.server_secret) for r in receiver.requests)


async def test_registration_shows_the_secret_once_and_lists_only_the_callers_webhooks(
    live: LiveServer,
) -> None:
    alice, bob = await live.new_key(), await live.new_key()
    created = await register(live, alice, "https://example.com/hooks", ["job.completed", "job.completed"])
    assert created["webhook_id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["job.completed"]
    assert isinstance(created["created_at"], int)
    async with live.client(alice) as http:
        listed = ok(await http.get("/webhooks"))["webhooks"]
    assert listed == [{key: value for key, value in created.items() if key != "secret"}]
    for key in (bob, live.admin_key):
        async with live.client(key) as http:
            assert ok(await http.get("/webhooks")) == {"webhooks": []}


async def test_only_the_owner_can_delete_a_webhook(live: LiveServer) -> None:
    alice, bob = await live.new_key(), await live.new_key()
    webhook_id = (await register(live, alice, "https://example.com/hooks"))["webhook_id"]
    for key in (bob, live.admin_key):
        async with live.client(key) as http:
            error_of(await http.delete(f"/webhooks/{webhook_id}"), 404, "WEBHOOK_NOT_FOUND")
    async with live.client(alice) as http:
        assert ok(await http.delete(f"/webhooks/{webhook_id}")) == {"webhook_id": webhook_id, "deleted": True}
        assert ok(await http.get("/webhooks")) == {"webhooks": []}
        error_of(await http.delete(f"/webhooks/{webhook_id}"), 404, "WEBHOOK_NOT_FOUND")


async def test_deleting_a_webhook_drops_its_pending_deliveries(settings: Settings) -> None:
    async with open_runtime(settings, run_workers=False) as runtime:  # nothing delivers meanwhile
        webhook, _ = await runtime.webhooks.register(OWNER, "https://example.com/hooks")
        job = await runtime.engine.submit(
            "demo_echo", {"text": "x"}, owner=OWNER, webhook_url="https://example.com/own"
        )
        await runtime.engine.cancel(job.job_id, owner=OWNER)
        assert len(await runtime.webhooks.store.deliveries_of_job(job.job_id)) == 2
        await runtime.webhooks.delete(webhook.webhook_id, owner=OWNER)
        deliveries = await runtime.webhooks.store.deliveries_of_job(job.job_id)
    assert [d.webhook_id for d in deliveries] == [None]  # the job's own webhook_url remains


@pytest.mark.parametrize(
    ("body", "argument"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://10.0.0.1/hook"}, "url"),
        ({"url": "http://[::1]:9/hook"}, "url"),
        ({"url": "https://example.com/x", "events": ["job.exploded"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"events": ["job.failed"]}, "url"),
        ({"url": "https://example.com/x", "secret": "mine"}, "secret"),
    ],
)
async def test_registration_refuses_bad_urls_and_events_naming_the_argument(
    tmp_path: Path, body: dict[str, Any], argument: str
) -> None:
    # The real default: private addresses refused.
    async with live_server(make_settings(tmp_path)) as live, live.client(live.admin_key) as http:
        response = await http.post("/webhooks", json=body)
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == argument


async def test_a_key_holds_a_bounded_number_of_webhooks(live: LiveServer) -> None:
    key = await live.new_key()
    for n in range(MAX_WEBHOOKS_PER_OWNER):
        await register(live, key, f"https://example.com/{n}")
    async with live.client(key) as http:
        response = await http.post("/webhooks", json={"url": "https://example.com/one-too-many"})
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == "url"


def test_the_payload_is_the_event_its_time_the_public_job_and_the_delivery_id() -> None:
    job = Job(
        "job_1", "demo_add", {"secret": "x"}, "alice", JobStatus.COMPLETED, "default", 0, 0, 1500, result=3
    )
    first, second = webhook_payloads(job, WebhookEvent.JOB_COMPLETED, ["whd_1", "whd_2"])
    assert json.loads(first) == {
        "event": "job.completed",
        "timestamp": "1970-01-01T00:00:01.500Z",
        "job": JobView.of(job),
        "delivery_id": "whd_1",
    }
    assert json.loads(second)["delivery_id"] == "whd_2"
    assert "arguments" not in json.loads(first)["job"]  # arguments may hold secrets: never sent
