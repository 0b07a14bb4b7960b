"""Tests of the showcase worker with edgeworks' pytest plugin (the `worker` fixture)."""

import pytest


def test_hello(worker):
    r = worker.fetch("/hello?name=tests")
    assert r.status == 200
    assert r.text() == "Hello, tests!"


def test_kv_written_by_the_worker_is_read_by_the_test(worker):
    assert worker.fetch("/kv/greeting", method="PUT", body="hi").status == 201
    assert worker.env.SETTINGS.get("greeting") == "hi"


def test_storage_is_fresh_in_every_test(worker):
    # The previous test stored "greeting"; nothing of it is left.
    assert worker.env.SETTINGS.get("greeting") is None
    assert worker.fetch("/kv/greeting").status == 404


async def test_kv_written_by_the_test_is_read_by_the_worker(worker):
    await worker.env.SETTINGS.put("greeting", "from the test")
    r = await worker.fetch("/kv/greeting")
    assert await r.text() == "from the test"


def test_durable_object_through_the_worker_and_directly(worker):
    assert worker.fetch("/count/visits").json() == {"value": 1}
    assert worker.fetch("/count/visits").json() == {"value": 2}
    stub = worker.env.COUNTERS.getByName("visits")
    assert stub.increment() == 3
    assert stub.status()["value"] == 3


def test_durable_object_state_survives_eviction(worker):
    stub = worker.env.COUNTERS.getByName("sticky")
    stub.increment()
    worker.evict(stub)
    assert stub.increment() == 2  # rebuilt from storage by the constructor
    assert worker.list_durable_object_ids(worker.env.COUNTERS) == [stub.id.toString()]


def peek(instance, state):
    # Runs inside the object's isolate, with the live instance.
    return {"class": type(instance).__name__, "id_len": len(state.id.toString())}


def test_run_in_durable_object(worker):
    stub = worker.env.COUNTERS.getByName("inside")
    stub.increment()
    assert worker.run_in_durable_object(stub, peek) == {"class": "Counter", "id_len": 64}


def test_alarm_runs_on_demand(worker):
    stub = worker.env.COUNTERS.getByName("alarmed")
    worker.fetch("/remind/alarmed?in=3600")
    assert stub.status()["alarm"] is not None
    worker.run_alarm(stub)
    status = stub.status()
    assert status["reminded"] == 1 and status["alarm"] is None
    assert any("reminded 1 time" in line for line in worker.logs)


def test_cron_writes_its_last_run(worker):
    run = worker.scheduled(cron="*/15 * * * *", time=1_700_000_000_000)
    assert run.outcome == "ok"
    assert worker.fetch("/cron").text() == "*/15 * * * * @ 1700000000000"


def test_logs_are_per_request(worker):
    worker.fetch("/background")
    r = worker.fetch("/hello")
    assert r.logs == []


@pytest.mark.parametrize("n", range(3))
def test_module_state_is_fresh_too(worker, n):
    assert worker.fetch("/stats").json()["requests"] == 1
