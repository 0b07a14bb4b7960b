"""Tests run on the real edgeworks runtime through its pytest plugin: the `worker`
fixture serves the worker in wrangler.toml, with fresh storage for every test."""


def test_says_hello(worker):
    response = worker.fetch("/")
    assert response.status == 200
    assert response.text() == "Hello world!"
