"""Durable Objects: one instance per id, transactional storage, SQL, alarms."""
