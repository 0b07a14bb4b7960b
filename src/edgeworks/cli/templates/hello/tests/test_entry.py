from pathlib import Path

from edgeworks.testing import start_worker

CONFIG = Path(__file__).resolve().parent.parent / "wrangler.toml"


def test_says_hello():
    with start_worker(CONFIG) as worker:
        response = worker.fetch("/")
        assert response.status == 200
        assert response.text() == "Hello world!"
