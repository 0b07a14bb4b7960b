"""A stand-in for Pyodide's package so Cloudflare examples import unchanged."""
