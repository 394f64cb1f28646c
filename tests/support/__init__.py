"""Helpers the tests, scripts/ and bench/ share: images, hostile files, servers, object stores, a browser."""
